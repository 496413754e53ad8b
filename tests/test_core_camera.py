"""Camera measures flag blur and exposure problems and pass the reference."""

import cv2
import numpy as np

from inspector.camera import CameraReference, measure
from inspector.synth import render


def test_blur_and_exposure_are_flagged():
    frame = render(np.random.default_rng(0), "crack", (160, 120), surface="fabric")
    ref = CameraReference.from_frame(frame)
    assert ref.check(measure(frame)) == []
    blurred = cv2.GaussianBlur(frame, (0, 0), 3)
    assert any(p.startswith("out_of_focus") for p in ref.check(measure(blurred)))
    bright = cv2.convertScaleAbs(frame, alpha=2.5, beta=60)
    problems = ref.check(measure(bright))
    assert any(p.startswith("over_exposed") for p in problems)
    assert any(p.startswith("clipped_bright") for p in problems)
    dark = (frame // 8).astype(np.uint8)
    assert any(p.startswith("under_exposed") for p in ref.check(measure(dark)))
