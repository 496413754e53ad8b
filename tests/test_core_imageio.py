"""Image loading: every kind of file a line or labelling tool writes, and the broken ones."""

import cv2
import numpy as np
import pytest

from inspector.imageio import ImageError, load_image


def _write(path, array):
    assert cv2.imwrite(str(path), array)
    return path


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = np.arange(64 * 48, dtype=np.uint32).reshape(48, 64).astype(np.uint8)
    img = load_image(_write(tmp_path / "g.png", gray))
    assert img.shape == (48, 64, 3) and img.dtype == np.uint8
    assert np.array_equal(img[:, :, 0], gray) and np.array_equal(img[:, :, 2], gray)


def test_color_is_returned_in_rgb_order(tmp_path):
    bgr = np.zeros((8, 8, 3), np.uint8)
    bgr[:, :, 0] = 200  # blue in OpenCV order
    img = load_image(_write(tmp_path / "c.png", bgr))
    assert img[0, 0].tolist() == [0, 0, 200]


def test_sixteen_bit_uses_full_range(tmp_path):
    deep = np.array([[0, 65535], [32896, 257]], np.uint16)
    img = load_image(_write(tmp_path / "d.png", deep))
    assert img[:, :, 0].tolist() == [[0, 255], [128, 1]]


def test_twelve_bit_camera_data_in_a_sixteen_bit_file_keeps_its_top_eight_bits(tmp_path):
    mono12 = np.array([[0, 4095], [2048, 16]], np.uint16)  # a Mono12 camera's values, saved as 16-bit
    for name in ("m.png", "m.tif"):
        img = load_image(_write(tmp_path / name, mono12))
        assert img[:, :, 0].tolist() == [[0, 255], [128, 1]]  # what the camera gives in 8-bit mode
    one_bright_pixel = mono12.copy()
    one_bright_pixel[0, 0] = 4096  # no longer fits in 12 bits: the full 16-bit range
    assert load_image(_write(tmp_path / "w.png", one_bright_pixel))[:, :, 0].tolist() == [[16, 16], [8, 0]]


def test_alpha_is_dropped(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 2] = 90
    rgba[..., 3] = 10
    img = load_image(_write(tmp_path / "a.png", rgba))
    assert img.shape == (4, 4, 3) and img[0, 0].tolist() == [90, 0, 0]


def test_palette_png_loads(tmp_path):
    # A hand-made 2x1 palette PNG (color type 3) with a red and a blue entry.
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 1, 8, 3, 0, 0, 0))
    png += chunk(b"PLTE", bytes([255, 0, 0, 0, 0, 255]))
    png += chunk(b"IDAT", zlib.compress(b"\x00\x00\x01")) + chunk(b"IEND", b"")
    path = tmp_path / "p.png"
    path.write_bytes(png)
    assert load_image(path).tolist() == [[[255, 0, 0], [0, 0, 255]]]


@pytest.mark.parametrize(
    "name,content,reason",
    [
        ("empty.png", b"", "empty file"),
        ("text.png", b"this is not an image\n", "not a PNG file"),
        ("text.jpg", b"hello", "not a JPEG file"),
    ],
)
def test_unusable_files_raise_with_reason(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError) as err:
        load_image(path)
    assert reason in err.value.reason


def test_truncated_jpeg_is_detected(tmp_path):
    ok, data = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    path = tmp_path / "cut.jpg"
    path.write_bytes(data.tobytes()[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated JPEG"):
        load_image(path)


@pytest.mark.parametrize(
    "params", [[cv2.IMWRITE_WEBP_QUALITY, 90], [cv2.IMWRITE_WEBP_QUALITY, 101]], ids=["lossy", "lossless"]
)
def test_webp_loads_with_its_header_size(tmp_path, params):
    from inspector.imageio import header_size

    image = np.random.default_rng(0).integers(0, 255, (37, 91, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".webp", image, params)
    assert ok
    assert header_size(data.tobytes(), "webp") == (91, 37)
    loaded = load_image(_write_bytes(tmp_path / "a.webp", data.tobytes()))
    assert loaded.shape == (37, 91, 3)
    if params[1] > 100:  # lossless: the exact pixels, in RGB order
        assert np.array_equal(loaded, image[:, :, ::-1])
    with pytest.raises(ImageError, match="truncated WebP"):
        load_image(_write_bytes(tmp_path / "cut.webp", data.tobytes()[: len(data) // 2]))


def test_extended_webp_with_alpha_loads(tmp_path):
    from PIL import Image

    from inspector.imageio import header_size

    rgba = np.random.default_rng(1).integers(0, 255, (20, 30, 4), dtype=np.uint8)
    path = tmp_path / "alpha.webp"
    Image.fromarray(rgba, "RGBA").save(path, "WEBP", quality=90, exif=b"Exif\x00\x00")
    assert path.read_bytes()[12:16] == b"VP8X"
    assert header_size(path.read_bytes(), "webp") == (30, 20)
    assert load_image(path).shape == (20, 30, 3)


def _write_bytes(path, data):
    path.write_bytes(data)
    return path
