"""Benchmark: how much a trained model loses in INT8, and whether the conversion or the model decides it.

For each training run given, the float Keras model and INT8 conversions of it are measured on the run's
test split, each against the float model: pass/fail ROC AUC, escapes at <= 5 % false rejects, and the
mean absolute change of the defect score ``1 - p(good)`` from float to INT8. The conversions vary what
calibration can vary without retraining: the representative draw (``--representative-seeds``) and the
hard-swish form (the one-partition form the product ships, and the fused HARD_SWISH op). Nothing is
retrained and no bundle is written; the station's own classifier runs the converted models.

Examples:
  .venv/bin/python -m bench.int8_survival runs/a runs/b              # 3 draws x 2 forms per run
  .venv/bin/python -m bench.int8_survival runs/a --representative-seeds 0 --forms one_partition
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import List, Optional

import numpy as np

from bench.train_magnetic_tile import escapes_at_false_reject

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "bench" / "results" / "int8_survival.json"


class HardSwishForm(str, Enum):
    ONE_PARTITION = "one_partition"  # what calibration ships (training.export_graph)
    FUSED = "fused"  # the converter's HARD_SWISH op: the same math, cut into XNNPACK partitions


def measure(probs: np.ndarray, float_probs: np.ndarray, labels: np.ndarray, good: int) -> dict:
    """Pass/fail figures of one model on the test split, and how far its scores are from the float model's."""
    from inspector.metrics import roc_auc

    scores, float_scores = 1.0 - probs[:, good], 1.0 - float_probs[:, good]
    is_defect = labels != good
    at_budget = escapes_at_false_reject(scores, is_defect)
    return {
        "accuracy": round(float(np.mean(probs.argmax(1) == labels)), 4),
        "roc_auc": round(float(roc_auc(scores, is_defect)), 4),
        "escapes_at_5pct_false_reject": at_budget["escapes"],
        "defects": at_budget["defects"],
        "mean_score_change": round(float(np.mean(np.abs(scores - float_scores))), 4),
        "max_score_change": round(float(np.max(np.abs(scores - float_scores))), 4),
    }


def survey(run_dir: Path, representative_seeds: List[int], forms: List[HardSwishForm], size: int) -> dict:
    """The float model and every (draw, form) conversion of one run, on its test split."""
    from calibration.calibrate import CalibrationOptions, RunInfo, _manifest
    from calibration.convert import convert, export_for_conversion, load_keras_model
    from calibration.evaluate import predict_bundle, predict_keras
    from calibration.representative import draw_representative, load_labeled, resolve_root
    from inspector.bundle import Bundle, Precision
    from inspector.preprocess import Preprocessor

    run = RunInfo.load(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    root = resolve_root(run.split, None)
    preprocessor = Preprocessor(run.spec)
    test = load_labeled(run.split.splits["test"], root, preprocessor, run.labels)
    good = run.labels.index(run.good_class)
    keras_model = load_keras_model(run_dir / "model.keras")
    float_probs = predict_keras(keras_model, test.images)
    fixed = export_for_conversion(keras_model)
    conversions = []
    for seed in representative_seeds:
        sample = draw_representative(run.split, root, preprocessor, size, seed)
        for form in forms:
            started = time.time()
            conversion = convert(
                fixed, Precision.INT8, sample.dataset(), split_hard_swish=form == HardSwishForm.ONE_PARTITION
            )
            bundle = Bundle.create(_manifest(run, conversion, run.spec, CalibrationOptions()), conversion.model)
            figures = measure(predict_bundle(bundle, test), float_probs, test.labels, good)
            conversions.append({"representative_seed": seed, "hard_swish": form.value, **figures})
            print(
                f"{run_dir} draw {seed} {form.value}: AUC {figures['roc_auc']:.4f}, escapes "
                f"{figures['escapes_at_5pct_false_reject']}/{figures['defects']} at 5% FR, mean score change "
                f"{figures['mean_score_change']:.4f} ({time.time() - started:.0f} s)",
                flush=True,
            )
    changes = [c["mean_score_change"] for c in conversions]
    return {
        "run_dir": str(run_dir),
        "init_seed": config["seed"],
        "split_seed": config["data"]["split_seed"],
        "float": measure(float_probs, float_probs, test.labels, good),
        "int8": conversions,
        "mean_score_change_range": [min(changes), max(changes)] if changes else None,
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.int8_survival",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__[__doc__.index("Examples:") :],
    )
    parser.add_argument("runs", nargs="+", type=Path, help="training run folders (inspector train --out)")
    parser.add_argument("--representative-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--representative-size", type=int, default=300)
    parser.add_argument(
        "--forms", nargs="+", choices=[f.value for f in HardSwishForm], default=[f.value for f in HardSwishForm]
    )
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args(argv)

    from bench.common import context, repo_relative
    from inspector.fsutil import atomic_write_json

    machine = context(False)  # before the work: its load average at start is the machine's, not this run's
    forms = [HardSwishForm(f) for f in args.forms]
    runs = [survey(r, args.representative_seeds, forms, args.representative_size) for r in args.runs]
    atomic_write_json(
        args.out,
        repo_relative(
            {
                "benchmark": "int8_survival",
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "machine": {**machine, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
                "representative_size": args.representative_size,
                "runs": runs,
            }
        ),
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
