"""Run the whole line on this machine: data, training, INT8 calibration, a camera video, a station and the line controller.

Generates a synthetic dataset (or takes --data DIR --good-class NAME), trains a small model from random
initialisation, calibrates it to an INT8 bundle, renders a video of parts passing a camera (with defect
kinds the model never saw), starts a broker (Mosquitto when installed, else an embedded Python broker), runs
a station in triggered mode and the line controller, then prints a summary against the ground truth and
writes OUT/report.html. It leaves no process behind.

Example:
  inspector demo --quick            # about two minutes on two CPU cores
  inspector demo --data data/tiles --good-class free --out demo-tiles   # your own labeled folders
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="work folder (default demo-out)")
    parser.add_argument("--data", type=Path, default=None, help="your own labeled folder instead of synthetic data")
    parser.add_argument("--good-class", default="good", help="good class of --data (default good)")
    parser.add_argument("--quick", action="store_true", help="smaller data, model and line: about two minutes")
    parser.add_argument(
        "--weights",
        default="none",
        help="backbone weights: none (random init), imagenet (needs internet) or a local file",
    )
    parser.add_argument("--parts", type=int, default=None, help="parts on the belt (default 60, quick 24)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def run(args: argparse.Namespace) -> int:
    from app.demo.report import format_summary
    from app.demo.run import DemoSettings, run_demo

    settings = DemoSettings(
        out=args.out,
        data=args.data,
        good_class=args.good_class,
        quick=args.quick,
        weights=args.weights,
        parts=args.parts,
        seed=args.seed,
    )
    from inspector.nativelog import import_quietly

    import_quietly("tensorflow")
    summary = run_demo(settings, echo=lambda line: print(line, flush=True))
    print("== summary")
    print(format_summary(summary))
    print(f"report: {args.out / 'report.html'}")
    data = args.data or args.out / "data"
    print(
        "next, the loop (docs/loop.md): label what the line archived, then retrain from this model:\n"
        f"  inspector review {data} --archive {args.out / 'line' / 'archive'} --run {args.out / 'run'} "
        f"--bundle {args.out / 'demo.inspector'} --good-class {args.good_class}\n"
        f"  inspector train {data} --out {args.out / 'run2'} --init-from {args.out / 'run'}"
    )
    return 0 if summary["decided"] == summary["parts"] else 1
