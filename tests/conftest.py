"""Shared fixtures. Each area keeps its fixtures in its own module, registered here."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest_plugins = [
    name
    for name in ("tests.fixtures_data", "tests.fixtures_model", "tests.fixtures_mqtt")
    if (ROOT / (name.replace(".", "/") + ".py")).exists()
]
