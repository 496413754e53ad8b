"""The synthetic generator: reproducible, and not solvable by a constant or a global statistic."""

import numpy as np

from inspector.dataset import scan_folder
from inspector.synth import DEFECTS, generate, render


def _auc(pos, neg):
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def test_reproducible_and_extendable(tmp_path):
    generate(tmp_path / "a", per_class=3, size=(32, 24), seed=5)
    generate(tmp_path / "b", per_class=5, size=(32, 24), seed=5)
    for label in ("good",) + DEFECTS:
        for i in range(3):
            name = f"{label}/{label}_{i:05d}.png"
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    scan = scan_folder(tmp_path / "b")
    assert scan.counts() == {c: 5 for c in ("crack", "good", "scratch", "spot", "stain")}
    assert scan.skipped == []


def test_constant_and_global_statistics_fail():
    rng = np.random.default_rng(0)
    good = [render(rng, "good", (64, 64)).astype(np.int32) for _ in range(120)]
    bad = [render(rng, DEFECTS[i % 4], (64, 64)).astype(np.int32) for i in range(120)]
    # Classes are balanced (a constant guess is right one time in five), and no global image statistic
    # separates good from defective parts well: the model has to find the defect itself.
    for stat in (np.mean, np.std, np.min, np.max):
        auc = _auc([stat(x) for x in bad], [stat(x) for x in good])
        assert max(auc, 1 - auc) < 0.85, (stat.__name__, auc)
