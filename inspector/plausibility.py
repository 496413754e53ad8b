"""The frame plausibility gate: is this model input a part like the ones the model was calibrated on?

A classifier trained on parts says nothing sensible about a frame that is not a part: a bundle trained on
cast parts scored a plain gray frame 0.04 and a white one 0.07, both far below its threshold, so an empty
belt, a failed lamp or a covered lens passed every part. This gate runs on every model input (the pixels
the station already prepared, so no extra resize of the camera frame) before its verdict may be ``pass``.
It has two parts, both measured against a :class:`PlausibilityReference` that calibration computes from the
training images and stores in the bundle:

* **image quality** - exposure (mean), contrast (std), clipped pixels, focus (variance of the Laplacian)
  and the lowest contrast of a 4x4 grid of blocks (a half-covered ROI or an empty belt is flat somewhere).
  Each must lie in the range the calibration images span, widened by a margin. A failure means nothing
  usable was seen, so by default the part fails (:class:`GateSettings`).
* **appearance** - a small texture/layout descriptor (block means and contrasts, radial spectrum, gradient
  orientation, grey-level quantiles) whose distance to the calibration images' distribution (probabilistic
  PCA: Mahalanobis in the main components plus the residual) must stay below a high quantile of the
  calibration images' own cross-validated distances times a margin. This catches another product, or
  noise, that has plausible brightness and contrast.

Everything is numpy/OpenCV on a <= 64x64 grey image; it costs well under a millisecond per frame.

Bundles written before the reference existed still load: the gate then checks what needs no reference
(a blank or clipped frame) and, when the bundle holds a camera commissioning reference, the camera's
exposure and focus in its ROI.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> images = [np.clip(rng.normal(120, 20, (64, 64, 3)), 0, 255).astype(np.uint8) for _ in range(40)]
    >>> gate = PlausibilityGate(PlausibilityReference.fit(images))
    >>> gate.check(images[0]).ok, gate.check(np.full((64, 64, 3), 128, np.uint8)).ok
    (True, False)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Dict, Iterable, List, Literal, Optional

import cv2
import numpy as np
from pydantic import Field

from inspector.camera import CameraReference, measure
from inspector.config import StrictModel
from inspector.protocol.enums import Verdict

DESCRIPTOR_SIZE = 64  # the grey image the measures are taken on (the model input, shrunk when larger)
GRID = 4  # blocks per side for the layout features and the covered-region check
BANDS = 6  # radial spectrum bands
ORIENTATIONS = 4  # gradient orientation bins
DARK_LEVEL, BRIGHT_LEVEL = 5, 250
# Ranges are widened by this much at least, whatever the spread of the calibration images: a few grey
# levels of exposure, a factor on the scale measures, a few percent of clipped pixels.
MIN_LEVEL_MARGIN = 12.0
MIN_LOG_MARGIN = math.log(1.6)
MIN_CLIP_MARGIN = 0.03
OOD_QUANTILE = 0.99
FOLDS = 5
EXPLAINED = 0.9


class GateKind(str, Enum):
    """Why a frame was stopped: the picture is unusable, or it shows something the model never saw."""

    QUALITY = "quality"
    APPEARANCE = "appearance"


@dataclass(frozen=True)
class FrameMeasures:
    """Image-quality measures of one model input (grey levels 0..255)."""

    mean: float
    contrast: float  # std of the grey levels
    focus: float  # variance of the Laplacian
    clipped_dark: float  # fraction of pixels <= DARK_LEVEL
    clipped_bright: float  # fraction of pixels >= BRIGHT_LEVEL
    block_contrast: float  # lowest std over a GRID x GRID grid of blocks

    def as_dict(self) -> Dict[str, float]:
        return {k: float(getattr(self, k)) for k in self.__dataclass_fields__}


def grey(image: np.ndarray) -> np.ndarray:
    """The model input as a uint8 grey image of at most DESCRIPTOR_SIZE px a side."""
    if image.ndim == 3 and image.shape[2] >= 3:
        g = cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_RGB2GRAY)
    else:
        g = image.reshape(image.shape[0], image.shape[1])
    h, w = g.shape
    scale = DESCRIPTOR_SIZE / max(h, w)
    if scale < 1:
        g = cv2.resize(g, (max(GRID, round(w * scale)), max(GRID, round(h * scale))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(g, dtype=np.uint8)


def _blocks(g: np.ndarray) -> np.ndarray:
    """GRID x GRID x (bh*bw) view of the image's blocks (the border remainder is left out)."""
    h, w = g.shape
    bh, bw = h // GRID, w // GRID
    return g[: bh * GRID, : bw * GRID].reshape(GRID, bh, GRID, bw).transpose(0, 2, 1, 3).reshape(GRID, GRID, -1)


def measures(g: np.ndarray) -> FrameMeasures:
    """Quality measures of a grey image from :func:`grey`."""
    n = g.size
    mean, std = cv2.meanStdDev(g)
    return FrameMeasures(
        mean=float(mean[0, 0]),
        contrast=float(std[0, 0]),
        focus=float(cv2.Laplacian(g, cv2.CV_32F).var()),
        clipped_dark=float(np.count_nonzero(g <= DARK_LEVEL)) / n,
        clipped_bright=float(np.count_nonzero(g >= BRIGHT_LEVEL)) / n,
        block_contrast=float(_blocks(g.astype(np.float32)).std(axis=2).min()),
    )


@functools.lru_cache(maxsize=8)
def _radial_index(h: int, w: int) -> np.ndarray:
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    r = np.sqrt(fx**2 + fy**2) / 0.5  # 0 .. ~1.41, 1 = Nyquist along an axis
    edges = np.geomspace(1.0 / max(h, w), 1.0, BANDS)  # log-spaced: texture scale, not detail
    return np.searchsorted(edges, r.ravel()).reshape(r.shape)  # 0 = DC and below, BANDS = corners


def descriptor(g: np.ndarray) -> np.ndarray:
    """Appearance descriptor of a grey image from :func:`grey` (about 45 numbers, each of order one)."""
    f = g.astype(np.float32)
    blocks = _blocks(f)
    level = blocks.mean(axis=2).ravel() / 255.0
    local = np.log1p(blocks.std(axis=2).ravel()) / 4.0
    spec = np.abs(np.fft.rfft2(f - f.mean())) ** 2
    band = np.bincount(_radial_index(*g.shape).ravel(), spec.ravel(), minlength=BANDS + 1)[1 : BANDS + 1]
    band = np.log((band + 1e-3) / (band.sum() + 1e-3 * BANDS)) / 4.0
    mag, angle = cv2.cartToPolar(cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3))
    bins = (angle * (ORIENTATIONS / np.pi)).astype(np.int64) % ORIENTATIONS  # orientation modulo 180 degrees
    orient = np.bincount(bins.ravel(), mag.ravel(), minlength=ORIENTATIONS)
    orient = orient / (orient.sum() + 1e-6)
    edge = np.log1p(float(mag.mean())) / 4.0
    cumulative = np.cumsum(np.bincount(g.ravel(), minlength=256)) / g.size
    quantiles = np.searchsorted(cumulative, (0.05, 0.5, 0.95)) / 255.0
    return np.concatenate([level, local, band, orient, [edge], quantiles]).astype(np.float64)


class StatRange(StrictModel):
    """The span of one measure over the calibration images."""

    low: float
    high: float


class AppearanceModel(StrictModel):
    """Probabilistic PCA of the calibration images' descriptors, and the distance they reach."""

    mean: List[float] = Field(description="Descriptor mean")
    scale: List[float] = Field(description="Descriptor standard deviation (floored)")
    components: List[List[float]] = Field(description="Principal axes (k x d) of the standardised descriptors")
    variances: List[float] = Field(description="Variance along each principal axis")
    residual_variance: float = Field(gt=0, description="Mean variance outside the principal axes")
    threshold: float = Field(
        gt=0,
        description="Distance at the OOD quantile of the calibration images "
        "(cross-validated, so not flattered by fitting on them)",
    )

    @classmethod
    def fit(cls, x: np.ndarray, threshold: float = 1.0) -> AppearanceModel:
        mean = x.mean(axis=0)
        sd = x.std(axis=0)
        scale = np.maximum(sd, 0.05 * float(np.median(sd)) + 1e-3)
        z = (x - mean) / scale
        _, s, vt = np.linalg.svd(z, full_matrices=False)
        var = s**2 / max(len(x) - 1, 1)
        explained = np.cumsum(var) / max(var.sum(), 1e-12)
        k = min(int(np.searchsorted(explained, EXPLAINED)) + 1, max(1, len(x) // 4), len(var))
        rest = var[k:]
        residual = float(max(rest.mean() if rest.size else 0.0, 0.05 * var[0] / max(z.shape[1], 1), 1e-3))
        return cls(
            mean=mean.tolist(),
            scale=scale.tolist(),
            components=vt[:k].tolist(),
            variances=np.maximum(var[:k], residual).tolist(),
            residual_variance=residual,
            threshold=threshold,
        )

    def distance(self, x: np.ndarray) -> np.ndarray:
        """Mean squared standardised distance per descriptor (about 1 for a typical calibration image)."""
        z = (np.atleast_2d(x) - np.asarray(self.mean)) / np.asarray(self.scale)
        comp = np.asarray(self.components)
        proj = z @ comp.T
        inside = (proj**2 / np.asarray(self.variances)).sum(axis=1)
        residual = (z**2).sum(axis=1) - (proj**2).sum(axis=1)
        distance: np.ndarray = (inside + np.maximum(residual, 0) / self.residual_variance) / z.shape[1]
        return distance


class PlausibilityReference(StrictModel):
    """What the calibration images look like: stored in the bundle manifest as ``plausibility``."""

    images: int = Field(ge=1, description="Calibration images the reference was computed from")
    ranges: Dict[str, StatRange] = Field(description="Span of each quality measure (see FrameMeasures)")
    appearance: Optional[AppearanceModel] = Field(None, description="Appearance model; None with too few images")

    @classmethod
    def fit(cls, images: Iterable[np.ndarray], min_appearance_images: int = 20) -> PlausibilityReference:
        """Reference from model inputs (HxWx3 uint8 as the station prepares them), e.g. the training sample."""
        greys = [grey(np.asarray(image)) for image in images]
        if not greys:
            raise ValueError("a plausibility reference needs at least one image")
        m = [measures(g).as_dict() for g in greys]
        ranges = {k: StatRange(low=min(d[k] for d in m), high=max(d[k] for d in m)) for k in m[0]}
        appearance = None
        if len(greys) >= min_appearance_images:
            x = np.stack([descriptor(g) for g in greys])
            appearance = AppearanceModel.fit(x, _cross_validated_threshold(x))
        return cls(images=len(greys), ranges=ranges, appearance=appearance)


def _cross_validated_threshold(x: np.ndarray) -> float:
    """OOD_QUANTILE of each image's distance to a model fitted without it (FOLDS folds)."""
    order = np.random.default_rng(0).permutation(len(x))
    distances = np.empty(len(x))
    for fold in np.array_split(order, FOLDS):
        rest = np.setdiff1d(order, fold)
        distances[fold] = AppearanceModel.fit(x[rest]).distance(x[fold])
    return float(np.quantile(distances, OOD_QUANTILE))


class GateSettings(StrictModel):
    """The station's ``gate`` section: what a frame that fails the gate becomes, and how wide the margins are."""

    enabled: bool = Field(True, description="Check every frame before its verdict may be pass")
    on_quality: Literal["fail", "review"] = Field(
        "fail",
        description="Verdict of a frame that is blank, black, white, clipped, flat or out of focus. "
        "fail: nothing usable was seen, so the part cannot be accepted, and a controller "
        "with review_action=accept would let a review through",
    )
    on_appearance: Literal["fail", "review"] = Field(
        "review",
        description="Verdict of a usable frame unlike the calibration images (another product, "
        "a changed set-up): a person decides",
    )
    margin: float = Field(
        0.5,
        ge=0,
        description="Widen each quality range by this fraction of its width (at least a fixed minimum per measure)",
    )
    appearance_margin: float = Field(
        2.0, ge=1, description="Flag when the appearance distance exceeds the bundle's threshold times this"
    )
    min_contrast: float = Field(
        2.0, ge=0, description="Grey-level std below which a frame is blank, with or without a reference"
    )
    max_clipped: float = Field(
        0.5, gt=0, le=1, description="Fraction of clipped pixels that always stops a frame, with or without a reference"
    )


@dataclass
class GateReport:
    """The gate's findings on one frame; ``ok`` when there are none."""

    reasons: List[str] = field(default_factory=list)
    kinds: List[GateKind] = field(default_factory=list)
    measures: Optional[FrameMeasures] = None
    appearance: Optional[float] = None  # distance / threshold; > appearance_margin is flagged

    @property
    def ok(self) -> bool:
        return not self.reasons

    @property
    def codes(self) -> List[str]:
        """The reasons' codes (the part before ':'), for counting."""
        return [r.split(":", 1)[0] for r in self.reasons]

    def add(self, kind: GateKind, reason: str) -> None:
        self.kinds.append(kind)
        self.reasons.append(reason)


_LOG_MEASURES = ("contrast", "focus", "block_contrast")
_UPPER_ONLY = ("clipped_dark", "clipped_bright")
_CODES = {  # measure -> (code when too low, code when too high)
    "mean": ("under_exposed", "over_exposed"),
    "contrast": ("low_contrast", "high_contrast"),
    "focus": ("out_of_focus", "too_sharp"),
    "block_contrast": ("flat_region", "busy_region"),
    "clipped_dark": ("", "clipped_dark"),
    "clipped_bright": ("", "clipped_bright"),
}


def allowed_range(name: str, span: StatRange, margin: float) -> tuple[float, float]:
    """The range a measure may take on the line: the calibration span widened by ``margin``."""
    if name in _UPPER_ONLY:
        return -math.inf, span.high + max(margin * (span.high - span.low), MIN_CLIP_MARGIN)
    if name in _LOG_MEASURES:
        lo, hi = math.log1p(span.low), math.log1p(span.high)
        pad = max(margin * (hi - lo), MIN_LOG_MARGIN)
        return math.expm1(lo - pad), math.expm1(hi + pad)
    pad = max(margin * (span.high - span.low), MIN_LEVEL_MARGIN)
    return span.low - pad, span.high + pad


class PlausibilityGate:
    """Checks model inputs against a bundle's reference; cheap to build, safe to share between threads."""

    def __init__(
        self,
        reference: Optional[PlausibilityReference],
        settings: Optional[GateSettings] = None,
        camera: Optional[CameraReference] = None,
    ):
        self.reference = reference
        self.settings = settings or GateSettings()
        self.camera = camera if reference is None else None  # the fallback for bundles without a reference
        self._ranges = (
            {}
            if reference is None
            else {name: allowed_range(name, span, self.settings.margin) for name, span in reference.ranges.items()}
        )

    def check(self, prepared: np.ndarray, frame: Optional[np.ndarray] = None) -> GateReport:
        """Findings on one model input; ``frame`` (the raw camera frame) is only used by the camera fallback."""
        s = self.settings
        report = GateReport()
        g = grey(prepared)
        m = measures(g)
        report.measures = m
        if m.contrast < s.min_contrast:
            report.add(GateKind.QUALITY, f"blank: contrast {m.contrast:.2f} < {s.min_contrast:g}")
        for name, value in (("clipped_dark", m.clipped_dark), ("clipped_bright", m.clipped_bright)):
            if value >= s.max_clipped:
                report.add(GateKind.QUALITY, f"{name}: {value:.2f} of pixels")
        if report.reasons:
            return report  # no point measuring how unusual an empty picture looks
        values = m.as_dict()
        for name, (low, high) in self._ranges.items():
            value = values[name]
            too_low, too_high = _CODES[name]
            if value < low:
                report.add(GateKind.QUALITY, f"{too_low}: {name} {value:.3g} < {low:.3g}")
            elif value > high:
                report.add(GateKind.QUALITY, f"{too_high}: {name} {value:.3g} > {high:.3g}")
        model = self.reference.appearance if self.reference is not None else None
        if model is not None:
            report.appearance = float(model.distance(descriptor(g))[0]) / model.threshold
            if report.appearance > s.appearance_margin:
                report.add(
                    GateKind.APPEARANCE, f"unfamiliar: appearance {report.appearance:.2f} > {s.appearance_margin:g}"
                )
        if self.camera is not None and frame is not None:
            try:
                problems = self.camera.check(measure(frame, self.camera.roi))
            except ValueError as exc:  # the reference's ROI is not inside this camera's frames
                problems = [f"camera_roi: {exc}"]
            for problem in problems:
                report.add(GateKind.QUALITY, problem)
        return report

    def apply(self, verdict: Verdict, report: GateReport) -> Verdict:
        """The model's verdict made at least as strict as the action of each finding (never pass when flagged)."""
        s = self.settings
        strictest = verdict
        for kind in report.kinds:
            action = Verdict(s.on_quality if kind == GateKind.QUALITY else s.on_appearance)
            if _SEVERITY[action] > _SEVERITY[strictest]:
                strictest = action
        return strictest


_SEVERITY = {Verdict.PASS: 0, Verdict.REVIEW: 1, Verdict.FAIL: 2}
