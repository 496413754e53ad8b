"""Benchmark: the product's plain default command on the magnetic-tile defect dataset, over several splits.

For each split seed this runs exactly what a user types, with no recipe flag::

    inspector train ../shared/datasets/magnetic_tile --good-class free --out RUN --weights none
    inspector calibrate RUN --out RUN/model.inspector --precision int8

(the split seed is the only thing set, through ``--set data.split_seed=S``; calibrate runs in-process with
``force`` so that an unfit model is still measured, and its verdict is recorded; INT8 is what the aim
measures, and ``precision_auto`` records whether the default ``--precision auto`` would deploy it or
float16; flip averaging is calibrate's default ``--tta auto``, and ``inference`` records what the bundle
runs). Each run's ``test`` block
holds the float and the INT8 model's pass/fail ROC AUC, escapes at <= 5 % false rejects (threshold chosen
on the test scores themselves: what the model *can* do), the escapes and false rejects at the bundle's own
operating point (what the line gets), both deployability verdicts and the wall time. ``summary`` gives
mean and spread over the runs. Aim (issue 11): AUC >= 0.97, escapes <= 2 % at <= 5 % false rejects, INT8
within 0.5 pp of float.

Examples:
  .venv/bin/python -m bench.train_magnetic_tile                 # 3 split seeds, ~15 min each on 2 quiet cores
  .venv/bin/python -m bench.train_magnetic_tile --seeds 0       # one run
  .venv/bin/python -m bench.train_magnetic_tile --seeds 1 2 --append   # add seeds to the runs in the result
  .venv/bin/python -m bench.train_magnetic_tile --seeds 0 --set optim.epochs=2   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO.parent / "shared" / "datasets" / "magnetic_tile"
RESULT = REPO / "bench" / "results" / "train_magnetic_tile.json"
GOOD = "free"
FALSE_REJECT_BUDGET = 0.05
AIM = {"roc_auc": 0.97, "escape_rate_at_5pct_fr": 0.02, "int8_accuracy_drop_pp": 0.5}
TRAIN_FROM_WALL = "wall"  # inspector train ran and was timed in this process
TRAIN_FROM_HISTORY = "history"  # --reuse: the epochs' times the run recorded in its history.json


def escapes_at_false_reject(scores: np.ndarray, is_defect: np.ndarray, budget: float = FALSE_REJECT_BUDGET) -> dict:
    """Escape rate at the lowest threshold whose false-reject rate on good parts stays within ``budget``."""
    good = np.sort(scores[~is_defect])
    allowed = int(np.floor(budget * len(good)))  # good parts that may score at or above the threshold
    threshold = float(np.nextafter(good[len(good) - allowed - 1], np.inf)) if allowed < len(good) else 0.0
    escapes = int(np.sum(scores[is_defect] < threshold))
    false_rejects = int(np.sum(scores[~is_defect] >= threshold))
    return {
        "threshold": round(threshold, 6),
        "escapes": escapes,
        "defects": int(is_defect.sum()),
        "escape_rate": round(escapes / max(1, int(is_defect.sum())), 4),
        "false_rejects": false_rejects,
        "false_reject_rate": round(false_rejects / max(1, len(good)), 4),
    }


def score_block(probs: np.ndarray, labels: np.ndarray, good_index: int, policy) -> dict:
    from inspector.metrics import roc_auc
    from inspector.operating_point import outcomes

    scores = 1.0 - probs[:, good_index]
    is_defect = labels != good_index
    passed, failed = outcomes(scores, policy)  # a part in the review band is neither
    return {
        "accuracy": round(float(np.mean(np.argmax(probs, axis=1) == labels)), 4),
        "roc_auc": round(float(roc_auc(scores, is_defect)), 4),
        "at_5pct_false_reject": escapes_at_false_reject(scores, is_defect),
        "at_bundle_threshold": {
            "threshold": round(float(policy.threshold), 6),
            "review_low": None if policy.review_low is None else round(float(policy.review_low), 6),
            "escapes": int(np.sum(is_defect & passed)),
            "false_rejects": int(np.sum(~is_defect & failed)),
            "review": int(np.sum(~passed & ~failed)),
        },
    }


def run_one(
    data: Path, seed: int, run_dir: Path, extra: Sequence[str], good_class: str = GOOD, reuse: bool = False
) -> dict:
    """Train with the plain default command and calibrate; the ``test`` block, verdicts and wall times."""
    cmd = [
        sys.executable,
        "-m",
        "app.cli",
        "train",
        str(data),
        "--good-class",
        good_class,
        "--out",
        str(run_dir),
        "--weights",
        "none",
        "--set",
        f"data.split_seed={seed}",
    ]
    for item in extra:
        cmd += ["--set", item]
    load_start = os.getloadavg()
    started = time.time()
    if reuse and (run_dir / "run.json").is_file():
        train_s = None  # trained earlier (--reuse): not timed here, run_seconds takes the run's own record
    else:
        subprocess.run(cmd, check=True, cwd=REPO)
        train_s = time.time() - started

    from calibration.calibrate import CalibrationOptions, calibrate, int8_shortfall
    from calibration.guard import GuardError
    from inspector.runfolder import RunFolder, RunManifest

    folder = RunFolder(run_dir)
    manifest = RunManifest.load(folder)
    started = time.time()
    try:
        # INT8 as the done-when measures it; what the default --precision auto would deploy is recorded beside
        result = calibrate(run_dir, run_dir / "model.inspector", CalibrationOptions(precision="int8", force=True))
    except GuardError as exc:  # no bundle: record the float model and why INT8 was refused
        return guard_failed_run(
            seed, cmd, run_dir, manifest, folder, str(exc), train_s, time.time() - started, load_start
        )
    calibrate_s = time.time() - started
    shortfall = int8_shortfall(result.chosen)
    policy = result.chosen.operating_point.policy()
    labels = np.asarray(result.test.labels)
    good_index = result.good_index
    floats = score_block(result.float_test_probs, labels, good_index, policy)
    int8 = score_block(result.test_probs, labels, good_index, policy)
    return run_record(
        seed,
        cmd,
        run_dir,
        manifest,
        train_s,
        calibrate_s,
        load_start,
        calibrate_verdict={"deployable": result.verdict.deployable, "summary": result.verdict.summary()},
        precision_auto={"deploys": "float16" if shortfall else "int8", "why": shortfall},
        inference=result.chosen.bundle.manifest.inference.model_dump(mode="json"),
        test={
            "samples": int(len(labels)),
            "float": floats,
            "int8": int8,
            "int8_accuracy_drop_pp": round(100 * (floats["accuracy"] - int8["accuracy"]), 2),
        },
    )


def run_record(
    seed, cmd, run_dir, manifest, train_s: Optional[float], calibrate_s: float, load_start: Sequence[float], **blocks
) -> dict:
    """One run's entry in the result: what was run and trained, ``blocks`` (verdict, test, ...), the times and
    the load average when the run started and ended (a time says little without it: the machine is shared)."""
    return {
        "split_seed": seed,
        "command": " ".join(["inspector", *cmd[3:]]),
        "run_dir": str(run_dir),
        "input_size": list(manifest.input_size),
        "grayscale": manifest.preprocess.grayscale,
        "epochs": manifest.epochs,
        "best_epoch": manifest.best_epoch,
        "kept_epoch": manifest.kept_epoch,
        "train_verdict": manifest.deployability,
        **blocks,
        "seconds": run_seconds(run_dir, train_s, calibrate_s),
        "load_average": {
            "start": [round(x, 2) for x in load_start],
            "end": [round(x, 2) for x in os.getloadavg()],
        },
    }


def run_seconds(run_dir: Path, train_s: Optional[float], calibrate_s: float) -> dict:
    """A run's times in seconds. ``train`` is the wall time of ``inspector train`` when this process ran it
    (``train_from`` "wall"); a run reused with ``--reuse`` was not timed here, and its ``train`` is what the run
    recorded itself (``train_from`` "history"): the sum of its epochs' times in history.json. The trainer times
    each epoch's training steps only (not data loading, model build, the per-epoch validation scoring, the final
    evaluation and the report), so that is less than the wall time the training took."""
    from inspector.runfolder import RunFolder

    epochs_s = sum(h["seconds"] for h in json.loads(RunFolder(run_dir).history.read_text()))
    train = epochs_s if train_s is None else train_s
    return {
        "train": round(train, 1),
        "train_from": TRAIN_FROM_HISTORY if train_s is None else TRAIN_FROM_WALL,
        "calibrate": round(calibrate_s, 1),
        "total": round(train + calibrate_s, 1),
        "epochs": round(epochs_s, 1),
    }


def took(run: dict) -> str:
    """A run's time for its progress line, e.g. ``1650 s`` or ``1650 s (train from the run's history)``."""
    seconds = run["seconds"]
    reused = " (train from the run's history)" if seconds["train_from"] == TRAIN_FROM_HISTORY else ""
    return f"{seconds['total']:.0f} s{reused}"


def seconds_per_run(runs: List[dict]) -> Optional[dict]:
    """Mean and spread of the runs' total seconds, with how many runs' training was timed and how."""
    timed = [r for r in runs if r["seconds"].get("total") is not None]  # older result files: None with --reuse
    values = stat([r["seconds"]["total"] for r in timed])
    if values is None:
        return None
    history = sum(r["seconds"].get("train_from") == TRAIN_FROM_HISTORY for r in timed)
    measured = "calibrate: wall time; train: "
    if history == 0:
        measured += "wall time of `inspector train`"
    else:
        wall = f"wall time of `inspector train` in {len(timed) - history} run(s), " if history < len(timed) else ""
        measured += (
            f"{wall}the sum of the epoch times in the run's history.json in {history} reused run(s) (not timed "
            "here; without data loading, model build, per-epoch validation and the final evaluation, so less "
            "than the wall time)"
        )
    return {**values, "runs": len(timed), "train_from_history": history, "measured": measured}


def guard_failed_run(
    seed,
    cmd,
    run_dir,
    manifest,
    folder,
    message: str,
    train_s: Optional[float],
    calibrate_s: float,
    load_start: Sequence[float],
) -> dict:
    """A run whose INT8 conversion failed the accuracy guard: the float test block from the run's own
    predictions at its operating point, ``int8`` None and the guard's message."""
    predictions = json.loads(folder.predictions.read_text())["test"]
    probs = np.asarray(predictions["probabilities"], dtype=np.float64)
    labels = np.asarray(predictions["labels"])
    floats = score_block(probs, labels, manifest.good_index, manifest.operating_point.policy)
    return run_record(
        seed,
        cmd,
        run_dir,
        manifest,
        train_s,
        calibrate_s,
        load_start,
        calibrate_verdict={"deployable": False, "summary": "no bundle: " + message.splitlines()[0]},
        guard_failed=message,
        test={"samples": int(len(labels)), "float": floats, "int8": None, "int8_accuracy_drop_pp": None},
    )


def stat(values: List[float]) -> Optional[dict]:
    """Mean, sample standard deviation, min and max (None for no values)."""
    if not values:
        return None
    arr = np.asarray(values, dtype=float)
    return {
        "mean": round(float(arr.mean()), 4),
        "std": round(float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, 4),
        "min": round(float(arr.min()), 4),
        "max": round(float(arr.max()), 4),
    }


def summarize(runs: List[dict]) -> Dict[str, dict]:
    bundled = [r for r in runs if r["test"]["int8"] is not None]
    return {
        "float_roc_auc": stat([r["test"]["float"]["roc_auc"] for r in runs]),
        "float_escape_rate_at_5pct_fr": stat([r["test"]["float"]["at_5pct_false_reject"]["escape_rate"] for r in runs]),
        "int8_roc_auc": stat([r["test"]["int8"]["roc_auc"] for r in bundled]),
        "int8_escape_rate_at_5pct_fr": stat(
            [r["test"]["int8"]["at_5pct_false_reject"]["escape_rate"] for r in bundled]
        ),
        "int8_accuracy_drop_pp": stat([r["test"]["int8_accuracy_drop_pp"] for r in bundled]),
        "runs_without_bundle": len(runs) - len(bundled),
        "seconds_per_run": seconds_per_run(runs),
    }


def write_result(args: argparse.Namespace, runs: List[dict], machine: dict) -> Dict[str, dict]:
    """Write the result file; ``machine`` is the benchmark's context taken when it started."""
    from bench.common import repo_relative
    from inspector.fsutil import atomic_write_json

    summary = summarize(runs)
    result = {
        "benchmark": "train_magnetic_tile",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "dataset": str(args.data),
        "overrides": args.set,
        "aim": AIM,
        "summary": summary,
        "runs": sorted(runs, key=lambda r: r["split_seed"]),
    }
    atomic_write_json(args.out, repo_relative(result))
    return summary


def add_run_arguments(parser: argparse.ArgumentParser, name: str, result: Path, runs_flag: str, unit: str) -> None:
    """The options the training benchmarks share (this one and ``bench.train_synthetic``): TrainConfig overrides,
    the folder of the runs (``runs_flag``, default ``runs/bench/<name>-<time>``), the result file, and --append
    and --reuse, which keep results of other ``unit`` and run folders that are complete."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="TrainConfig override (smoke runs only: the benchmark measures the defaults)",
    )
    parser.add_argument(
        runs_flag,
        dest="runs_dir",
        metavar="DIR",
        type=Path,
        default=REPO / "runs" / "bench" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}",
        help=f"folder of the run folders and any generated data (default runs/bench/{name}-<time>)",
    )
    parser.add_argument("--out", type=Path, default=result, help=f"result JSON (default {result})")
    parser.add_argument(
        "--append",
        action="store_true",
        help=f"keep the runs already in --out for other {unit} (one measured again replaces its old run)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help=f"a complete run folder under {runs_flag} is not trained again, only calibrated",
    )


def kept_runs(args: argparse.Namespace, key: str, measured: Sequence) -> List[dict]:
    """With --append, the runs already in --out whose ``key`` (seed, data set) is not measured again."""
    if not (args.append and args.out.is_file()):
        return []
    return [r for r in json.loads(args.out.read_text())["runs"] if r.get(key) not in measured]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.train_magnetic_tile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATASET, help=f"dataset folder (default {DATASET})")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="split seeds (default 0 1 2)")
    add_run_arguments(parser, "train_magnetic_tile", RESULT, "--runs-dir", "seeds")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"dataset not found at {args.data}; pass --data", file=sys.stderr)
        return 2
    from bench.common import context

    machine = context(False)
    runs = kept_runs(args, "split_seed", args.seeds)
    for seed in args.seeds:
        runs.append(run_one(args.data, seed, args.runs_dir / f"seed{seed}", args.set, reuse=args.reuse))
        t = runs[-1]["test"]
        int8 = t["int8"]
        print(
            f"seed {seed}: AUC float {t['float']['roc_auc']:.4f}, "
            + (
                f"int8 {int8['roc_auc']:.4f}, int8 escapes at 5% FR {int8['at_5pct_false_reject']['escapes']}/"
                f"{int8['at_5pct_false_reject']['defects']}, drop {t['int8_accuracy_drop_pp']:+.2f} pp"
                if int8
                else "no INT8 bundle (accuracy guard failed)"
            )
            + f", {took(runs[-1])}",
            flush=True,
        )
        write_result(args, runs, machine)  # after every seed: a later failure keeps the finished runs
    summary = write_result(args, runs, machine)
    auc = summary["float_roc_auc"]
    print(f"train_magnetic_tile: float AUC {auc['mean']:.4f} +- {auc['std']:.4f} over {len(runs)} runs -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
