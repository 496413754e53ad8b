"""Camera health measures shared by commissioning (calibration) and the running station (edge).

At commissioning a reference frame is measured and stored with tolerances; on the line the same measures
are taken every N frames. A dirty or defocused lens lowers the focus score (variance of the Laplacian); a
failed lamp or an open shutter moves the mean brightness and the fraction of clipped pixels.

Example:
    >>> import numpy as np
    >>> frame = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    >>> ref = CameraReference.from_frame(frame)
    >>> ref.check(measure(frame))
    []
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import List, Optional

import cv2
import numpy as np
from pydantic import Field

from inspector.config import StrictModel
from inspector.preprocess import Roi

DARK_LEVEL = 5
BRIGHT_LEVEL = 250


@dataclass(frozen=True)
class CameraMetrics:
    """Measures of one frame (inside the region of interest when one is set)."""

    focus: float  # variance of the Laplacian of the luminance
    mean: float  # mean luminance 0..255
    clipped_dark: float  # fraction of pixels <= DARK_LEVEL
    clipped_bright: float  # fraction of pixels >= BRIGHT_LEVEL

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def _luminance(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return frame
    if frame.shape[2] == 1:
        return frame[:, :, 0]
    # Channel order does not matter much for these measures; treat as BGR (OpenCV's capture order).
    return cv2.cvtColor(frame[:, :, :3], cv2.COLOR_BGR2GRAY)


def measure(frame: np.ndarray, roi: Optional[Roi] = None) -> CameraMetrics:
    """Focus and exposure measures of a uint8 frame, inside ``roi`` when given."""
    gray = _luminance(frame)
    if roi is not None:
        gray = gray[roi.y : roi.y + roi.height, roi.x : roi.x + roi.width]
    if gray.size == 0:
        raise ValueError("empty frame or region of interest")
    focus = float(cv2.Laplacian(gray, cv2.CV_64F).var())
    return CameraMetrics(
        focus=focus,
        mean=float(gray.mean()),
        clipped_dark=float(np.count_nonzero(gray <= DARK_LEVEL)) / gray.size,
        clipped_bright=float(np.count_nonzero(gray >= BRIGHT_LEVEL)) / gray.size,
    )


class CameraReference(StrictModel):
    """Reference measures of a commissioned station and how far the live camera may drift."""

    roi: Optional[Roi] = Field(None, description="Region measured (and inspected)")
    focus: float = Field(ge=0, description="Variance of the Laplacian of the reference frame")
    focus_min_ratio: float = Field(
        0.5, gt=0, le=1, description="Flag when focus falls below this fraction of the reference"
    )
    mean: float = Field(ge=0, le=255, description="Mean luminance of the reference frame")
    mean_tolerance: float = Field(40.0, gt=0, description="Allowed absolute drift of mean luminance")
    clipped_max: float = Field(
        0.05, ge=0, le=1, description="Largest allowed fraction of pixels clipped dark or bright"
    )

    @classmethod
    def from_frame(cls, frame: np.ndarray, roi: Optional[Roi] = None, **tolerances: float) -> CameraReference:
        metrics = measure(frame, roi)
        clipped_max = tolerances.pop("clipped_max", max(0.05, 2 * max(metrics.clipped_dark, metrics.clipped_bright)))
        return cls(roi=roi, focus=metrics.focus, mean=metrics.mean, clipped_max=min(clipped_max, 1.0), **tolerances)

    def check(self, metrics: CameraMetrics) -> List[str]:
        """Problems found, as short codes with numbers; an empty list means the camera is fine."""
        problems = []
        if metrics.focus < self.focus * self.focus_min_ratio:
            problems.append(
                f"out_of_focus: focus {metrics.focus:.1f} < {self.focus_min_ratio:.2f} x reference {self.focus:.1f}"
            )
        if metrics.mean > self.mean + self.mean_tolerance:
            problems.append(
                f"over_exposed: mean {metrics.mean:.1f} > reference {self.mean:.1f} + {self.mean_tolerance:.0f}"
            )
        if metrics.mean < self.mean - self.mean_tolerance:
            problems.append(
                f"under_exposed: mean {metrics.mean:.1f} < reference {self.mean:.1f} - {self.mean_tolerance:.0f}"
            )
        if metrics.clipped_bright > self.clipped_max:
            problems.append(f"clipped_bright: {metrics.clipped_bright:.3f} of pixels > {self.clipped_max:.3f}")
        if metrics.clipped_dark > self.clipped_max:
            problems.append(f"clipped_dark: {metrics.clipped_dark:.3f} of pixels > {self.clipped_max:.3f}")
        return problems
