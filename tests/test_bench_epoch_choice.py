"""bench.epoch_choice replays epoch choices on recorded per-epoch probabilities (no training here)."""

import json

import numpy as np

from bench import epoch_choice

BAD, GOOD = 0, 1
LABELS = np.array([BAD, BAD, GOOD, GOOD])


def _probs(p_good_of_defects, p_good_of_goods) -> np.ndarray:
    p_good = np.array([*p_good_of_defects, *p_good_of_goods])
    return np.stack([1 - p_good, p_good], axis=1)


SEPARATED = _probs([0.1, 0.2], [0.8, 0.9])
ONE_ESCAPE = _probs([0.1, 0.95], [0.8, 0.9])  # a defect scores above every good part
INVERTED = _probs([0.8, 0.9], [0.1, 0.2])


def test_each_choice_is_judged_on_the_test_split_at_its_epoch(tmp_path, monkeypatch):
    monkeypatch.setattr(epoch_choice, "OLD_PATIENCE", 2)
    (tmp_path / "split.json").write_text(json.dumps({"classes": ["bad", "good"], "good_class": "good", "seed": 3}))
    # Validation peaks at epoch 2 (a lucky spike), then stays worse: the old patience stops after epoch 4.
    val = [ONE_ESCAPE, SEPARATED, ONE_ESCAPE, ONE_ESCAPE, ONE_ESCAPE, ONE_ESCAPE]
    test = [INVERTED, ONE_ESCAPE, INVERTED, INVERTED, INVERTED, SEPARATED]
    np.savez(
        tmp_path / epoch_choice.PROBS, val=np.stack(val), test=np.stack(test), val_labels=LABELS, test_labels=LABELS
    )
    run = epoch_choice.compare_run(tmp_path)
    choices = run["choices"]
    assert (run["epochs"], run["split_seed"]) == (6, 3)
    assert choices["best_validation"]["epoch"] == 2 and choices["best_validation"]["escapes_at_5pct_false_reject"] == 1
    assert choices["last"] == {"epoch": 6, "roc_auc": 1.0, "escapes_at_5pct_false_reject": 0, "defects": 2}
    assert choices["last_after_stop_30"]["epoch"] == 4 and choices["last_after_stop_30"]["roc_auc"] == 0.0
    assert choices["best_validation_second_half"]["epoch"] == 4  # epochs 4-6 tie; the first is kept
    result = epoch_choice.compare([tmp_path], tmp_path / "out.json")
    assert json.loads((tmp_path / "out.json").read_text())["summary"]["last"]["escapes"] == 0
    assert result["summary"]["best_validation"] == {"mean_roc_auc": 0.5, "escapes": 1, "defects": 2}
