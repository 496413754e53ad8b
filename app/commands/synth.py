"""Generate a synthetic labeled-folder dataset: textured surfaces with scratches, spots, cracks and stains.

Example:
  inspector synth data/synth --per-class 60 --size 128x128 --seed 0
"""

from __future__ import annotations

import argparse


def parse_size(text: str) -> tuple:
    """``WxH`` (or a single number for a square) as (width, height)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 128x96, got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 16:
        raise argparse.ArgumentTypeError(f"size must be WxH with both sides >= 16, got {text!r}")
    return parts[0], parts[1]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder (one sub-folder per class is created)")
    parser.add_argument("--per-class", type=int, default=60, help="images per class (default 60)")
    parser.add_argument("--size", type=parse_size, default=(128, 128), help="image size WxH (default 128x128)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--format", default="png", choices=["png", "jpg", "bmp"], help="image file format")


def run(args: argparse.Namespace) -> int:
    from inspector.synth import generate

    counts = generate(args.out, per_class=args.per_class, size=args.size, seed=args.seed, image_format=args.format)
    for label, n in counts.items():
        print(f"{label:<10}{n:>6}")
    print(f"wrote {sum(counts.values())} images to {args.out} (good class: good)")
    return 0
