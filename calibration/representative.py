"""The representative sample that sets INT8 activation ranges, and loading labelled images for evaluation.

The converter records the range of every activation over the representative images; ranges from a
sample that misses a class (or holds only bright good parts) clip the activations that class produces,
which is where post-training quantization loses accuracy. So the sample is drawn stratified by class from
the training split (never from validation or test, which judge the result), and every image goes through
:class:`inspector.preprocess.Preprocessor`, the same code the edge runs.

Unreadable images are skipped with their reason and replaced by another image of the same class when one
is left, and a sample smaller than about 200 images is reported: ranges from few images are noisy.

Example:
    >>> sample = draw_representative(split, "/data/tiles", Preprocessor(spec), size=300)  # doctest: +SKIP
    >>> sample.images.shape, [s.path for s in sample.skipped]                             # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np

from inspector.dataset import Sample, Skipped, SplitManifest
from inspector.imageio import ImageError, load_image
from inspector.preprocess import Preprocessor

log = logging.getLogger(__name__)

DEFAULT_SIZE = 300
RECOMMENDED_MIN = 200


@dataclass
class LabeledImages:
    """Prepared model inputs with their labels; what could not be loaded is in ``skipped``."""

    images: np.ndarray  # N x H x W x 3 uint8, as the edge feeds the model
    labels: np.ndarray  # N class indices
    paths: List[str]
    skipped: List[Skipped] = field(default_factory=list)


@dataclass
class RepresentativeSample(LabeledImages):
    requested: int = 0
    available: int = 0
    per_class: Dict[str, int] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)

    def dataset(self) -> Callable[[], Iterator[List[np.ndarray]]]:
        """The converter's ``representative_dataset``: one float32 1xHxWx3 raw-pixel batch per image."""

        def generate():
            for image in self.images:
                yield [image[np.newaxis].astype(np.float32)]

        return generate

    def to_dict(self) -> dict:
        return {
            "size": int(len(self.images)),
            "requested": self.requested,
            "available": self.available,
            "per_class": self.per_class,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "warnings": self.warnings,
        }


def _load_one(root: Path, sample: Sample, preprocessor: Preprocessor) -> np.ndarray:
    return preprocessor.prepare(load_image(root / sample.path))


def _quotas(counts: Dict[str, int], size: int) -> Dict[str, int]:
    """Proportional allocation (largest remainder), at least one image of every class that has any."""
    total = sum(counts.values())
    if size >= total:
        return dict(counts)
    raw = {c: size * n / total for c, n in counts.items()}
    quota = {c: min(counts[c], max(1, int(np.floor(r)))) for c, r in raw.items() if counts[c]}
    remainders = sorted(counts, key=lambda c: raw[c] - np.floor(raw[c]), reverse=True)
    while sum(quota.values()) < size:
        grown = False
        for c in remainders:
            if sum(quota.values()) >= size:
                break
            if quota.get(c, 0) < counts[c]:
                quota[c] = quota.get(c, 0) + 1
                grown = True
        if not grown:
            break
    return quota


def draw_representative(
    split: SplitManifest,
    root: str | Path,
    preprocessor: Preprocessor,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
    split_name: str = "train",
    recommended_min: int = RECOMMENDED_MIN,
) -> RepresentativeSample:
    """Draw ``size`` images stratified by class from ``split_name``, prepared as the edge prepares them."""
    if size < 1:
        raise ValueError(f"representative sample size must be at least 1, got {size}")
    root = Path(root)
    by_class: Dict[str, List[Sample]] = {c: [] for c in split.classes}
    for sample in split.splits[split_name]:
        by_class[sample.label].append(sample)
    counts = {c: len(v) for c, v in by_class.items()}
    quotas = _quotas(counts, size)
    rng = np.random.default_rng(seed)
    index = {c: i for i, c in enumerate(split.classes)}
    images, labels, paths, skipped = [], [], [], []
    per_class: Dict[str, int] = {}
    for label in split.classes:
        pool = by_class[label]
        taken = 0
        for i in rng.permutation(len(pool)):
            if taken >= quotas.get(label, 0):
                break
            sample = pool[int(i)]
            try:
                images.append(_load_one(root, sample, preprocessor))
            except (ImageError, ValueError) as exc:
                reason = exc.reason if isinstance(exc, ImageError) else str(exc)
                skipped.append(Skipped(sample.path, reason))
                log.warning("representative sample: skipped %s: %s", sample.path, reason)
                continue
            labels.append(index[label])
            paths.append(sample.path)
            taken += 1
        per_class[label] = taken
    result = RepresentativeSample(
        images=np.stack(images)
        if images
        else np.zeros((0, preprocessor.spec.height, preprocessor.spec.width, 3), np.uint8),
        labels=np.asarray(labels, np.int64),
        paths=paths,
        skipped=skipped,
        requested=size,
        available=sum(counts.values()),
        per_class=per_class,
    )
    if not images:
        raise ValueError(f"no usable image for the representative sample in the {split_name} split of {root}")
    if len(images) < recommended_min:
        message = (
            f"representative sample has {len(images)} images (fewer than {recommended_min}): "
            f"INT8 activation ranges may be noisy; add training images or raise --representative-size"
        )
        result.warnings.append(message)
        log.warning(message)
    missing = [c for c in split.classes if per_class.get(c, 0) == 0]
    if missing:
        message = f"representative sample has no image of class(es) {', '.join(missing)}"
        result.warnings.append(message)
        log.warning(message)
    return result


def load_labeled(
    samples: Sequence[Sample],
    root: str | Path,
    preprocessor: Preprocessor,
    classes: Sequence[str],
) -> LabeledImages:
    """Load and prepare every sample (e.g. a validation split); unreadable ones are skipped with a reason."""
    root = Path(root)
    index = {c: i for i, c in enumerate(classes)}
    images, labels, paths, skipped = [], [], [], []
    for sample in samples:
        try:
            images.append(_load_one(root, sample, preprocessor))
        except (ImageError, ValueError) as exc:
            skipped.append(Skipped(sample.path, exc.reason if isinstance(exc, ImageError) else str(exc)))
            continue
        labels.append(index[sample.label])
        paths.append(sample.path)
    empty = np.zeros((0, preprocessor.spec.height, preprocessor.spec.width, 3), np.uint8)
    return LabeledImages(np.stack(images) if images else empty, np.asarray(labels, np.int64), paths, skipped)


def resolve_root(split: SplitManifest, override: Optional[str | Path] = None) -> Path:
    """The dataset folder: ``override`` if given, else the split's root; it must exist."""
    root = Path(override) if override else Path(split.root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"dataset folder {root} not found; the split manifest points there. Pass --data-root with "
            f"the folder's current location"
        )
    return root
