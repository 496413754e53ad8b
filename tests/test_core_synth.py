"""The synthetic generator: reproducible, and not solvable by a constant or a global statistic."""

import numpy as np
import pytest

from inspector.dataset import scan_folder
from inspector.synth import _DEFECT_FN, ALL_SURFACES, DEFECTS, SURFACES, UNSEEN_DEFECTS, DefectStyle, generate, render


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


def test_default_options_keep_the_default_data_set(tmp_path):
    """The texture and defect-style options leave every existing fixture's images unchanged when not asked for."""
    generate(tmp_path / "a", per_class=2, size=(48, 40), seed=3)
    generate(tmp_path / "b", per_class=2, size=(48, 40), seed=3, surfaces=SURFACES, style=DefectStyle(1.0, 1.0))
    for path in sorted((tmp_path / "a").rglob("*.png")):
        assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()


def test_surfaces_option_picks_the_texture(tmp_path):
    """``surfaces`` chooses the material: ``cast`` is never in the default mix, only when asked for."""
    assert "cast" in ALL_SURFACES and "cast" not in SURFACES
    cast = render(np.random.default_rng(1), "good", (64, 64), surfaces=("cast",))
    assert np.array_equal(cast, render(np.random.default_rng(1), "good", (64, 64), surface="cast"))
    for other in SURFACES:
        assert not np.array_equal(cast, render(np.random.default_rng(1), "good", (64, 64), surface=other)), other
    with pytest.raises(ValueError, match="unknown synthetic surface"):
        generate(tmp_path, per_class=1, surfaces=("wood",))


def _defect_mask(label, style, seed):
    """What a defect does to a flat grey surface (the same random draws for every style)."""
    flat = np.full((160, 160), 0.5, np.float32)
    return np.abs(_DEFECT_FN[label](np.random.default_rng(seed), flat, 160, 160, style) - flat)


@pytest.mark.parametrize("label", DEFECTS + UNSEEN_DEFECTS)
def test_defect_style_shrinks_and_fades_defects(label):
    """A smaller scale changes fewer pixels, a lower contrast changes them less: small, faint defects."""
    areas, strengths = {}, {}
    for name, style in (
        ("default", DefectStyle()),
        ("small", DefectStyle(scale=0.4)),
        ("faint", DefectStyle(contrast=0.4)),
    ):
        diffs = [_defect_mask(label, style, seed) for seed in range(6)]
        areas[name] = np.mean([(d > 0.01).sum() for d in diffs])
        strengths[name] = np.mean([d.max() for d in diffs])
    assert areas["small"] < 0.8 * areas["default"], areas
    if label != "chip":  # a chip is a missing piece (the belt shows through): no contrast to fade
        assert strengths["faint"] < 0.8 * strengths["default"], strengths
    with pytest.raises(ValueError):
        DefectStyle(scale=0)


def test_synth_command_options(tmp_path, capsys):
    from app.cli import main

    out = tmp_path / "cast"
    args = ["synth", str(out), "--per-class", "1", "--size", "48", "--surface", "cast", "--defect-scale", "0.5"]
    assert main(args + ["--defect-contrast", "0.7"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(("good",) + DEFECTS)
    with pytest.raises(SystemExit):
        main(["synth", str(out), "--surface", "wood"])
    assert "unknown surface" in capsys.readouterr().err
