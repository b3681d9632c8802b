"""The two dataset layouts the project reads, found and checked in one place.

- class folders: `ROOT/corrosion/*` and `ROOT/no_corrosion/*` (image-level labels);
- mask folders: `ROOT/images/N.*` with `ROOT/masks/N.png` (per-pixel masks, evaluation only).

Mask folders are split reproducibly into a `tune` part (used to pick layers and refinement
settings, and as training tiles) and a `holdout` part that nothing is fitted on. The split
depends only on each image's file stem, so it stays the same when files are added or removed.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

from edge.data.imageio import IMAGE_SUFFIXES, list_images
from edge.errors import DataError

CLASS_NAMES = ("no_corrosion", "corrosion")  # index = label
SPLITS = ("all", "tune", "holdout")
_HOLDOUT_BUCKETS = 100


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: int  # 1 = corrosion, 0 = no_corrosion


@dataclass(frozen=True)
class MaskedImage:
    image: Path
    mask: Path


def is_class_folder(root: str | Path) -> bool:
    root = Path(root)
    return all((root / name).is_dir() for name in CLASS_NAMES)


def is_mask_folder(root: str | Path) -> bool:
    root = Path(root)
    return (root / "images").is_dir() and (root / "masks").is_dir()


def find_labelled_images(root: str | Path) -> list[LabelledImage]:
    """Every image under ROOT/corrosion and ROOT/no_corrosion; DataError if a class is empty."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    if not is_class_folder(root):
        raise DataError(f"data folder {root} must contain the subfolders corrosion/ and "
                        "no_corrosion/")
    items = []
    for label, name in enumerate(CLASS_NAMES):
        files = list_images(root / name)
        if not files:
            raise DataError(f"class folder {root / name} holds no images "
                            f"({', '.join(IMAGE_SUFFIXES)})")
        items += [LabelledImage(p, label) for p in files]
    return items


def find_masked_images(root: str | Path, split: str = "all",
                       holdout_fraction: float = 0.25) -> list[MaskedImage]:
    """Pairs images/N.* with masks/N.png, restricted to `split`; DataError if none pair up."""
    root = Path(root)
    if split not in SPLITS:
        raise DataError(f"split {split!r} is not known; expected one of {', '.join(SPLITS)}")
    if not is_mask_folder(root):
        raise DataError(f"mask folder {root} must contain the subfolders images/ and masks/")
    pairs = []
    for image in list_images(root / "images"):
        mask = root / "masks" / f"{image.stem}.png"
        if mask.is_file() and split in ("all", split_of(image.stem, holdout_fraction)):
            pairs.append(MaskedImage(image, mask))
    if not pairs:
        raise DataError(f"mask folder {root} has no image with a matching masks/STEM.png "
                        f"in split {split!r}")
    return pairs


def split_of(stem: str, holdout_fraction: float) -> str:
    """'holdout' for a stable pseudo-random share of stems, else 'tune'."""
    bucket = zlib.crc32(stem.encode()) % _HOLDOUT_BUCKETS
    return "holdout" if bucket < holdout_fraction * _HOLDOUT_BUCKETS else "tune"
