"""Run a bundle on a labeled folder with the edge's own interpreter and report what it decides.

Prints and writes (JSON) accuracy, per-class precision/recall/F1, ROC AUC, and the escape, false-reject
and review rates of the bundle's pass/fail policy with 95% confidence intervals: the same metrics
`inspector calibrate` reports, so a bundle can be checked on new images from the line. Ends with the
deployability verdict (NOT DEPLOYABLE e.g. when the images are the ones the model was trained on). The folder is
DATA_ROOT/<class>/<image> with class names from the bundle's labels (another class folder, e.g. dent/,
is a defect kind the model never saw: counted as a defect for pass/fail); with --split-file only that split
of a split manifest is used (e.g. the held-out test split of the training data).

Examples:
  inspector evaluate tiles.inspector line_images/
  inspector evaluate tiles.inspector data/tiles --split-file runs/tiles/split.json \\
      --split test --out tiles-test.json --report-dir tiles-test-report
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle file or directory (.inspector)")
    parser.add_argument("data_root", help="labeled folder: DATA_ROOT/<class>/<image>")
    parser.add_argument("--split-file", help="split manifest (split.json of a run): evaluate one split only")
    parser.add_argument(
        "--split",
        choices=["train", "val", "test"],
        default="test",
        help="split to evaluate with --split-file (default test)",
    )
    parser.add_argument("--out", help="metrics JSON to write (default: <bundle name>_evaluation.json here)")
    parser.add_argument("--report-dir", help="also write report.html + report.png there")
    parser.add_argument("--threshold", type=float, help="evaluate at this threshold instead of the bundle's")
    parser.add_argument(
        "--interval",
        choices=["clopper-pearson", "wilson"],
        default="clopper-pearson",
        help="95%% confidence interval of the rates (default clopper-pearson)",
    )
    parser.add_argument("--threads", type=int, help="TFLite interpreter threads")
    parser.add_argument(
        "--backend",
        choices=["auto", "ai_edge_litert", "tflite_runtime", "tensorflow"],
        default="auto",
        help="TFLite runtime (default: first available)",
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from calibration.evaluate import NothingToEvaluate, evaluate_bundle, format_metrics
    from inspector.bundle import BUNDLE_SUFFIX, Bundle

    policy = None
    if args.threshold is not None:
        from inspector.decision import DecisionPolicy

        policy = DecisionPolicy(threshold=args.threshold)
    try:
        result = evaluate_bundle(
            args.bundle, args.data_root, args.split_file, args.split, args.threads, args.backend, policy, args.interval
        )
    except NothingToEvaluate as exc:
        print(str(exc), file=sys.stderr)
        return 1
    for item in result.skipped:
        print(f"skipped {item.path}: {item.reason}")
    where = f"{args.data_root}" + (f" (split {args.split} of {args.split_file})" if args.split_file else "")
    inference = Bundle.load(args.bundle).manifest.inference.describe()
    print(format_metrics(result.metrics, f"bundle {args.bundle} ({inference}) on {where}"))
    name = Path(args.bundle.rstrip("/")).name
    stem = name[: -len(BUNDLE_SUFFIX)] if name.endswith(BUNDLE_SUFFIX) else Path(name).stem
    out = result.save(args.out or f"{stem}_evaluation.json")
    print(f"metrics: {out}")
    if args.report_dir:
        from calibration.report import write_evaluation_report

        manifest = Bundle.load(args.bundle).manifest
        page, _ = write_evaluation_report(
            result,
            manifest.good_index,
            policy or manifest.decision,
            args.report_dir,
            f"Evaluation of {manifest.name} {manifest.version}",
            result.verdict,
        )
        print(f"report: {page}")
    print(result.verdict.summary())
    return 0
