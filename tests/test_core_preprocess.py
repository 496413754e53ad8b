"""The shared preprocessing: ROI, resize, channel order."""

import cv2
import numpy as np
import pytest

from inspector.preprocess import Preprocessor, PreprocessSpec, Roi


def test_roi_resize_and_channel_order():
    frame_bgr = np.zeros((100, 200, 3), np.uint8)
    frame_bgr[10:60, 20:120] = (255, 0, 0)  # a blue block in OpenCV order, exactly the ROI
    spec = PreprocessSpec(width=32, height=16, roi=Roi(x=20, y=10, width=100, height=50))
    out = Preprocessor(spec).prepare(frame_bgr, order="bgr")
    assert out.shape == (16, 32, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    assert (out == np.array([0, 0, 255], np.uint8)).all()  # RGB: blue is last


def test_same_pixels_from_file_order_and_camera_order():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    pre = Preprocessor(PreprocessSpec(width=40, height=30))
    assert np.array_equal(pre.prepare(rgb, "rgb"), pre.prepare(np.ascontiguousarray(rgb[:, :, ::-1]), "bgr"))
    expected = cv2.resize(rgb, (40, 30), interpolation=cv2.INTER_AREA)
    assert np.array_equal(pre.prepare(rgb, "rgb"), expected)


def test_grayscale_frames_and_grayscale_mode():
    gray = np.full((20, 20), 77, np.uint8)
    out = Preprocessor(PreprocessSpec(width=10, height=10)).prepare(gray)
    assert out.shape == (10, 10, 3) and (out == 77).all()
    color = np.zeros((10, 10, 3), np.uint8)
    color[..., 0] = 255
    out = Preprocessor(PreprocessSpec(width=10, height=10, grayscale=True)).prepare(color, "rgb")
    assert (out[..., 0] == out[..., 1]).all() and 70 < out[0, 0, 0] < 80


def test_roi_outside_frame_is_an_error():
    pre = Preprocessor(PreprocessSpec(width=8, height=8, roi=Roi(x=50, y=0, width=60, height=10)))
    with pytest.raises(ValueError, match="does not fit"):
        pre.prepare(np.zeros((20, 100, 3), np.uint8))


@pytest.mark.parametrize(
    "spec, shape",
    [
        (PreprocessSpec(width=64, height=48), (480, 640, 3)),  # resized
        (PreprocessSpec(width=64, height=48), (48, 64, 3)),  # already the model's size
        (PreprocessSpec(width=64, height=48), (48, 64, 4)),  # BGRA at the model's size: a strided view
        (PreprocessSpec(width=32, height=32, roi=Roi(x=5, y=7, width=32, height=32)), (100, 100, 3)),  # crop only
        (PreprocessSpec(width=30, height=20, roi=Roi(x=5, y=7, width=60, height=50)), (100, 100, 4)),
    ],
)
def test_channel_swap_gives_the_bytes_of_the_reversed_array(spec, shape):
    """The swap is one cvtColor pass; the model input must stay the bytes the numpy reversal gave."""
    frame = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    region = Preprocessor(spec).crop(frame)[:, :, :3]
    if region.shape[:2] != (spec.height, spec.width):
        region = cv2.resize(region, (spec.width, spec.height), interpolation=cv2.INTER_AREA)
    out = Preprocessor(spec).prepare(frame, "bgr")
    assert np.array_equal(out, np.ascontiguousarray(region[:, :, ::-1])) and out.flags.c_contiguous
    assert np.array_equal(Preprocessor(spec).prepare(frame, "rgb"), np.ascontiguousarray(region))
