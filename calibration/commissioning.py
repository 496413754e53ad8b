"""Commissioning a station's camera: where the part is, and how sharp and bright a good frame is.

A reference frame taken when the station is set up (lens clean, in focus, lamps on) is measured with
:func:`inspector.camera.measure` inside the region of interest, and the measures are stored with their
tolerances as a :class:`inspector.camera.CameraReference`, in the bundle (``manifest.camera``) or in the
station config (``health.reference``). The running station measures every Nth frame the same way and
reports a dirty or defocused lens (focus falls) or a failed lamp (mean brightness moves, pixels clip).

The region of interest is given as ``x,y,w,h`` or found in the reference frame: the part is taken to be
the largest connected region of one polarity of an Otsu threshold that does not reach across the frame
from one edge to the opposite one (such a region is background: a belt, a rail, a lit table).

Example:
    >>> import numpy as np
    >>> frame = np.full((120, 160, 3), 30, np.uint8); frame[20:100, 40:120] = 200
    >>> find_roi(frame, margin=0.0).model_dump()
    {'x': 40, 'y': 20, 'width': 80, 'height': 80}
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np
import yaml
from pydantic import Field

from inspector.camera import BRIGHT_LEVEL, DARK_LEVEL, CameraReference, measure
from inspector.config import StrictModel
from inspector.imageio import load_image
from inspector.preprocess import Roi

# A reference frame softer than this (variance of the Laplacian) is probably out of focus already.
MIN_REFERENCE_FOCUS = 20.0


class CommissioningError(ValueError):
    """The reference frame or the region of interest cannot be used."""


def parse_roi(text: str) -> Roi:
    """``"x,y,w,h"`` in pixels -> :class:`Roi`."""
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise CommissioningError(
            f"region of interest must look like x,y,width,height in pixels, got {text!r}"
        ) from None
    try:
        return Roi(x=x, y=y, width=w, height=h)
    except ValueError as exc:
        raise CommissioningError(f"region of interest {text!r}: {exc}") from None


def _gray(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return frame
    return cv2.cvtColor(frame[:, :, :3], cv2.COLOR_BGR2GRAY)


def find_roi(frame: np.ndarray, margin: float = 0.05, min_area: float = 0.01) -> Roi:
    """Bounding box of the part in a frame, grown by ``margin`` of its size on each side.

    A region that touches two opposite edges of the frame is background, however much of the frame its
    bounding box covers: a conveyor belt between two bright rails spans the full width but only 94 % of
    the height, and was taken for the part when only boxes of 95 % of the frame were left out.

    Raises :class:`CommissioningError` when no region of at least ``min_area`` of the frame stands out
    (e.g. the part fills the frame or the background has no contrast): give the ROI by hand then.
    """
    gray = cv2.GaussianBlur(_gray(frame), (5, 5), 0)
    h, w = gray.shape
    _, mask = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    best = None
    for polarity in (mask, 255 - mask):
        n, _, stats, _ = cv2.connectedComponentsWithStats(polarity, connectivity=8)
        for x, y, bw, bh, area in stats[1:n]:
            if area < min_area * h * w or bw >= w or bh >= h:
                continue
            if best is None or area > best[4]:
                best = (int(x), int(y), int(bw), int(bh), int(area))
    if best is None:
        raise CommissioningError(
            "could not find the part in the reference frame (no region stands out from "
            "the background); give the region with --roi x,y,width,height"
        )
    x, y, bw, bh, _ = best
    dx, dy = int(round(margin * bw)), int(round(margin * bh))
    x0, y0 = max(0, x - dx), max(0, y - dy)
    x1, y1 = min(w, x + bw + dx), min(h, y + bh + dy)
    return Roi(x=x0, y=y0, width=x1 - x0, height=y1 - y0)


@dataclass
class Commissioning:
    """The camera reference and what looked wrong about the reference frame itself."""

    reference: CameraReference
    frame_size: tuple  # (width, height)
    warnings: List[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "reference": self.reference.model_dump(mode="json"),
            "frame_size": list(self.frame_size),
            "warnings": self.warnings,
        }

    def describe(self) -> str:
        """The reference as a person reads it: where it was measured and when the station will flag a frame."""
        ref, (w, h) = self.reference, self.frame_size
        roi = f"x={ref.roi.x} y={ref.roi.y} w={ref.roi.width} h={ref.roi.height}" if ref.roi else "whole frame"
        return "\n".join(
            [
                f"camera reference ({w}x{h} frame)",
                f"  ROI       {roi}",
                f"  focus     {ref.focus:.1f} (flagged below {ref.focus * ref.focus_min_ratio:.1f}, "
                f"{ref.focus_min_ratio:.2f} x reference)",
                f"  exposure  mean {ref.mean:.1f} (flagged outside {ref.mean - ref.mean_tolerance:.1f}-"
                f"{ref.mean + ref.mean_tolerance:.1f}), clipped dark or bright at most {100 * ref.clipped_max:.1f}%",
            ]
        )


def commission(
    frame_bgr: np.ndarray,
    roi: Optional[Roi] = None,
    auto_roi: bool = False,
    focus_min_ratio: float = 0.5,
    mean_tolerance: float = 40.0,
    clipped_max: Optional[float] = None,
) -> Commissioning:
    """Measure a reference frame (BGR, as a camera delivers it) into a :class:`CameraReference`."""
    h, w = frame_bgr.shape[:2]
    if auto_roi:
        if roi is not None:
            raise CommissioningError("give either a region of interest or auto ROI, not both")
        roi = find_roi(frame_bgr)
    if roi is not None and (roi.x + roi.width > w or roi.y + roi.height > h):
        raise CommissioningError(
            f"region of interest x={roi.x} y={roi.y} {roi.width}x{roi.height} does not fit "
            f"in the {w}x{h} reference frame"
        )
    tolerances = {"focus_min_ratio": focus_min_ratio, "mean_tolerance": mean_tolerance}
    if clipped_max is not None:
        tolerances["clipped_max"] = clipped_max
    reference = CameraReference.from_frame(frame_bgr, roi, **tolerances)
    metrics = measure(frame_bgr, roi)
    warnings = []
    if metrics.focus < MIN_REFERENCE_FOCUS:
        warnings.append(
            f"reference frame looks soft (focus {metrics.focus:.1f} < {MIN_REFERENCE_FOCUS:.0f}): "
            "check focus and lens before commissioning"
        )
    if metrics.clipped_bright > 0.02:
        warnings.append(
            f"{100 * metrics.clipped_bright:.1f}% of reference pixels are at or above {BRIGHT_LEVEL}: "
            "reduce exposure or light"
        )
    if metrics.clipped_dark > 0.02:
        warnings.append(
            f"{100 * metrics.clipped_dark:.1f}% of reference pixels are at or below {DARK_LEVEL}: "
            "raise exposure or light"
        )
    return Commissioning(reference, (w, h), warnings)


def commission_image(path: str | os.PathLike, **options) -> Commissioning:
    """:func:`commission` on an image file (loaded as RGB, measured in the camera's BGR order)."""
    rgb = load_image(path)
    return commission(np.ascontiguousarray(rgb[:, :, ::-1]), **options)


class CameraOptions(StrictModel):
    """Commissioning reference frame of the station camera."""

    reference_image: str = Field(description="Image of a good part taken by the station camera")
    roi: Optional[Roi] = Field(None, description="Region of interest in the frame (camera pixels)")
    auto_roi: bool = Field(False, description="Find the part in the reference image")
    crop_model_input: bool = Field(
        False, description="Also crop frames to the ROI before the model (training images were part crops)"
    )
    focus_min_ratio: float = Field(0.5, gt=0, le=1, description="Flag focus below this fraction of the reference")
    mean_tolerance: float = Field(40.0, gt=0, description="Allowed drift of mean luminance (0-255)")
    clipped_max: Optional[float] = Field(
        None, ge=0, le=1, description="Largest clipped-pixel fraction; default max(0.05, 2x the reference's)"
    )

    def commission(self) -> Commissioning:
        """Measure the reference image with these options (``crop_model_input`` is for the bundle, not here)."""
        return commission_image(
            self.reference_image,
            roi=self.roi,
            auto_roi=self.auto_roi,
            focus_min_ratio=self.focus_min_ratio,
            mean_tolerance=self.mean_tolerance,
            clipped_max=self.clipped_max,
        )


def check_frame(reference: CameraReference, frame_bgr: np.ndarray) -> List[str]:
    """Problems of a live frame against the reference (empty when the camera is fine)."""
    return reference.check(measure(frame_bgr, reference.roi))


def station_yaml(reference: CameraReference) -> str:
    """The station config fragment (``health.reference``) that carries the reference to a station."""
    header = (
        "# Camera commissioning reference: merge into the station config (inspector run --config).\n"
        "# The station flags a frame whose focus falls below focus x focus_min_ratio, whose mean\n"
        "# luminance leaves mean +- mean_tolerance, or with more than clipped_max pixels clipped.\n"
    )
    body = {"health": {"reference": reference.model_dump(mode="json")}}
    return header + yaml.safe_dump(body, sort_keys=False)


def write_station_yaml(reference: CameraReference, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(station_yaml(reference))
    return path
