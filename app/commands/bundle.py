"""Inspect or verify a model bundle (.inspector zip or directory).

`inspect` prints the manifest summary; `verify` also loads the model in the edge interpreter and runs one
blank frame through it, which is what a device does before it accepts a new model, and says how the model
is split between the XNNPACK delegate and TFLite's own kernels (one partition is the fast path).

Example:
  inspector bundle inspect model.inspector
  inspector bundle verify model.inspector
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["inspect", "verify"], help="what to do")
    parser.add_argument("path", help="bundle file or directory")
    parser.add_argument(
        "--json", action="store_true", help="print only JSON: the manifest (inspect), the verification result (verify)"
    )


def run(args: argparse.Namespace) -> int:
    from inspector.bundle import Bundle

    bundle = Bundle.load(args.path)
    if args.action == "inspect":
        print(bundle.manifest_json() if args.json else bundle.summary())
        return 0
    from inspector.delegation import delegation
    from inspector.inference import Classifier

    clf = Classifier(bundle)
    result = clf.warm_up()
    split = delegation(bundle.model)
    if args.json:
        print(
            json.dumps(
                {
                    "ok": True,
                    "backend": clf.runner.backend.value,
                    "verdict": result.verdict.value,
                    "inference_ms": round(result.inference_ms, 3),
                    "delegation": split.describe(),
                    "manifest": json.loads(bundle.manifest_json()),
                }
            )
        )
        return 0
    print(bundle.summary())
    print(
        f"verified: checksum ok, loads in {clf.runner.backend.value}, "
        f"test frame -> {result.verdict.value} ({result.inference_ms:.1f} ms); {split}"
    )
    return 0
