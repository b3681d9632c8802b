"""Findings: the frames of a run worth showing the bridge owner, kept with raw, overlay and mask.

The finding rule (config `record`):
- a frame is a candidate when its corroded area (share of the frame in the mask) is at least
  `finding_min_area`;
- findings lie more than `gap` frames apart (`finding_gap_frames` for video and cameras,
  `finding_gap_photos` for photo folders, where each photo is its own view): of candidates
  closer than that, the one with the largest area wins. The best candidate so far is kept in
  memory and written once `gap` frames have passed without a larger one, i.e. each finding is
  a local maximum of corroded area. The candidate still held when the run ends (also by
  Ctrl-C) is written on close.

Each finding is three files (RecordLayout.finding_files) and one line in
findings/findings.jsonl, with its frame's position when one is known (geotagged photos, video
with a DJI .SRT sidecar, live MAVLink telemetry).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from edge.errors import SinkError
from edge.outputs import FrameSink, OutputFrame, write_image
from edge.method.states import worst_state_name
from edge.record.layout import RecordLayout
from edge.writable import make_folder

_RAW_JPEG_QUALITY = 95
_OVERLAY_JPEG_QUALITY = 90


@dataclass(frozen=True)
class FindingRule:
    min_area: float      # share of the frame, 0..1
    gap: int             # frames (or photos) between findings, exclusive

    def is_candidate(self, area: float) -> bool:
        return area > 0 and area >= self.min_area


class FindingSink(FrameSink):
    """Applies the finding rule to every frame and writes the findings into the record.

    A finding's position is its frame's (the log record's "position": EXIF for photos, the
    .SRT sidecar or live MAVLink for video, edge/live/locate.py)."""

    def __init__(self, layout: RecordLayout, rule: FindingRule) -> None:
        self.layout, self.rule = layout, rule
        self.name = f"findings {layout.findings_dir}"
        self.source_file: Callable[[str], Path | None] = lambda name: None
        self.count = 0
        self._pending: OutputFrame | None = None
        self._last_index: int | None = None
        self._log = None

    def start(self) -> None:
        """The findings folder is made here, once the run is under way: a run that fails
        before (a missing source) leaves its record folder empty, so a retry may use it."""
        if self._log is None:
            try:
                make_folder(self.layout.findings_dir)
                self._log = open(self.layout.findings_log, "w", buffering=1)
            except OSError as exc:
                raise SinkError(f"--record {self.layout.findings_log}: cannot write "
                                f"({exc.strerror})") from None

    def writes_to(self, frame_name: str | None) -> Path | None:
        return None if frame_name is None else self.layout.finding_files(frame_name).raw

    def owned_folder(self) -> Path:
        return self.layout.root

    def write(self, frame: OutputFrame) -> None:
        pending = self._pending
        if pending is not None and frame.index - pending.index > self.rule.gap:
            self._commit()
        area = frame.record.corroded_fraction
        far_enough = self._last_index is None or frame.index - self._last_index > self.rule.gap
        if self.rule.is_candidate(area) and far_enough and (
                self._pending is None or area > self._pending.record.corroded_fraction):
            self._pending = frame

    def close(self) -> None:
        try:
            if self._pending is not None and self._log is not None:
                self._commit()
        finally:
            if self._log is not None and not self._log.closed:
                self._log.close()

    def _commit(self) -> None:
        frame, self._pending = self._pending, None
        self._last_index = frame.index
        files = self.layout.finding_files(frame.name)
        raw = frame.frame_bgr if frame.frame_bgr is not None else frame.overlay_bgr
        write_image(files.raw, raw, [cv2.IMWRITE_JPEG_QUALITY, _RAW_JPEG_QUALITY])
        write_image(files.overlay, frame.overlay_bgr,
                    [cv2.IMWRITE_JPEG_QUALITY, _OVERLAY_JPEG_QUALITY])
        write_image(files.mask, frame.mask.astype(np.uint8) * 255, [])
        source_file = self.source_file(frame.name)
        # The frame's own record (its position, grades and area per state included), then
        # where its files are and its worst state.
        entry = frame.record.to_json()
        entry.update(raw=self.layout.relative(files.raw),
                     overlay=self.layout.relative(files.overlay),
                     mask=self.layout.relative(files.mask),
                     source_file=str(source_file) if source_file else None,
                     worst_state=worst_state_name(frame.record.area_by_state))
        try:
            self._log.write(json.dumps(entry, separators=(",", ":")) + "\n")
            self._log.flush()
        except OSError as exc:
            raise SinkError(f"--record {self.layout.findings_log}: write failed "
                            f"({exc.strerror})") from None
        self.count += 1
