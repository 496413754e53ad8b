"""``auto`` settings chosen from the training images: epochs, input size and grayscale.

Epochs (random-init training): enough for about :data:`IMAGES_SEEN` training images, the schedule measured
on magnetic tile (90 epochs of 940 images: test AUC 0.984-0.999 on three splits, where 60 epochs gave
0.981-0.997 and one split's INT8 model failed the guard), within [``MIN_EPOCHS``, ``MAX_EPOCHS``]: a
small set gets 90 epochs, a large one fewer passes (the demo's 4,160 images reached test AUC 0.998 in
20 epochs, about as many images seen), so its time goes to the input size instead.

Input size: the median short side of the (ROI-cropped) training images, rounded down to a multiple of 32
and kept within [``MIN_SIZE``, ``MAX_SIZE``]: downscaling a 300 px image to 128 px shrinks a 4 px
scratch below two pixels, upscaling a 100 px image only costs time. Then capped by time: a training
epoch costs about ``SECONDS_PER_MEGAPIXEL`` per million input pixels on two CPU cores (measured on
magnetic tile: 940 training images at 160 px, 6.8-8.2 s per epoch at a load of 3.5-4.6), and the size is the largest step of 32
whose planned epochs fit ``TIME_BUDGET_S``. The recipe experiments found no gain from 224 px over 160 px
on magnetic tile (~300 px images: test AUC 0.931 vs 0.938 at 40 epochs, at 2-4x the time per epoch), so
``MAX_SIZE`` stops at 192 and the budget goes to epochs first: magnetic tile gets 160 px for 90 epochs,
a 300-image set of 300 px parts 192 px.

Aspect: elongated images keep their shape. When nearly all sampled images lie the same way (at least
:data:`SAME_ORIENTATION` of them) and their median long/short ratio is at least :data:`KEEP_ASPECT`, the
long side is the short side times that ratio (at most :data:`MAX_ASPECT`), in steps of 32, and the time cap
applies to the area: a 500x1240 strip gets 192x480 instead of being squashed 2.6 times more along its
length than across. Near-square images, 4:3 camera frames and sets of mixed orientation (magnetic tile:
median ratio 1.38, both ways) stay square, as every measurement here was made.

Grayscale: yes when every sampled image has (on average) equal colour channels, so a colour station camera
sees the same luminance the model was trained on.

Example:
    >>> choose_input_size([(300, 300), (310, 310), (290, 290), (305, 305)])
    (192, 192)
    >>> choose_input_size([(300, 300), (310, 310), (290, 290), (305, 305)], train_images=940, epochs=90)
    (160, 160)
    >>> choose_input_size([(120, 120), (100, 100), (130, 130)])
    (96, 96)
    >>> choose_input_size([(1240, 500), (1250, 500), (1230, 510)])
    (480, 192)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from inspector.dataset import SplitManifest
from inspector.imageio import ImageError, load_image
from inspector.preprocess import Roi

MIN_SIZE, MAX_SIZE, STEP = 96, 192, 32
MIN_EPOCHS, MAX_EPOCHS = 20, 90
IMAGES_SEEN = 90 * 940  # magnetic tile's measured schedule: 90 epochs over its 940 training images
SECONDS_PER_MEGAPIXEL = 8.0 / (940 * 160 * 160 / 1e6)  # one epoch over 940 images at 160 px: 6.8-8.2 s
TIME_BUDGET_S = 15 * 60  # training time the auto size aims for (validation and tracing come on top)
SAMPLE = 48  # images looked at; sizes within a data set rarely vary much
GRAY_TOLERANCE = 1.0  # mean channel difference (0-255) still counted as gray (JPEG chroma noise)
KEEP_ASPECT = 1.5  # median long/short ratio from which the input keeps the images' shape (4:3 stays square)
MAX_ASPECT = 4.0  # longer strips are squashed to this ratio: the short side keeps enough pixels
SAME_ORIENTATION = 0.9  # share of images that must lie the same way for a non-square input


def choose_epochs(train_images: int) -> int:
    """Epochs that show the model about :data:`IMAGES_SEEN` training images, within [MIN_EPOCHS, MAX_EPOCHS].

    >>> choose_epochs(940), choose_epochs(300), choose_epochs(4160), choose_epochs(7000)
    (90, 90, 21, 20)
    """
    if train_images <= 0:
        return MAX_EPOCHS
    return int(min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(IMAGES_SEEN / train_images))))


def choose_input_size(
    sizes: Sequence[Tuple[int, int]], train_images: int = 0, epochs: int = 0, budget_s: float = TIME_BUDGET_S
) -> Tuple[int, int]:
    """(width, height): the median short side rounded down to a multiple of 32 within [MIN_SIZE, MAX_SIZE],
    the long side from the images' aspect (see the module), and no more pixels than ``epochs`` over
    ``train_images`` can afford in ``budget_s`` (when both are given)."""
    if not len(sizes):
        return MAX_SIZE, MAX_SIZE
    sides = np.array([(min(w, h), max(w, h)) for w, h in sizes], np.float64)
    landscape = np.array([w >= h for w, h in sizes])
    ratio = float(np.median(sides[:, 1] / sides[:, 0]))
    same_way = max(landscape.mean(), 1.0 - landscape.mean()) >= SAME_ORIENTATION
    aspect = min(ratio, MAX_ASPECT) if same_way and ratio >= KEEP_ASPECT else 1.0
    short = min(max(STEP * int(float(np.median(sides[:, 0])) // STEP), MIN_SIZE), MAX_SIZE)
    if train_images and epochs:
        affordable = math.sqrt(budget_s * 1e6 / (SECONDS_PER_MEGAPIXEL * train_images * epochs) / aspect)
        short = min(short, max(MIN_SIZE, STEP * int(affordable // STEP)))
    long = max(short, STEP * round(short * aspect / STEP))
    return (long, short) if landscape.mean() >= 0.5 else (short, long)


@dataclass(frozen=True)
class ImageSurvey:
    sizes: List[Tuple[int, int]]  # (width, height) after the ROI
    gray: bool

    @property
    def short_sides(self) -> List[int]:
        return [min(w, h) for w, h in self.sizes]


def survey(
    manifest: SplitManifest,
    root: Optional[str | Path] = None,
    roi: Optional[Roi] = None,
    sample: int = SAMPLE,
    seed: int = 0,
) -> ImageSurvey:
    """Sizes and colour of up to ``sample`` training images (spread over the classes by a seeded draw)."""
    samples = manifest.splits["train"]
    rng = np.random.default_rng(seed)
    picked = [samples[i] for i in sorted(rng.choice(len(samples), min(sample, len(samples)), replace=False))]
    base = Path(root or manifest.root)
    sizes: List[Tuple[int, int]] = []
    gray = True
    for item in picked:
        try:
            image = load_image(base / item.path)
        except (ImageError, OSError):
            continue  # the loader reports unreadable files with their reason later
        h, w = image.shape[:2]
        if roi is not None:
            w, h = min(roi.width, w - roi.x), min(roi.height, h - roi.y)
        sizes.append((int(w), int(h)))
        if gray and image.ndim == 3 and image.shape[2] >= 3:
            channels = image[..., :3].astype(np.int16)
            gray = float(np.abs(channels - channels[..., :1]).mean()) <= GRAY_TOLERANCE
    return ImageSurvey(sizes, gray and bool(sizes))
