"""Camera health: the commissioning reference checked every N frames, reported only on change."""

import numpy as np

from edge.health import CameraHealth
from inspector.camera import CameraReference


def _textured(mean=128):
    rng = np.random.default_rng(0)
    return np.clip(rng.normal(mean, 40, (64, 64, 3)), 0, 255).astype(np.uint8)


def test_checks_every_n_frames_and_reports_transitions_once():
    health = CameraHealth(CameraReference.from_frame(_textured()), every_n=5)
    due = [health.due() for _ in range(11)]
    assert [i for i, d in enumerate(due) if d] == [0, 4, 9]
    assert health.check(_textured()).ok and not health.check(_textured()).changed
    blurred = np.full((64, 64, 3), 128, np.uint8)
    first = health.check(blurred)
    assert not first.ok and first.changed and first.problems[0].startswith("out_of_focus")
    assert not health.check(blurred).changed  # same problem: no new event
    recovered = health.check(_textured())
    assert recovered.ok and recovered.changed


def test_exposure_drift_is_reported():
    health = CameraHealth(CameraReference.from_frame(_textured(100)), every_n=1)
    report = health.check(_textured(230))
    assert any(p.startswith("over_exposed") for p in report.problems)
    assert report.metrics.mean > 150
