"""Quantize a training run into a deployable bundle (.inspector) and commission the station camera.

Converts RUN_DIR/model.keras to full-integer INT8 TFLite (or float16/float32) with a representative
sample stratified from the training split, checks on the validation split with the edge interpreter that
the converted model still decides like the float one (accuracy guard; with the default --precision auto, an
INT8 model that loses more than the budget on class or pass/fail accuracy, or on escapes over the defects,
is replaced by float16), chooses the pass/fail threshold on
the defect score 1 - p(good) (by default the training run's own operating point, so the bundle decides
at the threshold the training report used), judges the converted model (DEPLOYABLE / NOT DEPLOYABLE with
the reasons) and writes the bundle plus a report (MODEL_report/report.html + report.png). Exit status 3
when the guard fails, 4 when the model is NOT DEPLOYABLE (no bundle written unless --force), 2 when
--out already exists (like `inspector train`, it never replaces earlier work unless told: --overwrite).
Rates (--target-rate, --max-*-rate) are fractions, as in a training config: 0.02 means 2%; 2% is also
accepted. --accuracy-budget is in percentage points of accuracy: the guard refuses a model that loses more
than that of both pass/fail accuracy at the threshold and top-1 class accuracy (--guard-on: one of them).

Examples:
  inspector calibrate runs/tiles --out tiles.inspector
  inspector calibrate runs/tiles --out tiles.inspector --target-rate 0.5% --review-margin 0.05 --remedy auto
  inspector calibrate runs/tiles --out tiles-fp16.inspector --precision float16
  inspector calibrate runs/tiles --out tiles-fast.inspector --tta none
  inspector calibrate runs/tiles --out tiles.inspector --reference-image ref.png --auto-roi \\
      --station-yaml camera.yaml
  inspector calibrate --camera-only --reference-image ref.png --roi 120,40,400,400 --station-yaml camera.yaml
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional


def _rate(text: str) -> float:
    """A fraction, ``0.005``, or a percentage, ``0.5%``; a bare number above 1 is refused as ambiguous."""
    try:
        value = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"rate must look like 0.005 or 0.5%, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"rate {text!r} is not between 0 and 1: rates are fractions (0.02), or percentages with % (2%)"
        )
    return value


def _roi(text: str):
    from calibration.commissioning import CommissioningError, parse_roi

    try:
        return parse_roi(text)
    except CommissioningError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", nargs="?", help="training run folder written by `inspector train`")
    parser.add_argument("--out", help="bundle to write, e.g. tiles.inspector")
    conv = parser.add_argument_group("conversion")
    conv.add_argument(
        "--precision",
        choices=["auto", "int8", "float16", "float32"],
        default="auto",
        help="auto (default): full-integer INT8 when it keeps class and pass/fail accuracy and the escapes "
        "over the defects within --accuracy-budget on validation, else float16; int8: full integer or nothing (integer-only "
        "accelerators); float16 / float32: float models",
    )
    conv.add_argument("--io-dtype", choices=["uint8", "int8"], default="uint8", help="INT8 input/output type")
    conv.add_argument(
        "--representative-size",
        type=int,
        default=300,
        help="training images in the representative sample (default 300)",
    )
    conv.add_argument("--representative-seed", type=int, default=0, help="seed of the stratified draw")
    conv.add_argument(
        "--min-representative",
        type=int,
        default=200,
        help="warn when the representative sample is smaller (default 200)",
    )
    guard = parser.add_argument_group("accuracy guard")
    guard.add_argument(
        "--accuracy-budget",
        type=float,
        default=1.0,
        help="largest allowed validation accuracy drop in percentage points (default 1.0)",
    )
    guard.add_argument(
        "--guard-on",
        choices=["either", "decision", "classes"],
        default="either",
        help="either: refuse when pass/fail accuracy at the threshold and top-1 class accuracy both drop by "
        "more than the budget; decision or classes: that drop alone (classes for a line that sorts by "
        "defect kind) (default either)",
    )
    guard.add_argument(
        "--remedy",
        choices=["none", "float-fallback", "auto"],
        default="none",
        help="float-fallback: keep the most error-prone layers float (mixed model, CPU only); "
        "auto: only when full integer fails the guard (default none)",
    )
    guard.add_argument("--fallback-layers", type=int, default=5, help="layers kept float by the remedy (default 5)")
    guard.add_argument(
        "--fallback-ops",
        default="",
        help="TFLite op types kept float by the remedy, comma-separated, e.g. HARD_SWISH,MEAN",
    )
    op = parser.add_argument_group("operating point")
    op.add_argument(
        "--target",
        choices=["budget", "escape", "false_reject"],
        help="what the threshold is chosen for: budget (the point most likely to meet the line's --max-*-rate "
        "budget), or the escape (defects passed) or false-reject rate --target-rate. Without --target, "
        "--target-rate and --review-margin the training run's operating point is used",
    )
    op.add_argument("--target-rate", type=_rate, metavar="RATE", help="target rate, 0.005 or 0.5%% (default 0.005)")
    op.add_argument(
        "--review-margin", type=float, help="review band threshold +- margin on the defect score (default 0: no band)"
    )
    inf = parser.add_argument_group("inference (measured on validation, run by the station)")
    inf.add_argument(
        "--tta",
        choices=["none", "hflip", "vflip", "hvflip", "auto"],
        default="auto",
        help="test-time flip averaging: average the probabilities over the frame and its mirror images "
        "(hvflip: all four, one model run per view); auto: on only when it helps on validation "
        "(default auto; none for the fastest station)",
    )
    inf.add_argument(
        "--tiles",
        choices=["off", "on", "auto"],
        default="off",
        help="tiled inference: the region of interest cut into overlapping tiles of the model's input size at "
        "native resolution, the worst tile decides; auto: on only when it helps on validation (default off)",
    )
    inf.add_argument(
        "--tile-overlap", type=float, default=0.25, help="overlap of neighbouring tiles, 0-0.75 (default 0.25)"
    )
    line = parser.add_argument_group("deployability")
    line.add_argument(
        "--max-escape-rate",
        type=_rate,
        default=0.02,
        metavar="RATE",
        help="the line's escape budget for the verdict, 0.02 or 2%% (default 0.02)",
    )
    line.add_argument(
        "--max-false-reject-rate",
        type=_rate,
        default=0.05,
        metavar="RATE",
        help="the line's false-reject budget for the verdict and the review band (default 0.05)",
    )
    line.add_argument(
        "--max-review-rate",
        type=_rate,
        default=0.10,
        metavar="RATE",
        help="the share of parts the line can send to review (default 0.10)",
    )
    line.add_argument(
        "--force",
        action="store_true",
        help="write the bundle even when the model is NOT DEPLOYABLE (the bundle records the verdict)",
    )
    op.add_argument(
        "--interval",
        choices=["clopper-pearson", "wilson"],
        default="clopper-pearson",
        help="95%% confidence interval of the rates (default clopper-pearson, exact)",
    )
    cam = parser.add_argument_group("camera commissioning")
    cam.add_argument("--reference-image", help="frame of a good part from the station camera")
    cam.add_argument("--roi", type=_roi, help="region of interest x,y,width,height in camera pixels")
    cam.add_argument("--auto-roi", action="store_true", help="find the part in the reference image")
    cam.add_argument(
        "--crop-model-input",
        action="store_true",
        help="also crop frames to the ROI before the model (training images were part crops)",
    )
    cam.add_argument(
        "--focus-min-ratio",
        type=float,
        default=0.5,
        help="flag focus below this fraction of the reference (default 0.5)",
    )
    cam.add_argument(
        "--mean-tolerance", type=float, default=40.0, help="allowed drift of mean brightness, 0-255 (default 40)"
    )
    cam.add_argument("--clipped-max", type=float, help="largest fraction of clipped pixels (default from reference)")
    cam.add_argument("--station-yaml", help="also write the camera reference as a station config fragment")
    cam.add_argument(
        "--camera-only",
        action="store_true",
        help="only measure the reference image and write --station-yaml (no RUN_DIR needed)",
    )
    other = parser.add_argument_group("other")
    other.add_argument("--data-root", help="dataset folder, if it moved since training")
    other.add_argument("--name", help="bundle name (default: the run's name)")
    other.add_argument("--bundle-version", help="bundle version (default: run date and precision)")
    other.add_argument("--threads", type=int, help="TFLite interpreter threads")
    other.add_argument("--no-test", action="store_true", help="skip the test-split evaluation")
    other.add_argument("--no-report", action="store_true", help="do not write the HTML/PNG report")
    other.add_argument("--overwrite", action="store_true", help="replace an existing --out bundle")


def _camera(args) -> Optional[dict]:
    """The camera options given (the fields of :class:`calibration.commissioning.CameraOptions`), or None
    without --reference-image."""
    if not args.reference_image:
        if args.roi or args.auto_roi or args.crop_model_input or args.station_yaml:
            raise ValueError("--roi, --auto-roi, --crop-model-input and --station-yaml need --reference-image")
        return None
    return {
        "reference_image": args.reference_image,
        "roi": args.roi,
        "auto_roi": args.auto_roi,
        "crop_model_input": args.crop_model_input,
        "focus_min_ratio": args.focus_min_ratio,
        "mean_tolerance": args.mean_tolerance,
        "clipped_max": args.clipped_max,
    }


def _camera_only(args) -> int:
    from calibration.commissioning import CameraOptions, write_station_yaml
    from inspector.config import validate

    if not args.reference_image or not args.station_yaml:
        print("inspector calibrate: --camera-only needs --reference-image and --station-yaml", file=sys.stderr)
        return 2
    result = validate(CameraOptions, _camera(args), "command line").commission()
    for warning in result.warnings:
        print(f"warning: {warning}")
    print(result.describe())
    print(f"station config fragment: {write_station_yaml(result.reference, args.station_yaml)}")
    return 0


def _options(args):
    from calibration.calibrate import CalibrationOptions
    from inspector.config import validate

    camera = _camera(args)
    return validate(
        CalibrationOptions,
        {
            "precision": args.precision,
            "io_dtype": args.io_dtype,
            "representative_size": args.representative_size,
            "representative_seed": args.representative_seed,
            "representative_min": args.min_representative,
            "accuracy_budget": args.accuracy_budget,
            "guard_on": args.guard_on,
            "remedy": args.remedy,
            "fallback_layers": args.fallback_layers,
            "fallback_ops": [op.strip().upper() for op in args.fallback_ops.split(",") if op.strip()],
            "target": args.target,
            "target_rate": args.target_rate,
            "review_margin": args.review_margin,
            "line": {
                "max_escape_rate": args.max_escape_rate,
                "max_false_reject_rate": args.max_false_reject_rate,
                "max_review_rate": args.max_review_rate,
            },
            "force": args.force,
            "tta": args.tta,
            "tiles": args.tiles,
            "tile_overlap": args.tile_overlap,
            "interval": args.interval,
            "data_root": args.data_root,
            "name": args.name,
            "version": args.bundle_version,
            "threads": args.threads,
            "evaluate_test": not args.no_test,
            "camera": camera,
            "report": not args.no_report,
        },
        "command line",
    )


def run(args: argparse.Namespace) -> int:
    if args.camera_only:
        return _camera_only(args)
    if not args.run_dir or not args.out:
        print("inspector calibrate: give RUN_DIR and --out MODEL.inspector (or --camera-only)", file=sys.stderr)
        return 2
    if os.path.lexists(args.out) and not args.overwrite:
        print(
            f"inspector calibrate: {args.out} already exists; choose a new --out or add --overwrite to replace it",
            file=sys.stderr,
        )
        return 2
    options = _options(args)
    from inspector.nativelog import import_quietly

    import_quietly("tensorflow")  # after the options are validated: a typo is reported at once
    from calibration.calibrate import NotDeployableError, calibrate
    from calibration.commissioning import write_station_yaml
    from calibration.evaluate import format_metrics
    from calibration.guard import GuardError

    try:
        result = calibrate(args.run_dir, args.out, options)
    except GuardError as exc:
        print(str(exc), file=sys.stderr)
        return 3
    except NotDeployableError as exc:
        print(str(exc), file=sys.stderr)
        return 4
    bundle = result.bundle
    rep = result.representative
    if rep is not None:
        print(
            f"representative sample: {len(rep.images)} images from the training split "
            f"({', '.join(f'{k} {v}' for k, v in rep.per_class.items())})"
        )
        for item in rep.skipped:
            print(f"  skipped {item.path}: {item.reason}")
        for warning in rep.warnings:
            print(f"warning: {warning}")
    for candidate in result.candidates:
        print(f"guard: {candidate.parity.summary()} -> {'pass' if candidate.parity.passed else 'FAIL'}")
    chosen = result.chosen
    if result.precision_note:
        print(f"precision auto: {result.precision_note}: deployed float16 (--precision int8 insists on INT8)")
    drift = chosen.parity.drift_warning()
    if drift:
        print(f"warning: {drift}")
    if chosen.trials:
        from calibration.inference_choice import format_trials

        picked = next(t for t in chosen.trials if t.inference == bundle.manifest.inference)
        print(format_trials(chosen.trials, picked))
    print(f"inference: {bundle.manifest.inference.describe()}")
    op = result.chosen.operating_point
    if op.note:
        print(f"note: {op.note}")
    metrics = result.metrics(op.policy())
    print(format_metrics(metrics["validation"], f"validation ({result.chosen.conversion.kind}, threshold chosen here)"))
    if "test" in metrics:
        print(format_metrics(metrics["test"], f"test ({result.chosen.conversion.kind})"))
        print(
            f"test float model: accuracy {100 * metrics['test_float']['accuracy']:.2f}%, escape "
            f"{100 * metrics['test_float']['decision']['escape']['rate']:.2f}%, false reject "
            f"{100 * metrics['test_float']['decision']['false_reject']['rate']:.2f}%"
        )
    print(bundle.summary())
    if result.commissioning is not None:
        for warning in result.commissioning.warnings:
            print(f"warning: camera reference: {warning}")
        print(result.commissioning.describe())
        if args.station_yaml:
            print(f"station config fragment: {write_station_yaml(result.commissioning.reference, args.station_yaml)}")
    print(
        f"bundle: {result.bundle_path} ({bundle.manifest.model_bytes / 1024:.0f} KiB, "
        f"Keras model {result.keras_bytes / 1024:.0f} KiB)"
    )
    if result.report_html:
        print(f"report: {result.report_html}")
    print(result.verdict.summary())
    if not result.verdict.deployable:
        print("written anyway (--force); the bundle records this verdict")
    return 0
