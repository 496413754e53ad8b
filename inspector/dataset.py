"""Labeled defect folders: scanning, duplicate detection and a reproducible split manifest.

A dataset is ``root/<class>/<image>``; one class is the good (pass) class. Scanning decodes every file so
that unusable ones are found up front and listed with their reason. Byte-identical files are grouped by
SHA-256 and always land in the same split, so a copy of a test image can never sit in the training set.
The split is written as JSON and every later stage (training, calibration, evaluation) reads the same file,
so "held-out" means the same images everywhere.

Example:
    >>> scan = scan_folder("data", good_class="good")          # doctest: +SKIP
    >>> split = make_split(scan, seed=0)                        # doctest: +SKIP
    >>> split.save("runs/split.json")                           # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from inspector.fsutil import atomic_write_text, sha256_bytes
from inspector.imageio import ImageError, decode_image, is_image_name

SPLIT_NAMES = ("train", "val", "test")
SPLIT_SCHEMA = 1


class DatasetError(ValueError):
    """The folder cannot serve as a dataset (too few classes, missing good class, empty class...)."""


@dataclass(frozen=True)
class Sample:
    path: str  # relative to the dataset root, POSIX separators
    label: str
    sha256: str


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class Scan:
    """Result of :func:`scan_folder`: the usable samples, what was skipped and why."""

    root: str
    good_class: str
    classes: List[str]
    samples: List[Sample]
    skipped: List[Skipped] = field(default_factory=list)

    def counts(self) -> Dict[str, int]:
        counter = Counter(s.label for s in self.samples)
        return {c: counter.get(c, 0) for c in self.classes}

    def duplicate_groups(self) -> List[List[Sample]]:
        """Groups of two or more byte-identical files."""
        groups: Dict[str, List[Sample]] = defaultdict(list)
        for sample in self.samples:
            groups[sample.sha256].append(sample)
        return [g for g in groups.values() if len(g) > 1]

    def fingerprint(self) -> str:
        """SHA-256 over (path, label, content hash) of every sample: changes when any image or label does."""
        digest = hashlib.sha256()
        for s in sorted(self.samples, key=lambda s: s.path):
            digest.update(f"{s.path}\t{s.label}\t{s.sha256}\n".encode())
        return digest.hexdigest()


def scan_folder(root: str | os.PathLike[str], good_class: str = "good", decode: bool = True) -> Scan:
    """Scan ``root/<class>/*`` for images; every file is hashed and (by default) decoded to validate it.

    Files with an image ending that cannot be decoded, and files with other endings, are listed in
    ``Scan.skipped`` with their reason. Raises :class:`DatasetError` for fewer than two classes, a missing
    good class, or a class with no usable image.
    """
    root_path = Path(root)
    if not root_path.is_dir():
        raise DatasetError(f"{root}: not a folder")
    class_dirs = sorted(p for p in root_path.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes = [p.name for p in class_dirs]
    if len(classes) < 2:
        raise DatasetError(
            f"{root}: found {len(classes)} class folder(s) {classes}; need at least two "
            f"(the good class '{good_class}' and one defect class), laid out as root/<class>/<image>"
        )
    if good_class not in classes:
        raise DatasetError(
            f"{root}: good class '{good_class}' not found among {classes}; pass the pass/OK folder's "
            f"name with --good-class"
        )
    samples: List[Sample] = []
    skipped: List[Skipped] = []
    for class_dir in class_dirs:
        for path in sorted(class_dir.rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            rel = path.relative_to(root_path).as_posix()
            if not is_image_name(path):
                skipped.append(Skipped(rel, f"not an image file ending ({path.suffix or 'none'})"))
                continue
            try:
                data = path.read_bytes()
                if decode:
                    decode_image(data, path.suffix, rel)
                elif not data:
                    raise ImageError(rel, "empty file")
            except ImageError as exc:
                skipped.append(Skipped(rel, exc.reason))
                continue
            except OSError as exc:
                skipped.append(Skipped(rel, f"cannot read: {exc.strerror or exc}"))
                continue
            samples.append(Sample(rel, class_dir.name, sha256_bytes(data)))
    scan = Scan(str(root_path), good_class, classes, samples, skipped)
    empty = [c for c, n in scan.counts().items() if n == 0]
    if empty:
        lines = [f"{root}: class folder(s) with no usable image: {', '.join(empty)}"]
        for name in empty:
            why = [s for s in skipped if s.path.split("/", 1)[0] == name]
            lines += [f"  {s.path}: {s.reason}" for s in why[:3]]
            if len(why) > 3:
                lines.append(f"  ... and {len(why) - 3} more skipped in {name}/")
            if not why:
                lines.append(f"  {name}/ holds no file")
        raise DatasetError("\n".join(lines))
    return scan


@dataclass
class SplitManifest:
    """Which image went to train, val and test; the JSON file later stages reload."""

    root: str
    good_class: str
    classes: List[str]
    seed: int
    ratios: Tuple[float, float, float]
    fingerprint: str
    splits: Dict[str, List[Sample]]
    skipped: List[Skipped] = field(default_factory=list)
    conflicts: List[Skipped] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "schema": SPLIT_SCHEMA,
            "root": self.root,
            "good_class": self.good_class,
            "classes": self.classes,
            "seed": self.seed,
            "ratios": list(self.ratios),
            "fingerprint": self.fingerprint,
            "splits": {name: [[s.path, s.label, s.sha256] for s in self.splits[name]] for name in SPLIT_NAMES},
            "skipped": [[s.path, s.reason] for s in self.skipped],
            "conflicts": [[s.path, s.reason] for s in self.conflicts],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def sha256(self) -> str:
        return sha256_bytes(self.to_json().encode())

    def save(self, path: str | os.PathLike[str]) -> Path:
        return atomic_write_text(path, self.to_json())

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> SplitManifest:
        if data.get("schema") != SPLIT_SCHEMA:
            raise DatasetError(f"split manifest schema {data.get('schema')!r} is not {SPLIT_SCHEMA}")
        return cls(
            root=data["root"],
            good_class=data["good_class"],
            classes=list(data["classes"]),
            seed=int(data["seed"]),
            ratios=tuple(data["ratios"]),
            fingerprint=data["fingerprint"],
            splits={n: [Sample(*row) for row in data["splits"][n]] for n in SPLIT_NAMES},
            skipped=[Skipped(*row) for row in data.get("skipped", [])],
            conflicts=[Skipped(*row) for row in data.get("conflicts", [])],
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SplitManifest:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{path}: not a valid split manifest ({exc})") from None

    def paths(self, split: str, root: Optional[str | os.PathLike[str]] = None) -> List[Path]:
        base = Path(root or self.root)
        return [base / s.path for s in self.splits[split]]

    def labels(self, split: str) -> np.ndarray:
        """Class indices (position in ``classes``) of a split, in manifest order."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[s.label] for s in self.splits[split]], dtype=np.int64)

    def counts(self) -> Dict[str, Dict[str, int]]:
        out = {}
        for name in SPLIT_NAMES:
            counter = Counter(s.label for s in self.splits[name])
            out[name] = {c: counter.get(c, 0) for c in self.classes}
        return out

    def unmeasured(self) -> Dict[str, List[str]]:
        """Defect classes with no image in validation or test, and the held-out splits they are missing from.

        A class of one or two images lands in train only: no operating point, report or verdict can say
        how many of its parts escape.
        """
        counts = self.counts()
        missing = {c: [n for n in SPLIT_NAMES[1:] if not counts[n][c]] for c in self.classes if c != self.good_class}
        return {c: splits for c, splits in missing.items() if splits}


def unmeasured_warnings(manifest: SplitManifest) -> List[str]:
    """One line per defect class that a held-out split lacks, saying what that leaves unmeasured."""
    in_train = manifest.counts()["train"]
    return [
        f"warning: defect class '{c}' has no image in {' or '.join(splits)} ({in_train[c]} in train): its "
        f"escapes are not measured there; with 3 or more images each split gets one"
        for c, splits in manifest.unmeasured().items()
    ]


def _allocate(n: int, ratios: Sequence[float]) -> Tuple[int, int, int]:
    """Split ``n`` items by ratios, giving val and test at least one item each when n >= 3."""
    n_val = int(round(n * ratios[1]))
    n_test = int(round(n * ratios[2]))
    if n >= 3:
        n_val = max(n_val, 1 if ratios[1] > 0 else 0)
        n_test = max(n_test, 1 if ratios[2] > 0 else 0)
    n_train = max(n - n_val - n_test, 0)
    return n_train, n_val, n - n_train - n_val


def _manifest(
    scan: Scan,
    seed: int,
    ratios: Tuple[float, float, float],
    splits: Dict[str, List[Sample]],
    conflicts: List[Skipped],
) -> SplitManifest:
    """The manifest of ``scan`` split into ``splits``, each sorted by path (a split file diffs cleanly)."""
    for name in SPLIT_NAMES:
        splits[name].sort(key=lambda s: s.path)
    return SplitManifest(
        root=str(Path(scan.root).resolve()),
        good_class=scan.good_class,
        classes=list(scan.classes),
        seed=seed,
        ratios=ratios,
        fingerprint=scan.fingerprint(),
        splits=splits,
        skipped=list(scan.skipped),
        conflicts=conflicts,
    )


def make_split(scan: Scan, seed: int = 0, ratios: Sequence[float] = (0.7, 0.15, 0.15)) -> SplitManifest:
    """Deterministic stratified split that keeps byte-identical files together.

    Files with identical bytes but different labels are contradictory labels: they are left out of every
    split and reported in ``conflicts``.
    """
    ratios = tuple(float(r) for r in ratios)
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        raise DatasetError(f"split ratios must be three non-negative numbers summing to 1, got {ratios}")
    by_hash: Dict[str, List[Sample]] = defaultdict(list)
    for sample in scan.samples:
        by_hash[sample.sha256].append(sample)
    conflicts: List[Skipped] = []
    groups_by_class: Dict[str, List[List[Sample]]] = defaultdict(list)
    for digest in sorted(by_hash):
        group = sorted(by_hash[digest], key=lambda s: s.path)
        labels = sorted({s.label for s in group})
        if len(labels) > 1:
            reason = f"identical bytes labeled as {' and '.join(labels)}"
            conflicts.extend(Skipped(s.path, reason) for s in group)
            continue
        groups_by_class[labels[0]].append(group)
    rng = np.random.default_rng(seed)
    splits: Dict[str, List[Sample]] = {name: [] for name in SPLIT_NAMES}
    for label in scan.classes:
        groups = groups_by_class.get(label, [])
        order = rng.permutation(len(groups))
        shuffled = [groups[i] for i in order]
        n_train, n_val, _ = _allocate(len(shuffled), ratios)
        parts = (shuffled[:n_train], shuffled[n_train : n_train + n_val], shuffled[n_train + n_val :])
        for name, part in zip(SPLIT_NAMES, parts):
            splits[name].extend(sample for group in part for sample in group)
    return _manifest(scan, seed, (ratios[0], ratios[1], ratios[2]), splits, conflicts)


def extend_split(
    previous: SplitManifest, scan: Scan, seed: int = 0, ratios: Optional[Sequence[float]] = None
) -> SplitManifest:
    """A split of ``scan`` that keeps every image of ``previous`` in its split and splits only the new ones.

    A model warm-started from an earlier run (``inspector train --init-from``) has trained on that run's
    train images, so they must not land in the new test split. Images are matched by content, so a file an
    operator moved into another class folder (a relabel) stays where it was; its label is the new one.
    """
    r = previous.ratios if ratios is None else ratios
    ratios = (float(r[0]), float(r[1]), float(r[2]))
    where = {s.sha256: name for name in SPLIT_NAMES for s in previous.splits[name]}
    fresh = make_split(
        Scan(scan.root, scan.good_class, scan.classes, [s for s in scan.samples if s.sha256 not in where]),
        seed=seed,
        ratios=ratios,
    )
    kept = make_split(
        Scan(scan.root, scan.good_class, scan.classes, [s for s in scan.samples if s.sha256 in where]),
        seed=seed,
        ratios=(1.0, 0.0, 0.0),
    )
    conflicts = fresh.conflicts + kept.conflicts
    splits: Dict[str, List[Sample]] = {name: list(fresh.splits[name]) for name in SPLIT_NAMES}
    for sample in kept.splits["train"]:
        splits[where[sample.sha256]].append(sample)
    return _manifest(scan, seed, ratios, splits, conflicts)


def format_table(manifest: SplitManifest) -> str:
    """Per-class table of split sizes, with the good class marked."""
    counts = manifest.counts()
    width = max(8, *(len(c) + 2 for c in manifest.classes))
    lines = [f"{'class':<{width}}{'train':>7}{'val':>7}{'test':>7}{'total':>8}"]
    for c in manifest.classes:
        row = [counts[n][c] for n in SPLIT_NAMES]
        name = f"{c}*" if c == manifest.good_class else c
        lines.append(f"{name:<{width}}{row[0]:>7}{row[1]:>7}{row[2]:>7}{sum(row):>8}")
    totals = [sum(counts[n].values()) for n in SPLIT_NAMES]
    lines.append(f"{'all':<{width}}{totals[0]:>7}{totals[1]:>7}{totals[2]:>7}{sum(totals):>8}")
    lines.append(f"(* = good/pass class '{manifest.good_class}')")
    lines += unmeasured_warnings(manifest)
    return "\n".join(lines)
