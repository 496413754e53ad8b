"""Scan a labeled folder (root/<class>/<image>), report classes and unusable files, write a split manifest.

Every file is decoded once to find corrupt, truncated, empty and non-image files; they are listed with
their reason and left out. Byte-identical files stay in the same split. The manifest (JSON) is what
`inspector train` and `inspector calibrate` reuse, so the held-out images are the same in every stage.

Example:
  inspector dataset demo-out/data --good-class good --out runs/split.json
"""

from __future__ import annotations

import argparse


def parse_ratios(text: str) -> tuple:
    try:
        ratios = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"ratios must look like 0.7,0.15,0.15, got {text!r}") from None
    if len(ratios) != 3:
        raise argparse.ArgumentTypeError("give three ratios: train,val,test")
    return ratios


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", help="dataset folder holding one sub-folder per class")
    parser.add_argument("--good-class", default="good", help="name of the good/pass class folder (default good)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the split (default 0)")
    parser.add_argument("--seed", dest="split_seed", type=int, help=argparse.SUPPRESS)  # the old spelling
    parser.add_argument(
        "--ratios", type=parse_ratios, default=(0.7, 0.15, 0.15), help="train,val,test ratios (default 0.7,0.15,0.15)"
    )
    parser.add_argument("--out", default="split.json", help="split manifest to write (default split.json)")


def run(args: argparse.Namespace) -> int:
    from inspector.dataset import format_table, make_split, scan_folder

    scan = scan_folder(args.root, good_class=args.good_class)
    manifest = make_split(scan, seed=args.split_seed, ratios=args.ratios)
    print(f"dataset {scan.root}: {len(scan.samples)} usable images in {len(scan.classes)} classes")
    print(format_table(manifest))
    duplicates = scan.duplicate_groups()
    if duplicates:
        extra = sum(len(g) - 1 for g in duplicates)
        print(f"{len(duplicates)} groups of byte-identical files ({extra} extra copies), kept in one split each")
    for item in manifest.conflicts:
        print(f"conflict  {item.path}: {item.reason} (left out)")
    if scan.skipped:
        print(f"skipped {len(scan.skipped)} file(s):")
        for item in scan.skipped:
            print(f"  {item.path}: {item.reason}")
    else:
        print("skipped 0 files")
    path = manifest.save(args.out)
    print(f"split manifest: {path} (seed {manifest.seed}, fingerprint {manifest.fingerprint[:16]})")
    return 0
