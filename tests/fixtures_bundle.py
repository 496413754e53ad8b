"""Bundles calibrated from the shared ``trained_run`` (built once per session).

``int8_bundle`` is what ``inspector calibrate`` writes by default (full-integer INT8, uint8 I/O, threshold
for 0.5 % escapes on validation) except for three fixture-only options: a 32-image representative sample
(fast; the <200 warning is silenced by ``representative_min=0``, not by changing the default); an
accuracy budget of 100 pp and ``force``, because ``trained_run`` is near chance by design (NOT DEPLOYABLE)
and the fixture must always yield a bundle; and one view (``tta="none"``), so the tests that compare the
station with the model see single-view scores (flip averaging has its own tests in tests/test_core_tta*.py).
The guard itself is tested in tests/test_calibration_guard.py with real budgets, the refusal of an unfit
model in tests/test_calibration_deployability.py.
"""

from pathlib import Path

import pytest


def fixture_options(**overrides):
    from calibration.calibrate import CalibrationOptions

    values = dict(representative_size=32, representative_min=0, accuracy_budget=100.0, force=True, tta="none")
    values.update(overrides)
    return CalibrationOptions(**values)


@pytest.fixture(scope="session")
def calibrated(trained_run, tmp_path_factory):
    """The :class:`calibration.calibrate.CalibrationResult` behind ``int8_bundle``."""
    from calibration.calibrate import calibrate

    out = tmp_path_factory.mktemp("bundle") / "synth.inspector"
    return calibrate(trained_run, out, fixture_options())


@pytest.fixture(scope="session")
def int8_bundle(calibrated) -> Path:
    """Path of a full-integer INT8 .inspector bundle (uint8 input and output) from ``trained_run``."""
    return calibrated.bundle_path
