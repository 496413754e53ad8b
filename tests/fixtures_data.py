"""Small datasets made by the tests themselves, and the path of the real one when it is present."""

from pathlib import Path

import pytest

from inspector.synth import generate

MAGNETIC_TILE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "magnetic_tile"


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A synthetic 64x64 dataset, 24 images per class, shared by the session."""
    root = tmp_path_factory.mktemp("synth")
    generate(root, per_class=24, size=(64, 64), seed=1)
    return root


@pytest.fixture(scope="session")
def magnetic_tile() -> Path:
    if not MAGNETIC_TILE.is_dir():
        pytest.skip(f"real dataset not present at {MAGNETIC_TILE}")
    return MAGNETIC_TILE
