"""The teacher: the best pseudo masks we can make from image-level labels alone (slow is fine).

It runs on the workstation with the Keras classifier and stacks cheap ingredients, each
measured on its own in `benchmarks/teacher_ablation.py`:

1. **Multi-view Grad-CAM++.** The reference Grad-CAM++ (converter/gradcam.py) of the whole
   photo at several input sizes, plus a 3x3 grid of overlapping half-size crops, each also
   mirrored. A crop's CAM covers half the photo with the same 10x10 grid, so the fused map is
   about twice as fine; each crop's CAM is weighted by that crop's corrosion score, so crops
   the classifier finds clean add nothing (DESIGN.md, "A measured hint for the teacher").
2. **Layer fusion.** Optionally the CAM of an earlier, finer layer (e.g. block_13, stride 16)
   multiplied in (geometric mean), so the coarse map's blobs take the finer map's edges.
3. **Dense CRF at full resolution** over the fused map, pulling the mask onto colour edges.
4. **An ignore band.** Pixels whose CRF posterior is neither confidently rust nor confidently
   background are marked uncertain; the student's loss skips them.

Photos labelled no_corrosion get an all-background target without any of this: the label
itself says there is nothing to find, and those photos carry the red paint and brown soil the
student must learn to refuse.
"""

from __future__ import annotations

import cv2
import keras
import numpy as np
import tensorflow as tf

from converter.gradcam import cam_from_gradients, cam_model
from converter.model import at_input_size
from edge.config import TeacherConfig
from edge.method.refine.base import foreground_probability, resize_cam, resize_frame, working_size
from edge.method.refine.crf import crf_foreground

IGNORE = 255  # pseudo-label value of an uncertain pixel (the loss skips it)


def view_key(settings: TeacherConfig) -> dict:
    """The settings that shape the fused CAM (not the CRF nor the band): a cache key."""
    return {"scales": list(settings.scales), "crop_grid": settings.crop_grid,
            "crop_size": settings.crop_size, "flip": settings.flip,
            "fine_layer": settings.fine_layer or None, "work_px": settings.work_px}


class MultiViewCam:
    """Fused Grad-CAM++ of many views of one photo: `fused(image_rgb)` -> cam01 [work, work]."""

    def __init__(self, model: keras.Model, settings: TeacherConfig,
                 cam_layer: str = "out_relu") -> None:
        self.settings = settings
        sizes = set(settings.scales) | ({settings.crop_size} if settings.crop_grid else set())
        layers = [cam_layer] + ([settings.fine_layer] if settings.fine_layer else [])
        self._cam_functions = {size: [_compiled_cam(cam_model(at_input_size(model, size), layer))
                                      for layer in layers] for size in sorted(sizes)}

    def _cams(self, size: int, batch_rgb: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """(scores [N], one cam01 [N, h, w] per layer) for images already at `size`."""
        x = tf.convert_to_tensor(batch_rgb.astype(np.float32))
        cams, scores = [], None
        for function in self._cam_functions[size]:
            score, cam = function(x)
            cams.append(cam.numpy())
            scores = score.numpy()
        return scores, cams

    def _layer_fused(self, cams: list[np.ndarray], index: int) -> np.ndarray:
        """One view's map: the coarse CAM, or its geometric mean with the finer layer's."""
        coarse = cams[0][index]
        if len(cams) == 1:
            return coarse
        fine = cams[1][index]
        coarse_up = cv2.resize(coarse, fine.shape[::-1], interpolation=cv2.INTER_LINEAR)
        return np.sqrt(np.clip(coarse_up, 0, 1) * np.clip(fine, 0, 1))

    def fused(self, image_rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """(cam01 float32 [work, work] over the whole photo, whole-photo score)."""
        s = self.settings
        work = s.work_px
        total = np.zeros((work, work), np.float32)
        weight = np.zeros((work, work), np.float32)
        whole_scores = []

        def add(cam01, box, view_weight, flipped):
            if flipped:
                cam01 = cam01[:, ::-1]
            x0, y0, x1, y1 = box
            patch = cv2.resize(np.ascontiguousarray(cam01), (x1 - x0, y1 - y0),
                               interpolation=cv2.INTER_LINEAR)
            total[y0:y1, x0:x1] += view_weight * patch
            weight[y0:y1, x0:x1] += view_weight

        for size in s.scales:
            batch = _views(cv2.resize(image_rgb, (size, size), interpolation=cv2.INTER_AREA),
                           s.flip)
            scores, cams = self._cams(size, batch)
            whole_scores.extend(scores)
            for i in range(len(batch)):
                add(self._layer_fused(cams, i), (0, 0, work, work), 1.0, flipped=i % 2 == 1)
        if s.crop_grid:
            height, width = image_rgb.shape[:2]
            crops, boxes = [], []
            for gy in range(s.crop_grid):
                for gx in range(s.crop_grid):
                    # Half-size crops whose corners step evenly from one edge to the other.
                    fy, fx = gy / (s.crop_grid - 1) / 2, gx / (s.crop_grid - 1) / 2
                    y0, x0 = int(round(fy * height)), int(round(fx * width))
                    crop = image_rgb[y0:y0 + height // 2, x0:x0 + width // 2]
                    resized = cv2.resize(crop, (s.crop_size, s.crop_size),
                                         interpolation=cv2.INTER_AREA)
                    box = (int(round(fx * work)), int(round(fy * work)),
                           int(round(fx * work)) + work // 2, int(round(fy * work)) + work // 2)
                    for view in _views(resized, s.flip):
                        crops.append(view)
                        boxes.append(box)
            scores, cams = self._cams(s.crop_size, np.stack(crops))
            for i, box in enumerate(boxes):
                add(self._layer_fused(cams, i), box, float(scores[i]), flipped=s.flip and i % 2 == 1)
        fused = total / np.maximum(weight, 1e-6)
        peak = fused.max()
        return (fused / peak if peak > 0 else fused).astype(np.float32), float(np.mean(whole_scores))


def _compiled_cam(features: keras.Model):
    """A traced (images float32 [N, S, S, 3] -> (score [N], cam01 [N, h, w])) function."""

    @tf.function(reduce_retracing=True)
    def score_and_cam(x):
        with tf.GradientTape() as tape:
            activations, logit = features(x, training=False)
        return (tf.sigmoid(logit)[:, 0],
                cam_from_gradients(activations, tape.gradient(logit, activations)))
    return score_and_cam


def _views(image_rgb: np.ndarray, flip: bool) -> np.ndarray:
    """The image, and its mirror when `flip`: [1 or 2, S, S, 3]."""
    return np.stack([image_rgb, image_rgb[:, ::-1]] if flip else [image_rgb])


def crf_posterior(frame_bgr: np.ndarray, cam01: np.ndarray, settings: TeacherConfig
                  ) -> np.ndarray:
    """P(corrosion) float32 [H, W] at the frame's size: the fused CAM settled by the teacher's
    dense CRF (settings.crf: the same mapping and CRF the refine paths use, its own values)."""
    crf = settings.crf
    height, width = frame_bgr.shape[:2]
    size = working_size((height, width), crf.scale_px)
    small = resize_frame(frame_bgr, size)
    prior = foreground_probability(resize_cam(np.clip(cam01, 0, 1).astype(np.float32), size),
                                   small, crf)
    posterior = crf_foreground(small, prior.astype(np.float32), crf)
    return cv2.resize(posterior, (width, height), interpolation=cv2.INTER_LINEAR)


def pseudo_label(posterior: np.ndarray, cam01: np.ndarray, settings: TeacherConfig
                 ) -> np.ndarray:
    """uint8 [H, W]: 1 corrosion, 0 background, IGNORE where the teacher is unsure.

    Unsure means a CRF posterior inside the band (sure_bg, sure_fg), or a pixel where the CRF
    and the thresholded fused CAM disagree: the CRF's colour edges moved the border there, and
    neither source is trusted alone.
    """
    cam = cv2.resize(cam01, posterior.shape[::-1], interpolation=cv2.INTER_LINEAR)
    agree = (posterior >= 0.5) == (cam >= settings.cam_threshold)
    label = np.full(posterior.shape, IGNORE, np.uint8)
    label[(posterior >= settings.sure_fg) & agree] = 1
    label[(posterior <= settings.sure_bg) & agree] = 0
    return label
