"""Out-of-fold scores: an operating point from every train+val defect instead of the validation split alone.

A threshold for 0.5 % escapes chosen on a validation split with 59 defects rests on the one or two
lowest-scored defects there; another split moves it a lot. With ``folds = K`` the run also trains K
models, each on K-1 folds of train+val (stratified by class, byte-identical files kept together), and
scores the fold it did not see. The pooled out-of-fold scores hold every train+val image once, about
``(1 - test) / val`` times as many defects as the validation split (5.7x at the default 70/15/15), and
the operating point of the run is chosen on them. The test split stays untouched for the final numbers.

Each fold model selects its epoch on the fold it scores, so its scores are slightly optimistic; the
final model, trained on train alone, is the one deployed at that threshold. Costs K extra trainings:
worth it when the validation split holds too few defects for the target (calibrate says how many).

Example:
    >>> from inspector.dataset import Sample, SplitManifest
    >>> s = [Sample(f"{c}/{i}.png", c, f"{c}{i}") for c in ("good", "dent") for i in range(6)]
    >>> m = SplitManifest("r", "good", ["dent", "good"], 0, (0.7, 0.15, 0.15), "f",
    ...                   {"train": s[:4] + s[6:10], "val": s[4:6] + s[10:], "test": []})
    >>> [(len(f.splits["train"]), len(f.splits["val"])) for f in fold_manifests(m, 3)]
    [(8, 4), (8, 4), (8, 4)]
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Callable, Dict, List

import numpy as np

from inspector.dataset import Sample, SplitManifest


def fold_manifests(manifest: SplitManifest, k: int, seed: int = 0) -> List[SplitManifest]:
    """K manifests over train+val: fold i is the validation split of manifest i, the rest its train split."""
    if k < 2:
        raise ValueError(f"folds must be at least 2, got {k}")
    pool = manifest.splits["train"] + manifest.splits["val"]
    groups: Dict[str, Dict[str, List[Sample]]] = defaultdict(lambda: defaultdict(list))
    for sample in pool:
        groups[sample.label][sample.sha256].append(sample)
    rng = np.random.default_rng(seed)
    folds: List[List[Sample]] = [[] for _ in range(k)]
    for label in manifest.classes:
        by_hash = [groups[label][h] for h in sorted(groups[label])]
        if 0 < len(by_hash) < k:
            raise ValueError(f"class {label} has {len(by_hash)} distinct train+val images, fewer than {k} folds")
        for position, index in enumerate(rng.permutation(len(by_hash))):
            folds[position % k].extend(by_hash[index])
    out = []
    for i in range(k):
        train = sorted((s for j in range(k) if j != i for s in folds[j]), key=lambda s: s.path)
        out.append(
            replace(manifest, splits={"train": train, "val": sorted(folds[i], key=lambda s: s.path), "test": []})
        )
    return out


@dataclass
class OutOfFold:
    """Pooled scores of the fold models on the fold each did not train on."""

    probabilities: np.ndarray  # N x classes
    labels: np.ndarray  # N class indices
    paths: List[str]
    folds: int

    def describe(self, good_index: int) -> str:
        defects = int((self.labels != good_index).sum())
        return (
            f"{self.folds}-fold out-of-fold scores over train+val ({defects} defect, "
            f"{len(self.labels) - defects} good images)"
        )


def pool(fold_predictions: List[dict], folds: int) -> OutOfFold:
    """Concatenate each fold's ``predictions.json`` validation block (the fold it held out)."""
    probs = np.concatenate([np.asarray(p["probabilities"], np.float64) for p in fold_predictions])
    labels = np.concatenate([np.asarray(p["labels"], np.int64) for p in fold_predictions])
    paths = [path for p in fold_predictions for path in p["paths"]]
    if len(set(paths)) != len(paths):
        raise ValueError("out-of-fold scores name an image twice: the folds overlap")
    return OutOfFold(probs, labels, paths, folds)


def out_of_fold(
    manifest: SplitManifest, k: int, seed: int, train_fold: Callable[[int, SplitManifest], dict]
) -> OutOfFold:
    """Train every fold with ``train_fold(index, manifest)`` (returns the fold run's predictions.json
    content) and pool their held-out scores."""
    return pool([train_fold(i, m)["val"] for i, m in enumerate(fold_manifests(manifest, k, seed))], k)
