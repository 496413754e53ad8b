"""Image files to 3-channel uint8 RGB, whatever is on disk, with a reason when a file is unusable.

Line cameras and labelling tools write grayscale, 16-bit, RGBA and palette images; folders collected on a
factory floor hold half-copied and zero-byte files. Everything that trains or evaluates a model goes
through :func:`load_image`, so the model always sees the same kind of array and bad files are reported
with their reason instead of crashing a run or vanishing silently.

The format is told by the file's first bytes, not its name (a PNG saved as ``.jpg`` is a PNG), and the
size in the header is checked before decoding: a 16000x16000 PNG of 248 KB would otherwise take 1.3 GB
of memory. Images above :data:`MAX_PIXELS` are refused with their size as the reason.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Optional, Tuple

import cv2
import numpy as np

from inspector.fsutil import atomic_write_bytes

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MAX_PIXELS = 50_000_000  # far above any inspection camera (a 20 Mpx sensor is 20e6), far below a bomb
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)
_NAMES = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WebP",
}


class ImageError(ValueError):
    """A file that cannot be used as an image; ``reason`` says why in a few words."""

    def __init__(self, path: str | os.PathLike[str], reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def is_image_name(path: str | os.PathLike[str]) -> bool:
    """True for the file endings the datasets accept (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def sniff_format(data: bytes) -> Optional[str]:
    """``png``, ``jpeg``, ``bmp``, ``tiff`` or ``webp`` from the first bytes; None for anything else."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for magic, kind in _SIGNATURES:
        if data.startswith(magic):
            return kind
    return None


def _truncation_reason(data: bytes, kind: str) -> str | None:
    """Detect files cut short: OpenCV decodes a truncated JPEG with grey fill and only a warning."""
    if kind == "jpeg" and b"\xff\xd9" not in data[-64:].rstrip(b"\x00\r\n "):
        return "truncated JPEG (no end-of-image marker)"
    if kind == "png" and b"IEND" not in data[-64:]:
        return "truncated PNG (no IEND chunk)"
    if kind == "webp" and len(data) < 8 + int.from_bytes(data[4:8], "little"):
        return "truncated WebP (shorter than its RIFF size)"
    return None


def _jpeg_size(data: bytes) -> Optional[Tuple[int, int]]:
    """Width and height from the first start-of-frame marker (SOF0..SOF15 except DHT, JPG, DAC)."""
    pos = 2
    while pos + 9 < len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    return None


def _tiff_size(data: bytes) -> Optional[Tuple[int, int]]:
    """ImageWidth and ImageLength of the first IFD."""
    order = "<" if data[:2] == b"II" else ">"
    try:
        offset = struct.unpack(order + "I", data[4:8])[0]
        count = struct.unpack(order + "H", data[offset : offset + 2])[0]
        size = {}
        for i in range(count):
            tag, kind, _, value = struct.unpack(order + "HHI4s", data[offset + 2 + 12 * i : offset + 14 + 12 * i])
            if tag in (256, 257):
                size[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), value[: 2 if kind == 3 else 4])[0]
    except struct.error:
        return None
    return (size[256], size[257]) if len(size) == 2 else None


def _webp_size(data: bytes) -> Optional[Tuple[int, int]]:
    """Canvas size of a lossy (VP8), lossless (VP8L) or extended (VP8X) WebP file."""
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    return None


def header_size(data: bytes, kind: str) -> Optional[Tuple[int, int]]:
    """(width, height) from the header of a ``kind`` image, without decoding it; None if unreadable."""
    try:
        if kind == "png":
            return struct.unpack(">II", data[16:24]) if data[12:16] == b"IHDR" else None
        if kind == "bmp":
            width, height = struct.unpack("<ii", data[18:26])
            return abs(width), abs(height)  # a negative height means top-down rows
    except struct.error:
        return None
    if kind == "jpeg":
        return _jpeg_size(data)
    if kind == "tiff":
        return _tiff_size(data)
    if kind == "webp":
        return _webp_size(data)
    return None


TWELVE_BIT_PEAK = 4095  # a 16-bit image whose values all fit in 12 bits holds a Mono12 camera's data


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Convert an OpenCV-decoded array (BGR order, any depth/channels) to contiguous HxWx3 uint8 RGB.

    16-bit data is mapped by its full range (value / 257) so that 0..65535 becomes 0..255, except that an
    image whose values all fit in 12 bits (at most :data:`TWELVE_BIT_PEAK`) is 12-bit camera data in a 16-bit
    file, as Mono12 cameras' tools save it: its top 8 bits are kept (value / 16), which is what the camera
    gives in 8-bit mode. By the full range it would be 16 times too dark (0..16), and a model learns nothing
    from it (measured on a synthetic set: docs/training.md, "Image files"). A 16-bit exposure that dark is
    not an inspection image. Floats in 0..1 are scaled by 255. Alpha is dropped: inspection images are not
    composited.
    """
    if image.dtype == np.uint16:
        scale = 16.0 if image.size and int(image.max()) <= TWELVE_BIT_PEAK else 257.0
        image = np.minimum(image.astype(np.float32) / scale + 0.5, 255).astype(np.uint8)
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


def decode_image(data: bytes, suffix: str = "", path: str | os.PathLike[str] = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes to HxWx3 uint8 RGB, raising :class:`ImageError` with a reason."""
    if len(data) == 0:
        raise ImageError(path, "empty file")
    kind = sniff_format(data)
    if kind is None:
        expected = _NAMES.get(suffix.lower(), "PNG, JPEG, BMP, TIFF or WebP")
        raise ImageError(path, f"not a {expected} file (bad signature)")
    reason = _truncation_reason(data, kind)
    if reason:
        raise ImageError(path, reason)
    size = header_size(data, kind)
    if size is None:
        raise ImageError(path, f"unreadable {kind.upper()} header (no image size)")
    if size[0] * size[1] > MAX_PIXELS:
        raise ImageError(path, f"{size[0]}x{size[1]} pixels is over the pixel limit of {MAX_PIXELS / 1e6:g} Mpx")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ImageError(path, "not a decodable image")
    try:
        return to_rgb8(image)
    except ValueError as exc:
        raise ImageError(path, str(exc)) from None


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB; raises :class:`ImageError` (with ``reason``) if unusable."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(path, f"cannot read: {exc.strerror or exc}") from None
    return decode_image(data, Path(path).suffix, path)


def save_image(path: str | os.PathLike[str], rgb: np.ndarray) -> None:
    """Write an RGB uint8 image; the format follows the file ending."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(path.suffix or ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ImageError(path, "cannot encode image")
    atomic_write_bytes(path, encoded.tobytes())
