"""Images of a split manifest as arrays, and the tf.data pipelines that feed them.

Each image is read once, checked against the SHA-256 in the manifest (so a run trains on exactly the
files its split names), and passed through :class:`inspector.preprocess.Preprocessor` with the run's
:class:`PreprocessSpec` - the same resize the edge applies to camera frames. The resulting uint8 arrays
are kept in memory (and optionally in ``RUN_DIR/cache``); tf.data then shuffles, augments, batches and
prefetches them. Validation and test data are never augmented.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from inspector.dataset import DatasetError, SplitManifest
from inspector.fsutil import atomic_path
from inspector.imageio import ImageError, decode_image
from inspector.preprocess import Preprocessor, PreprocessSpec
from training.augment import build_augmenter
from training.config import AugmentConfig

log = logging.getLogger(__name__)


@dataclass
class ImageSet:
    """One split in memory: NxHxWx3 uint8 model inputs, class indices and the manifest paths."""

    images: np.ndarray
    labels: np.ndarray
    paths: list

    def __len__(self) -> int:
        return len(self.labels)


def _load_one(root: Path, rel: str, sha256: str, preprocessor: Preprocessor) -> np.ndarray:
    path = root / rel
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: listed in the split but cannot be read ({exc.strerror or exc})") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise DatasetError(
            f"{path}: content differs from the split manifest (file changed since the split "
            f"was made); make a new split or restore the file"
        )
    try:
        return preprocessor.prepare(decode_image(data, path.suffix, path))
    except ImageError as exc:
        raise DatasetError(str(exc)) from None


def _cache_key(manifest: SplitManifest, spec: PreprocessSpec) -> str:
    text = manifest.sha256() + json.dumps(spec.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_split_images(
    manifest: SplitManifest, spec: PreprocessSpec, root: Optional[str | Path] = None, cache_dir: Optional[Path] = None
) -> Dict[str, ImageSet]:
    """Every split of ``manifest`` as an :class:`ImageSet`, decoded and resized once."""
    root = Path(root or manifest.root)
    cache_file = Path(cache_dir) / f"images-{_cache_key(manifest, spec)}.npz" if cache_dir else None
    if cache_file is not None and cache_file.is_file():
        with np.load(cache_file) as data:
            log.info("images from cache %s", cache_file)
            return {
                name: ImageSet(data[f"{name}_x"], data[f"{name}_y"], [s.path for s in manifest.splits[name]])
                for name in manifest.splits
            }
    preprocessor = Preprocessor(spec)
    out = {}
    for name, samples in manifest.splits.items():
        images = np.zeros((len(samples), spec.height, spec.width, 3), np.uint8)
        for i, sample in enumerate(samples):
            images[i] = _load_one(root, sample.path, sample.sha256, preprocessor)
        out[name] = ImageSet(images, manifest.labels(name), [s.path for s in samples])
    if cache_file is not None:
        with atomic_path(cache_file) as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh, **{f"{n}_{k}": getattr(s, a) for n, s in out.items() for k, a in (("x", "images"), ("y", "labels"))}
            )
    return out


def _with_targets(num_classes: int, class_weights: Optional[Sequence[float]]):
    weights = tf.constant(class_weights if class_weights is not None else [1.0] * num_classes, tf.float32)

    def fn(images, labels):
        return images, tf.one_hot(labels, num_classes), tf.gather(weights, labels)

    return fn


def train_dataset(
    data: ImageSet,
    num_classes: int,
    batch_size: int,
    augment: AugmentConfig,
    seed: int,
    class_weights: Optional[Sequence[float]] = None,
    sampling_weights: Optional[Sequence[float]] = None,
) -> tf.data.Dataset:
    """Endless (image float32 0-255, one-hot, sample weight) batches; fit() bounds epochs by steps.

    ``sampling_weights`` (one per class) oversamples: each class is an endless shuffled stream and
    batches draw from the streams with those probabilities. Otherwise the whole train set is reshuffled
    on every pass.
    """
    if sampling_weights is not None:
        streams, probs = [], []
        for c, weight in enumerate(sampling_weights):
            idx = np.flatnonzero(data.labels == c)
            if weight <= 0 or len(idx) == 0:
                continue
            ds = tf.data.Dataset.from_tensor_slices((data.images[idx], data.labels[idx]))
            streams.append(ds.shuffle(len(idx), seed=seed + c, reshuffle_each_iteration=True).repeat())
            probs.append(float(weight))
        total = sum(probs)
        ds = tf.data.Dataset.sample_from_datasets(streams, [p / total for p in probs], seed=seed)
    else:
        ds = tf.data.Dataset.from_tensor_slices((data.images, data.labels))
        ds = ds.shuffle(len(data), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(batch_size, drop_remainder=True)
    augmenter = build_augmenter(augment, seed)
    # One batch at a time: the random layers draw from shared generator state, so parallel calls would take
    # the draws in whatever order the threads run and the same seed would train a different model.
    ds = ds.map(lambda x, y: (augmenter(tf.cast(x, tf.float32)), y))
    ds = ds.map(_with_targets(num_classes, class_weights), num_parallel_calls=tf.data.AUTOTUNE)
    return _distributable(ds).prefetch(tf.data.AUTOTUNE)


def eval_dataset(images: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """Un-augmented float32 batches in manifest order (for predict)."""
    ds = tf.data.Dataset.from_tensor_slices(images).batch(batch_size)
    ds = ds.map(lambda x: tf.cast(x, tf.float32))
    return _distributable(ds).prefetch(tf.data.AUTOTUNE)


def _distributable(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Split batches by element across workers (the arrays are in memory, there are no files to shard);
    Keras' predict gathers the parts back in order."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)
