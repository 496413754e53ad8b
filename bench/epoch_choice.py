"""Benchmark: which epoch's weights a training run should keep, measured on its test split.

``train`` runs the plain default command (``inspector train DATA --good-class G --out RUN --weights none``,
which runs the whole schedule) with one extra Keras callback that records, after every epoch, the float
model's probabilities on the un-augmented validation and test images (one view) in
``RUN/epoch_probs.npz``. ``compare`` then replays epoch choices on those records, each judged on the test
split by its pass/fail ROC AUC and its escapes at <= 5 % false rejects:

* ``best_validation``: the best validation epoch by ``training.selection`` with the stop after 30 epochs
  without a better one (the defaults until the thirteenth session);
* ``last``: the last epoch (the default now);
* ``last_after_stop_30``: the last epoch before that stop (keeping the last epoch but stopping early);
* ``best_validation_second_half``: the best validation epoch among the second half of the schedule.

Examples:
  .venv/bin/python -m bench.epoch_choice train ../shared/datasets/magnetic_tile --good-class free --out runs/ec0
  .venv/bin/python -m bench.epoch_choice compare runs/ec0 runs/ec1 --out bench/results/epoch_choice.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from bench.train_magnetic_tile import FALSE_REJECT_BUDGET, escapes_at_false_reject

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "bench" / "results" / "epoch_choice.json"
PROBS = "epoch_probs.npz"
OLD_PATIENCE = 30


def train(argv: Sequence[str]) -> None:
    """``inspector train`` with the per-epoch record (argv: the train command's own arguments)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from training.cli import add_arguments, build_config

    parser = argparse.ArgumentParser(prog="bench.epoch_choice train")
    add_arguments(parser)
    args = parser.parse_args(list(argv))
    config = build_config(args)
    import keras

    from inspector.dataset import SplitManifest
    from inspector.runfolder import RunFolder
    from training.config import TrainConfig
    from training.data import load_split_images
    from training.trainer import predict_probs
    from training.trainer import train as run_training

    folder = RunFolder(args.out)

    class EpochProbabilities(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.images: Dict[str, np.ndarray] = {}
            self.probs: Dict[str, List[np.ndarray]] = {"val": [], "test": []}

        def on_epoch_end(self, epoch, logs=None):
            if not self.images:  # the resolved config and the split exist once training has begun
                resolved = TrainConfig.model_validate_json(folder.config.read_text())
                sets = load_split_images(
                    SplitManifest.load(folder.split), resolved.preprocess_spec(), root=resolved.data.root or None
                )
                self.images = {name: sets[name].images for name in self.probs}
                self.labels = {name: sets[name].labels for name in self.probs}
            for name, images in self.images.items():
                self.probs[name].append(predict_probs(self.model, images, 32))
            np.savez(
                folder.root / PROBS,
                **{name: np.stack(p) for name, p in self.probs.items()},
                **{f"{name}_labels": labels for name, labels in self.labels.items()},
            )

    run_training(config, folder.root, callbacks=[EpochProbabilities()])


def _best_validation(scores: Sequence, patience: Optional[int]) -> Tuple[int, int]:
    """(best epoch, epoch the stage ends at) of the product's selector fed ``scores`` from epoch 1."""
    from training.config import Monitor
    from training.selection import replay

    selector = replay(scores, Monitor.VAL_AUC, patience)
    return selector.best_epoch, selector.best_epoch + selector.wait


CHOICES: Dict[str, Callable[[Sequence], int]] = {
    "best_validation": lambda scores: _best_validation(scores, OLD_PATIENCE)[0],
    "last": lambda scores: len(scores),
    "last_after_stop_30": lambda scores: _best_validation(scores, OLD_PATIENCE)[1],
    "best_validation_second_half": lambda scores: (
        len(scores) // 2 + _best_validation(scores[len(scores) // 2 :], None)[0]
    ),
}


def compare_run(run_dir: Path) -> dict:
    """Every choice's epoch and its test figures for one recorded run."""
    from inspector.metrics import roc_auc
    from training.selection import EpochScore

    split = json.loads((run_dir / "split.json").read_text())
    good = list(split["classes"]).index(split["good_class"])
    record = np.load(run_dir / PROBS)
    val, test, test_labels = record["val"], record["test"], record["test_labels"]
    validation = [EpochScore.measure(p, record["val_labels"], good, FALSE_REJECT_BUDGET) for p in val]
    is_defect = test_labels != good
    choices = {}
    for name, choose in CHOICES.items():
        epoch = choose(validation)
        scores = 1.0 - test[epoch - 1][:, good]
        at_budget = escapes_at_false_reject(scores, is_defect)
        choices[name] = {
            "epoch": epoch,
            "roc_auc": round(float(roc_auc(scores, is_defect)), 4),
            "escapes_at_5pct_false_reject": at_budget["escapes"],
            "defects": at_budget["defects"],
        }
    return {"run_dir": str(run_dir), "epochs": len(val), "split_seed": split["seed"], "choices": choices}


def compare(run_dirs: Sequence[Path], out: Optional[Path]) -> dict:
    runs = [compare_run(Path(r)) for r in run_dirs]
    summary = {
        name: {
            "mean_roc_auc": round(float(np.mean([r["choices"][name]["roc_auc"] for r in runs])), 4),
            "escapes": sum(r["choices"][name]["escapes_at_5pct_false_reject"] for r in runs),
            "defects": sum(r["choices"][name]["defects"] for r in runs),
        }
        for name in CHOICES
    }
    result = {
        "benchmark": "epoch_choice",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "measure": "float model, one view, test split; escapes at <= 5 % false rejects",
        "runs": runs,
        "summary": summary,
    }
    for run in runs:
        cells = "  ".join(
            f"{n} e{c['epoch']} {c['roc_auc']:.4f}/{c['escapes_at_5pct_false_reject']}"
            for n, c in run["choices"].items()
        )
        print(f"{run['run_dir']}: {cells}")
    for name, s in summary.items():
        print(f"{name:28s} mean AUC {s['mean_roc_auc']:.4f}  escapes {s['escapes']} of {s['defects']}")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:
        train(argv[1:])
        return 0
    parser = argparse.ArgumentParser(
        prog="bench.epoch_choice", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("train", help="inspector train's arguments, with the per-epoch record")
    cmp = sub.add_parser("compare", help="replay the epoch choices on recorded runs")
    cmp.add_argument("runs", nargs="+", type=Path)
    cmp.add_argument("--out", type=Path, default=RESULT, help=f"result JSON (default {RESULT})")
    args = parser.parse_args(argv)
    compare(args.runs, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
