"""Image files to 3-channel uint8 RGB, whatever is on disk, with a reason when a file is unusable.

Line cameras and labelling tools write grayscale, 16-bit, RGBA and palette images; folders collected on a
factory floor hold half-copied and zero-byte files. Everything that trains or evaluates a model goes
through :func:`load_image`, so the model always sees the same kind of array and bad files are reported
with their reason instead of crashing a run or vanishing silently.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from inspector.fsutil import atomic_write_bytes

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


class ImageError(ValueError):
    """A file that cannot be used as an image; ``reason`` says why in a few words."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def is_image_name(path: str | os.PathLike) -> bool:
    """True for the file endings the datasets accept (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _truncation_reason(data: bytes, suffix: str) -> str | None:
    """Detect files cut short: OpenCV decodes a truncated JPEG with grey fill and only a warning."""
    if suffix in (".jpg", ".jpeg"):
        if data[:2] != b"\xff\xd8":
            return "not a JPEG file (bad signature)"
        if b"\xff\xd9" not in data[-64:].rstrip(b"\x00\r\n "):
            return "truncated JPEG (no end-of-image marker)"
    elif suffix == ".png":
        if data[:8] != b"\x89PNG\r\n\x1a\n":
            return "not a PNG file (bad signature)"
        if b"IEND" not in data[-64:]:
            return "truncated PNG (no IEND chunk)"
    return None


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Convert an OpenCV-decoded array (BGR order, any depth/channels) to contiguous HxWx3 uint8 RGB.

    16-bit data is mapped by its full range (value / 257) so that 0..65535 becomes 0..255; floats in 0..1
    are scaled by 255. Alpha is dropped: inspection images are not composited.
    """
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        peak = float(np.nanmax(image)) if image.size else 0.0
        scale = 255.0 if peak <= 1.0 else 1.0
        image = np.clip(np.nan_to_num(image) * scale + 0.5, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise ValueError(f"unsupported channel count {channels}")


def decode_image(data: bytes, suffix: str = "", path: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes to HxWx3 uint8 RGB, raising :class:`ImageError` with a reason."""
    if len(data) == 0:
        raise ImageError(path, "empty file")
    reason = _truncation_reason(data, suffix.lower())
    if reason:
        raise ImageError(path, reason)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ImageError(path, "not a decodable image")
    try:
        return to_rgb8(image)
    except ValueError as exc:
        raise ImageError(path, str(exc)) from None


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB; raises :class:`ImageError` (with ``reason``) if unusable."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(path, f"cannot read: {exc.strerror or exc}") from None
    return decode_image(data, Path(path).suffix, path)


def save_image(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image; the format follows the file ending."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(path.suffix or ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ImageError(path, "cannot encode image")
    atomic_write_bytes(path, encoded.tobytes())
