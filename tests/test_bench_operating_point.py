"""bench.operating_point redraws validation/test splits from a run's scores and judges each rule's point."""

import json

import numpy as np

from bench import operating_point as study

GOOD = 1


def _write_run(folder, val_scores, val_defect, test_scores, test_defect):
    def block(scores, defect):
        p_good = 1.0 - np.asarray(scores)
        return {
            "paths": [f"{i}.png" for i in range(len(scores))],
            "labels": [0 if d else GOOD for d in defect],
            "probabilities": np.stack([1 - p_good, p_good], axis=1).tolist(),
        }

    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"labels": ["bad", "good"], "good_class": "good"}))
    predictions = {"val": block(val_scores, val_defect), "test": block(test_scores, test_defect)}
    (folder / "predictions.json").write_text(json.dumps(predictions))


def test_a_separable_run_meets_the_budget_in_every_draw_and_a_hopeless_one_in_none(tmp_path):
    rng = np.random.default_rng(0)
    defect = np.r_[np.zeros(100, bool), np.ones(60, bool)]

    def separable():
        return np.r_[rng.uniform(0.01, 0.3, 100), rng.uniform(0.6, 0.99, 60)]

    def hopeless():  # defects scored like good parts: nothing meets 2 % escapes within 10 % review
        return rng.uniform(0.01, 0.99, 160)

    _write_run(tmp_path / "good", separable(), defect, separable(), defect)
    _write_run(tmp_path / "bad", hopeless(), defect, hopeless(), defect)
    result = study.study([tmp_path / "good", tmp_path / "bad"], draws=20, seed=0, out=tmp_path / "out.json")
    good, bad = result["runs"]
    for rule in ("escape_0.5pct", "budget", "ceiling"):
        assert good["rules"][rule]["draws_meeting_budget"] == 1.0
        assert good["rules"][rule]["actual_split"]["meets_budget"]
        assert bad["rules"][rule]["draws_meeting_budget"] == 0.0
    assert good["validation"] == {"defects": 60, "goods": 100}
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["summary"]["ceiling"]["actual_splits_meeting_budget"] == 1


def test_any_point_meets_finds_a_review_band_when_no_threshold_does():
    # one defect among the best-scored good parts: a threshold either passes it (1 of 20 = 5 % escapes) or
    # fails the good parts above it; a band around it sends a few parts to review and meets the budget
    goods = np.linspace(0.0, 0.5, 100)
    defect = np.r_[np.zeros(100, bool), np.ones(20, bool)]
    assert study.any_point_meets(np.r_[goods, 0.49, np.linspace(0.7, 1.0, 19)], defect)
    # the same defect scored like the middle of the good parts: its band would hold 40 % of the parts
    assert not study.any_point_meets(np.r_[goods, 0.2, np.linspace(0.7, 1.0, 19)], defect)
