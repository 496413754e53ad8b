"""Train a MobileNetV3 + squeeze-and-excitation classifier on a labeled folder (root/<class>/<image>).

Splits the data (or reuses --split-file), loads every image once through the edge's preprocessing, trains
(two stages with a pretrained backbone, one from random weights), and writes RUN_DIR: model.keras,
run.json, split.json, config.json, metrics.json, history.json, report.html with plots, checkpoints/.
Every recipe setting is a config field: give a YAML file with --config, change single fields with
--set key.path=value (e.g. --set augment.noise_std=4), or use the shortcuts below.

Without recipe flags, --weights none trains the measured from-scratch recipe (docs/training.md):
input size and grayscale from the images, selection on the validation pass/fail score, operating point
on validation, and a DEPLOYABLE / NOT DEPLOYABLE verdict at the end.

Examples:
  inspector train data/tiles --good-class free --out runs/tile --weights none
  inspector train data --out runs/r1 --weights ~/mobilenet_v3_small_no_top.h5 --unfreeze-layers 40
  inspector train --out runs/tile --resume
  inspector train data/tiles --out runs/tile2 --init-from runs/tile
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _size(text: str):
    if text.strip().lower() == "auto":
        return "auto"
    try:
        parts = [int(p) for p in text.lower().replace("x", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"input size must look like auto, 160 or 192x160, got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise argparse.ArgumentTypeError("input size: one number or WIDTHxHEIGHT")
    return parts


# (flag, dotted config key, argparse kwargs); None values are "not given" and leave the config alone.
_SHORTCUTS = [
    ("--good-class", "data.good_class", dict(help="good/pass class folder name (default good)")),
    ("--split-file", "data.split", dict(metavar="JSON", help="reuse this split manifest (from `inspector dataset`)")),
    ("--split-seed", "data.split_seed", dict(type=int, help="seed of a new split (default 0)")),
    ("--name", "name", dict(help="model name recorded in run.json")),
    ("--seed", "seed", dict(type=int, help="training seed (default 0)")),
    ("--backbone", "model.backbone", dict(choices=["small", "large"], help="MobileNetV3 small or large")),
    ("--alpha", "model.alpha", dict(type=float, help="backbone width multiplier")),
    (
        "--input-size",
        "model.input_size",
        dict(type=_size, metavar="auto|W[xH]", help="model input size (default auto: from the images' native size)"),
    ),
    (
        "--weights",
        "model.weights",
        dict(
            metavar="imagenet|none|PATH",
            help="backbone init: download ImageNet, random, or a local Keras weights file (default imagenet)",
        ),
    ),
    (
        "--epochs",
        "optim.epochs",
        dict(
            type=int,
            help="epochs of random-init training; with pretrained weights, "
            "the fine-tune stage's epochs (--finetune-epochs); with --init-from, the warm-start stage's",
        ),
    ),
    ("--batch-size", "optim.batch_size", dict(type=int, help="batch size per replica")),
    ("--lr", "optim.learning_rate", dict(type=float, help="peak learning rate of random-init training")),
    ("--optimizer", "optim.optimizer", dict(choices=["adamw", "adam", "sgd"])),
    ("--head-epochs", "finetune.head_epochs", dict(type=int, help="pretrained: stage-1 epochs (frozen backbone)")),
    ("--finetune-epochs", "finetune.epochs", dict(type=int, help="pretrained: stage-2 epochs")),
    (
        "--unfreeze-layers",
        "finetune.unfreeze_layers",
        dict(type=int, help="pretrained: top backbone layers trained in stage 2"),
    ),
    (
        "--folds",
        "folds",
        dict(
            type=int,
            metavar="K",
            help="choose the operating point on K-fold out-of-fold scores over train+val (K extra trainings)",
        ),
    ),
    (
        "--init-from",
        "warm_start.run",
        dict(
            metavar="RUN_DIR",
            help="warm start from that run's model: same input size and classes kept, new classes added, "
            "one short stage (warm_start.epochs), and the report compares old and new model",
        ),
    ),
    (
        "--patience",
        "early_stopping.patience",
        dict(type=int, help="stop a stage after N epochs without a better validation epoch (default: never)"),
    ),
    (
        "--imbalance",
        "imbalance.method",
        dict(
            choices=["class_weights", "oversample", "none"],
            help="oversample (default: half of each batch good), class_weights or none",
        ),
    ),
    (
        "--strategy",
        "runtime.strategy",
        dict(
            choices=["default", "mirrored", "multi_worker"],
            help="tf.distribute strategy (multi_worker reads TF_CONFIG)",
        ),
    ),
    ("--progress", "runtime.progress", dict(choices=["auto", "bar", "lines", "quiet"])),
]

# (flag, {dotted config key: value that turns it off}, help)
_AUGMENT_OFF = [
    ("--no-augment", {"augment.enabled": False}, "no augmentation at all"),
    ("--no-flip", {"augment.hflip": False, "augment.vflip": False}, "no random flips"),
    ("--no-rotate", {"augment.rotation_degrees": 0}, "no random rotation (default off)"),
    ("--no-shift", {"augment.shift": 0, "augment.zoom": 0}, "no random shift or zoom"),
    ("--no-color", {"augment.brightness": 0, "augment.contrast": 0}, "no brightness/contrast change"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", nargs="?", help="dataset folder (root/<class>/<image>); optional with --resume")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder to create (or resume)")
    parser.add_argument("-c", "--config", metavar="YAML", help="TrainConfig YAML; command-line options override it")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set any config field, e.g. --set optim.label_smoothing=0 (repeatable)",
    )
    parser.add_argument("--resume", action="store_true", help="continue RUN_DIR from its last checkpoint")
    for flag, _, kwargs in _SHORTCUTS:
        parser.add_argument(flag, default=None, **kwargs)
    parser.add_argument("--split", dest="split_file", default=None, help=argparse.SUPPRESS)  # the old spelling
    for flag, _, text in _AUGMENT_OFF:
        parser.add_argument(flag, action="store_true", help=text)
    parser.add_argument("--blur", type=float, metavar="P", help="Gaussian blur with probability P")
    parser.add_argument("--noise", type=float, metavar="STD", help="Gaussian noise up to STD (0-255 units)")
    parser.add_argument(
        "--mixed-precision",
        nargs="?",
        const="float16",
        choices=["off", "float16", "bfloat16"],
        help="mixed precision (bare flag = float16 for GPUs; bfloat16 for CPUs)",
    )
    parser.add_argument("--tensorboard", action="store_true", help="write TensorBoard logs to RUN_DIR/tensorboard")


def build_config(args: argparse.Namespace):
    """TrainConfig from --config YAML, then shortcuts, then --set (later wins)."""
    from inspector.config import load_yaml, parse_override, set_dotted, validate
    from training.config import TrainConfig

    data = {}
    if args.config:
        data = load_yaml(args.config) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{args.config}: the top level must be a mapping of keys")
    if args.root:
        set_dotted(data, "data.root", args.root)
    for flag, key, _ in _SHORTCUTS:
        value = getattr(args, _dest(flag))
        if value is not None:
            set_dotted(data, key, value)
    for flag, settings, _ in _AUGMENT_OFF:
        if getattr(args, _dest(flag)):
            for key, value in settings.items():
                set_dotted(data, key, value)
    if args.blur is not None:
        set_dotted(data, "augment.blur_probability", args.blur)
    if args.noise is not None:
        set_dotted(data, "augment.noise_std", args.noise)
    if args.mixed_precision:
        set_dotted(data, "runtime.mixed_precision", args.mixed_precision)
    if args.tensorboard:
        set_dotted(data, "runtime.tensorboard", True)
    for text in args.set:
        key, value = parse_override(text)
        set_dotted(data, key, value)
    if "data" not in data or "root" not in data.get("data", {}):
        raise ValueError("give the dataset folder (DATA_ROOT) or data.root in --config")
    config = validate(TrainConfig, data, args.config or "command line")
    if args.epochs is not None and config.warm_start.run:
        config.warm_start.epochs = args.epochs  # one warm-start stage: --epochs is its length
    elif args.epochs is not None and config.model.pretrained:
        # Two stages train a pretrained backbone; --epochs must not be silently ignored there.
        if args.finetune_epochs is None:
            config.finetune.epochs = args.epochs
        print(
            f"note: --weights {config.model.weights} trains in two stages: {config.finetune.head_epochs} head "
            f"epochs (--head-epochs), then {config.finetune.epochs} fine-tune epochs (--epochs / --finetune-epochs)",
            file=sys.stderr,
        )
    return config


def run(args: argparse.Namespace) -> int:
    # TensorFlow's C++ info/warning lines drown the progress output; errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    config = None if args.resume else build_config(args)  # a typo is reported before TensorFlow loads (seconds)
    from inspector.nativelog import import_quietly

    import_quietly("tensorflow")
    from training.trainer import load_run_config, train

    if config is None:
        changed = [flag for flag, _, _ in _SHORTCUTS if getattr(args, _dest(flag)) is not None]
        changed += [flag for flag, _, _ in _AUGMENT_OFF if getattr(args, _dest(flag))]
        changed += ["--config"] * bool(args.config) + ["--set"] * bool(args.set)
        if changed:
            raise ValueError(f"--resume continues the run's saved config.json exactly; drop {', '.join(changed)}")
        config = load_run_config(args.out)
        if args.root:
            config.data.root = args.root  # the dataset may have moved; the checksums still guard it
    train(config, Path(args.out), resume=args.resume)
    return 0


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")
