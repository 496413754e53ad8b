"""``auto`` settings chosen from the training images: input size and grayscale.

Input size: the median short side of the (ROI-cropped) training images, rounded down to a multiple of 32
and kept within [``MIN_SIZE``, ``MAX_SIZE``]. Downscaling a 300 px image to 128 px shrinks a 4 px
scratch below two pixels; upscaling a 100 px image only costs time. ``MAX_SIZE`` keeps a default run on
about 1,000 images near 20 minutes on 2 CPU cores (cost grows with the pixel count: 160 px took about
17 s per epoch on magnetic tile, 192 px about 1.45 times that).

Grayscale: yes when every sampled image has (on average) equal colour channels, so a colour station camera
sees the same luminance the model was trained on.

Example:
    >>> choose_input_size([300, 310, 290, 305])
    192
    >>> choose_input_size([120, 100, 130])
    96
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from inspector.dataset import SplitManifest
from inspector.imageio import ImageError, load_image
from inspector.preprocess import Roi

MIN_SIZE, MAX_SIZE, STEP = 96, 192, 32
SAMPLE = 48  # images looked at; sizes within a data set rarely vary much
GRAY_TOLERANCE = 1.0  # mean channel difference (0-255) still counted as gray (JPEG chroma noise)


def choose_input_size(short_sides: Sequence[int]) -> int:
    """Median short side rounded down to a multiple of 32, within [MIN_SIZE, MAX_SIZE]."""
    median = float(np.median(short_sides)) if len(short_sides) else MAX_SIZE
    return int(min(max(STEP * int(median // STEP), MIN_SIZE), MAX_SIZE))


@dataclass(frozen=True)
class ImageSurvey:
    short_sides: List[int]
    gray: bool

    @property
    def input_size(self) -> int:
        return choose_input_size(self.short_sides)


def survey(manifest: SplitManifest, root: Optional[str | Path] = None, roi: Optional[Roi] = None,
           sample: int = SAMPLE, seed: int = 0) -> ImageSurvey:
    """Sizes and colour of up to ``sample`` training images (spread over the classes by a seeded draw)."""
    samples = manifest.splits["train"]
    rng = np.random.default_rng(seed)
    picked = [samples[i] for i in sorted(rng.choice(len(samples), min(sample, len(samples)), replace=False))]
    base = Path(root or manifest.root)
    sides, gray = [], True
    for item in picked:
        try:
            image = load_image(base / item.path)
        except (ImageError, OSError):
            continue  # the loader reports unreadable files with their reason later
        h, w = image.shape[:2]
        if roi is not None:
            w, h = min(roi.width, w - roi.x), min(roi.height, h - roi.y)
        sides.append(int(min(w, h)))
        if gray and image.ndim == 3 and image.shape[2] >= 3:
            channels = image[..., :3].astype(np.int16)
            gray = float(np.abs(channels - channels[..., :1]).mean()) <= GRAY_TOLERANCE
    return ImageSurvey(sides, gray and bool(sides))
