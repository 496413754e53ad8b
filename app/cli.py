"""The ``inspector`` command: one entry point, one subcommand per job.

Each subcommand lives in a ``cli`` module of the package that does the work and exposes
``add_arguments(parser)`` and ``run(args) -> int``. Those modules import nothing heavy at load time, so
``inspector --help`` and the edge commands start fast and never import TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any, List, Optional

from inspector import __version__

CHECKOUT = Path(__file__).resolve().parents[1]

# (command, module, one-line help). Order is the order of --help.
COMMANDS = [
    ("synth", "app.commands.synth", "generate a synthetic labeled-folder dataset"),
    ("dataset", "app.commands.dataset", "scan a labeled folder, report it and write a split manifest"),
    ("bundle", "app.commands.bundle", "inspect or verify a model bundle"),
    ("train", "training.cli", "train a MobileNetV3 + channel-attention classifier on labeled folders"),
    ("calibrate", "calibration.cli", "quantize a trained run into a deployable bundle"),
    ("evaluate", "calibration.evaluate_cli", "run a bundle on a labeled folder and report its metrics"),
    ("predict", "app.commands.predict", "run a model on images, a folder, a video or a camera and print its verdicts"),
    ("run", "edge.cli", "run an inspection station: camera -> model -> pass/fail over MQTT"),
    ("controller", "controller.cli", "run the reference line controller"),
    ("monitor", "controller.monitor_cli", "live terminal view of the stations on a broker"),
    (
        "send",
        "app.commands.send",
        "send a command (reload, set_threshold, trigger, ...) to a station and wait for its answer",
    ),
    ("review", "review.cli", "review archived frames in a browser and label them into the dataset folders"),
    ("bench", "bench.cli", "run the benchmarks (source checkout only)"),
    ("demo", "app.commands.demo", "run the whole line on this machine"),
]


def _bench_command() -> Any:
    """``bench.cli`` from the source checkout this app runs from; bench/ is not installed with the product,
    so an installed app without a checkout gets a command that says where the benchmarks are."""
    if (CHECKOUT / "bench" / "cli.py").is_file():
        if str(CHECKOUT) not in sys.path:
            sys.path.insert(0, str(CHECKOUT))
        return importlib.import_module("bench.cli")

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def run(args: argparse.Namespace) -> int:
        print(
            "inspector bench: the benchmarks are not installed with the product; run them from a source "
            "checkout: `python -m bench --help` at the repository root",
            file=sys.stderr,
        )
        return 2

    return SimpleNamespace(__doc__="The benchmarks (source checkout only).", add_arguments=add_arguments, run=run)


def quiet_native_logs(verbose: bool) -> None:
    """Silence TensorFlow, absl, oneDNN, XNNPACK and converter chatter unless ``-v``: the one place it is set.

    Must run before TensorFlow or a TFLite runtime is imported (they read the environment once). A variable
    the user set wins. ``TF_CPP_MIN_LOG_LEVEL`` is also what :mod:`inspector.inference` reads to drop the
    runtime's INFO lines, which no runtime lets a caller switch off.
    """
    level = "0" if verbose else "3"
    for name, value in (
        ("TF_CPP_MIN_LOG_LEVEL", level),
        ("GRPC_VERBOSITY", "INFO" if verbose else "ERROR"),
        ("GLOG_minloglevel", "0" if verbose else "3"),
    ):
        os.environ.setdefault(name, value)
    if not verbose:
        for name in ("absl", "tensorflow", "h5py", "matplotlib"):
            logging.getLogger(name).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module=r"(keras|tensorflow|absl|tf_keras|ai_edge_litert)(\.|$)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inspector",
        description="Industrial defect inspection: train, calibrate, deploy and run on the line.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name, help_text in COMMANDS:
        try:
            module = _bench_command() if name == "bench" else importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # that part of the product is not installed in this checkout
            raise
        cmd = sub.add_parser(
            name,
            help=help_text,
            description=(module.__doc__ or help_text).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(cmd)
        # -v after the subcommand too; SUPPRESS keeps the subparser from resetting a -v given before it
        cmd.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # a misspelled option: the subcommand's usage, not the top level's, says what it takes
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        (sub.choices.get(args.command) or parser).error(f"unrecognized arguments: {' '.join(extra)}")
    quiet_native_logs(args.verbose)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        code = int(args._run(args) or 0)
        sys.stdout.flush()  # inside the try: a reader that went away is reported here, not at exit
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `inspector ... | head` closed the pipe: stop quietly, as other tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's final flush must not raise again
        return 141
    except (ValueError, RuntimeError, OSError) as exc:
        # Domain errors (config, dataset, bundle, backend) carry a message meant for the user.
        if args.verbose:
            raise
        print(f"inspector {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
