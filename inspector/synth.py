"""Synthetic inspection images: textured industrial surfaces with procedural defects.

Serves the tests and the demo where no real data may be shipped. Each image is a surface (brushed metal,
woven fabric or ceramic tile) under uneven light and sensor noise; defect classes add a scratch, a spot/pit,
a crack or a stain of random size, position and contrast, some of them faint. Good parts vary as much as
defective ones (texture, light, noise), so a classifier has to find the defect, not the background.

Two options make other data sets for measuring a training recipe away from the one it was tuned on:
``surfaces`` picks the textures (``cast``, porous sand-cast metal, is never in the default mix) and
:class:`DefectStyle` shrinks or fades the defects (small, faint defects on large images). Their defaults
reproduce the default data set bit for bit.

Example:
    >>> import tempfile
    >>> counts = generate(tempfile.mkdtemp(), per_class=2, size=(64, 64), seed=0)
    >>> sorted(counts)
    ['crack', 'good', 'scratch', 'spot', 'stain']
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple, cast

import cv2
import numpy as np
import numpy.typing as npt

from inspector.imageio import save_image

DEFECTS = ("scratch", "spot", "crack", "stain")
# Rendered on request but never part of a generated dataset: defects a model has not been trained on,
# for checking that a line still rejects what nobody labeled (the demo puts them on the belt).
UNSEEN_DEFECTS = ("chip", "dent")
GOOD = "good"
SURFACES = ("metal", "fabric", "tile")  # the default mix
EXTRA_SURFACES = ("cast",)  # only on request: a texture the default data set (and anything tuned on it) never had
ALL_SURFACES = SURFACES + EXTRA_SURFACES

FloatImage = npt.NDArray[np.floating[Any]]  # a grayscale surface, 0..1 before lighting and noise


@dataclass(frozen=True)
class DefectStyle:
    """Defect size and contrast relative to the default data set (1.0 each): ``scale`` multiplies every
    defect's extent (length, radius, blob size), ``contrast`` its strength against the surface."""

    scale: float = 1.0
    contrast: float = 1.0

    def __post_init__(self) -> None:
        if not (0 < self.scale <= 4 and 0 < self.contrast <= 4):
            raise ValueError(f"defect scale and contrast must be in (0, 4], got {self.scale}, {self.contrast}")


DEFAULT_STYLE = DefectStyle()


def _grid(h: int, w: int) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Row and column coordinates of every pixel."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy, xx


def _surface(rng: np.random.Generator, kind: str, h: int, w: int) -> FloatImage:
    """A grayscale float32 surface in 0..1."""
    base = rng.uniform(0.35, 0.65)
    img: FloatImage
    if kind == "metal":
        noise = rng.normal(0, 1, (h, w)).astype(np.float32)
        k = max(3, (w // 6) | 1)
        streaks = cv2.blur(noise, (k, 1))
        img = base + 0.08 * streaks / (streaks.std() + 1e-6)
    elif kind == "fabric":
        yy, xx = _grid(h, w)
        period = rng.uniform(3.0, 6.0) * max(h, w) / 128
        angle = rng.uniform(0, np.pi)
        u = xx * np.cos(angle) + yy * np.sin(angle)
        v = -xx * np.sin(angle) + yy * np.cos(angle)
        weave = np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period)
        img = base + 0.06 * weave + 0.02 * rng.normal(0, 1, (h, w))
    elif kind == "cast":  # sand-cast metal: coarse grain and scattered pinhole pores (acceptable, not defects)
        grain = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), max(1.0, max(h, w) / 160))
        img = base + 0.07 * grain / (grain.std() + 1e-6)
        pores = np.zeros((h, w), np.float32)
        for _ in range(int(rng.integers(3, 12) * h * w / (128 * 128)) + 1):
            center = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
            cv2.circle(pores, center, max(1, int(max(h, w) / 256)), float(rng.uniform(0.3, 1.0)), -1)
        img = img - 0.06 * pores
    elif kind == "tile":  # fine grain and a few large mottles
        grain = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.0)
        mottle = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), max(h, w) / 10)
        img = base + 0.03 * grain / (grain.std() + 1e-6) + 0.04 * mottle / (mottle.std() + 1e-6)
    else:
        raise ValueError(f"unknown synthetic surface {kind!r}; choose from {ALL_SURFACES}")
    return img.astype(np.float32)


def _lighting(rng: np.random.Generator, h: int, w: int) -> FloatImage:
    yy, xx = _grid(h, w)
    gx: float
    gy: float
    gx, gy = rng.uniform(-0.15, 0.15, 2)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    vignette = 1.0 - rng.uniform(0, 0.15) * (((xx - cx) / w) ** 2 + ((yy - cy) / h) ** 2)
    return (1.0 + gx * (xx / w - 0.5) + gy * (yy / h - 0.5)) * vignette


def _contrast(rng: np.random.Generator, style: DefectStyle) -> float:
    """Defect contrast: mostly clear, one in five faint, so the task is not trivially separable."""
    return float(rng.uniform(0.06, 0.12) if rng.random() < 0.2 else rng.uniform(0.12, 0.3)) * style.contrast


def _scratch(rng: np.random.Generator, img: FloatImage, h: int, w: int, style: DefectStyle) -> FloatImage:
    mask = np.zeros((h, w), np.float32)
    length = rng.uniform(0.3, 0.8) * max(h, w) * style.scale
    angle = rng.uniform(0, np.pi)
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
    bend = rng.uniform(-0.15, 0.15) * length
    t = np.linspace(-0.5, 0.5, 24)
    xs = cx + t * length * np.cos(angle) - bend * (t**2 - 0.25) * np.sin(angle)
    ys = cy + t * length * np.sin(angle) + bend * (t**2 - 0.25) * np.cos(angle)
    pts = np.stack([xs, ys], 1).round().astype(np.int32)
    cv2.polylines(mask, [pts], False, 1.0, thickness=max(1, int(round(max(h, w) / 128))), lineType=cv2.LINE_AA)
    sign: float = rng.choice([-1.0, 1.0])
    return img + sign * _contrast(rng, style) * 1.5 * mask


def _spot(rng: np.random.Generator, img: FloatImage, h: int, w: int, style: DefectStyle) -> FloatImage:
    mask = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        r = rng.uniform(0.02, 0.06) * max(h, w) * style.scale
        center = (int(rng.uniform(0.15, 0.85) * w), int(rng.uniform(0.15, 0.85) * h))
        cv2.circle(mask, center, max(1, int(r)), 1.0, -1, lineType=cv2.LINE_AA)
    rim: FloatImage = cv2.GaussianBlur(mask, (0, 0), 1.0) - mask
    spotted: FloatImage = (
        img - _contrast(rng, style) * 1.8 * mask + 0.5 * _contrast(rng, style) * np.clip(rim, 0, None) * 4
    )
    return spotted


def _crack(rng: np.random.Generator, img: FloatImage, h: int, w: int, style: DefectStyle) -> FloatImage:
    mask = np.zeros((h, w), np.float32)
    x, y = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
    heading = rng.uniform(0, 2 * np.pi)
    step = max(h, w) * style.scale / 40
    branches = [(x, y, heading)]
    for _ in range(int(rng.integers(1, 3))):
        if not branches:
            break
        x, y, heading = branches.pop()
        pts = [(x, y)]
        for _ in range(int(rng.integers(12, 30))):
            heading += rng.normal(0, 0.5)
            x, y = x + step * np.cos(heading), y + step * np.sin(heading)
            pts.append((x, y))
            if rng.random() < 0.08:
                branches.append((x, y, heading + rng.choice([-1, 1]) * rng.uniform(0.5, 1.2)))
        cv2.polylines(mask, [np.array(pts).round().astype(np.int32)], False, 1.0, 1, cv2.LINE_8)
    return img - _contrast(rng, style) * 2.0 * mask


def _stain(rng: np.random.Generator, img: FloatImage, h: int, w: int, style: DefectStyle) -> FloatImage:
    blob: npt.NDArray[np.float32] = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(2, 6))):
        center = (int(rng.uniform(0.2, 0.8) * w), int(rng.uniform(0.2, 0.8) * h))
        axes = (int(rng.uniform(0.05, 0.15) * w * style.scale) + 1, int(rng.uniform(0.05, 0.15) * h * style.scale) + 1)
        cv2.ellipse(blob, center, axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
    blob = cast(
        npt.NDArray[np.float32], cv2.GaussianBlur(blob, (0, 0), max(h, w) * style.scale / 40)
    )  # cv2 keeps the dtype
    blob /= blob.max() + 1e-6
    sign: float = rng.choice([-1.0, 1.0])
    return img + sign * _contrast(rng, style) * blob


def _chip(rng: np.random.Generator, img: FloatImage, h: int, w: int, style: DefectStyle) -> FloatImage:
    """A corner or edge broken off: the belt (dark) shows through a jagged polygon at the border."""
    corner = int(rng.integers(4))
    size = rng.uniform(0.2, 0.35) * min(h, w) * style.scale
    cx, cy = (0 if corner in (0, 3) else w - 1), (0 if corner in (0, 1) else h - 1)
    angles = np.sort(rng.uniform(0, np.pi / 2, 5)) + corner * np.pi / 2
    sx, sy = (1 if cx == 0 else -1), (1 if cy == 0 else -1)
    pts = [(cx, cy)] + [
        (
            cx + sx * abs(np.cos(a)) * size * rng.uniform(0.6, 1.2),
            cy + sy * abs(np.sin(a)) * size * rng.uniform(0.6, 1.2),
        )
        for a in angles
    ]
    mask = np.zeros((h, w), np.float32)
    cv2.fillPoly(mask, [np.array(pts).round().astype(np.int32)], 1.0, lineType=cv2.LINE_AA)
    return img * (1 - mask) + 0.08 * mask


def _dent(rng: np.random.Generator, img: FloatImage, h: int, w: int, style: DefectStyle) -> FloatImage:
    """A shallow dent: a soft shading ramp (light on one side, shadow on the other)."""
    yy, xx = _grid(h, w)
    cx, cy = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h
    r = rng.uniform(0.08, 0.16) * max(h, w) * style.scale
    d2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / r**2
    angle = rng.uniform(0, 2 * np.pi)
    ramp = ((xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)) / r
    dented: FloatImage = img + _contrast(rng, style) * 4.0 * ramp * np.exp(-d2)
    return dented


_DEFECT_FN = {"scratch": _scratch, "spot": _spot, "crack": _crack, "stain": _stain, "chip": _chip, "dent": _dent}


def render(
    rng: np.random.Generator,
    label: str,
    size: Tuple[int, int] = (128, 128),
    surface: Optional[str] = None,
    surfaces: Sequence[str] = SURFACES,
    style: DefectStyle = DEFAULT_STYLE,
) -> np.ndarray:
    """One HxWx3 uint8 RGB image of class ``label`` (``good``, :data:`DEFECTS` or :data:`UNSEEN_DEFECTS`)
    on ``surface``, or on one drawn from ``surfaces``."""
    w, h = size
    kind = surface or surfaces[int(rng.integers(len(surfaces)))]
    img = _surface(rng, kind, h, w)
    if label != GOOD:
        img = _DEFECT_FN[label](rng, img, h, w, style)
    img = img * _lighting(rng, h, w) + rng.normal(0, rng.uniform(0.005, 0.02), (h, w))
    gray = np.clip(img * 255.0, 0, 255).astype(np.uint8)
    tint = rng.uniform(0.94, 1.06, 3)
    rgb = np.clip(gray[:, :, None].astype(np.float32) * tint, 0, 255).astype(np.uint8)
    return rgb


def generate(
    out: str | os.PathLike[str],
    per_class: int | Dict[str, int] = 50,
    size: Tuple[int, int] = (128, 128),
    seed: int = 0,
    classes: Sequence[str] = (GOOD,) + DEFECTS,
    image_format: str = "png",
    surfaces: Sequence[str] = SURFACES,
    style: DefectStyle = DEFAULT_STYLE,
) -> Dict[str, int]:
    """Write ``out/<class>/<class>_NNNNN.<format>``; returns images written per class.

    Each image's random stream depends only on (seed, class, index), so asking for more images keeps the
    earlier ones identical.
    """
    unknown = [s for s in surfaces if s not in ALL_SURFACES]
    if unknown or not surfaces:
        raise ValueError(f"unknown synthetic surface(s) {unknown}; choose from {ALL_SURFACES}")
    out = Path(out)
    counts: Dict[str, int] = {}
    for class_index, label in enumerate(classes):
        if label != GOOD and label not in _DEFECT_FN:
            raise ValueError(f"unknown synthetic class {label!r}; choose from {(GOOD,) + DEFECTS + UNSEEN_DEFECTS}")
        n = per_class[label] if isinstance(per_class, dict) else per_class
        folder = out / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            rng = np.random.default_rng([seed, class_index, i])
            save_image(
                folder / f"{label}_{i:05d}.{image_format}", render(rng, label, size, surfaces=surfaces, style=style)
            )
        counts[label] = n
    return counts


def iter_parts(
    seed: int,
    labels: Iterable[str],
    size: Tuple[int, int],
    surfaces: Sequence[str] = SURFACES,
    style: DefectStyle = DEFAULT_STYLE,
) -> Iterable[Tuple[str, np.ndarray]]:
    """Yield (label, RGB image) for a sequence of labels, from a stream independent of :func:`generate`."""
    rng = np.random.default_rng([seed, 9999])
    for label in labels:
        yield label, render(rng, label, size, surfaces=surfaces, style=style)
