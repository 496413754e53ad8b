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
