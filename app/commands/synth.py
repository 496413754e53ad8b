"""Generate a synthetic labeled-folder dataset: textured surfaces with scratches, spots, cracks and stains.

Examples:
  inspector synth data/synth --per-class 60 --size 128x128 --seed 0
  inspector synth data/small --size 320 --defect-scale 0.5 --defect-contrast 0.7   # small, faint defects
  inspector synth data/cast --surface cast                                           # another material
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


def parse_surfaces(text: str) -> tuple:
    """Comma-separated surface names, each one of :data:`inspector.synth.ALL_SURFACES`."""
    from inspector.synth import ALL_SURFACES

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in ALL_SURFACES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown surface(s) {unknown or text!r}; choose from {', '.join(ALL_SURFACES)}"
        )
    return names


def parse_relative(text: str) -> float:
    """A factor relative to the default defects, in (0, 4]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value <= 4:
        raise argparse.ArgumentTypeError(f"must be in (0, 4], got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder (one sub-folder per class is created)")
    parser.add_argument("--per-class", type=int, default=60, help="images per class (default 60)")
    parser.add_argument("--size", type=parse_size, default=(128, 128), help="image size WxH (default 128x128)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--format", default="png", choices=["png", "jpg", "bmp"], help="image file format")
    parser.add_argument(
        "--surface",
        type=parse_surfaces,
        default=None,
        help="texture(s), comma-separated, from metal, fabric, tile, cast (default: metal,fabric,tile)",
    )
    parser.add_argument(
        "--defect-scale",
        type=parse_relative,
        default=1.0,
        help="defect size relative to the default (e.g. 0.5: half as large)",
    )
    parser.add_argument(
        "--defect-contrast",
        type=parse_relative,
        default=1.0,
        help="defect contrast relative to the default (e.g. 0.7: fainter)",
    )


def run(args: argparse.Namespace) -> int:
    from inspector.synth import SURFACES, DefectStyle, generate

    style = DefectStyle(scale=args.defect_scale, contrast=args.defect_contrast)
    counts = generate(
        args.out,
        per_class=args.per_class,
        size=args.size,
        seed=args.seed,
        image_format=args.format,
        surfaces=args.surface or SURFACES,
        style=style,
    )
    for label, n in counts.items():
        print(f"{label:<10}{n:>6}")
    print(f"wrote {sum(counts.values())} images to {args.out} (good class: good)")
    return 0
