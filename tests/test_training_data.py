"""training.data and training.augment: images loaded once like the edge, pipelines, augmentation toggles."""

import numpy as np
import pytest

from inspector.dataset import DatasetError, make_split, scan_folder
from inspector.imageio import load_image
from inspector.preprocess import Preprocessor, PreprocessSpec


@pytest.fixture(scope="module")
def split(synth_root):
    return make_split(scan_folder(synth_root), seed=0)


SPEC = PreprocessSpec(width=48, height=40)


def test_images_match_the_edge_preprocessing(split, synth_root, tmp_path):
    from training.data import load_split_images

    data = load_split_images(split, SPEC, cache_dir=tmp_path)
    test = data["test"]
    assert test.images.shape == (len(split.splits["test"]), 40, 48, 3) and test.images.dtype == np.uint8
    np.testing.assert_array_equal(test.labels, split.labels("test"))
    expected = Preprocessor(SPEC).prepare(load_image(synth_root / test.paths[0]))
    np.testing.assert_array_equal(test.images[0], expected)
    # the cache returns the same arrays
    cached = load_split_images(split, SPEC, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("images-*.npz"))) == 1
    np.testing.assert_array_equal(cached["train"].images, data["train"].images)


def test_changed_file_is_refused(split, synth_root, tmp_path):
    import shutil

    from training.data import load_split_images

    copy = tmp_path / "copy"
    shutil.copytree(synth_root, copy)
    victim = copy / split.splits["val"][0].path
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(DatasetError, match="differs from the split manifest"):
        load_split_images(split, SPEC, root=copy)


def _images(n=24, size=32, classes=3):
    rng = np.random.default_rng(0)
    from training.data import ImageSet

    labels = np.arange(n) % classes
    return ImageSet(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), labels, [f"{i}" for i in range(n)])


def test_eval_dataset_is_not_augmented():
    from training.data import eval_dataset

    data = _images()
    out = np.concatenate([b.numpy() for b in eval_dataset(data.images, 5)])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, data.images.astype(np.float32))


def test_train_dataset_targets_weights_and_no_augmentation():
    from training.config import AugmentConfig
    from training.data import train_dataset

    data = _images()
    ds = train_dataset(
        data, 3, batch_size=8, augment=AugmentConfig(enabled=False), seed=0, class_weights=[1.0, 2.0, 3.0]
    )
    x, y, w = next(iter(ds))
    assert x.shape == (8, 32, 32, 3) and y.shape == (8, 3) and w.shape == (8,)
    labels = y.numpy().argmax(1)
    np.testing.assert_array_equal(w.numpy(), np.array([1.0, 2.0, 3.0])[labels])
    # un-augmented batches hold exact training images with their labels
    for image, label in zip(x.numpy(), labels):
        i = int(np.flatnonzero((data.images == image.astype(np.uint8)).all(axis=(1, 2, 3)))[0])
        assert data.labels[i] == label


def test_oversampling_draws_requested_shares():
    from training.config import AugmentConfig
    from training.data import ImageSet, train_dataset

    labels = np.array([0] * 90 + [1] * 8 + [2] * 2)
    data = ImageSet(np.zeros((100, 8, 8, 3), np.uint8), labels, [""] * 100)
    ds = train_dataset(
        data, 3, batch_size=50, augment=AugmentConfig(enabled=False), seed=0, sampling_weights=[0.5, 0.4, 0.1]
    )
    drawn = np.concatenate([y.numpy().argmax(1) for _, y, _ in ds.take(40)])
    shares = np.bincount(drawn, minlength=3) / len(drawn)
    np.testing.assert_allclose(shares, [0.5, 0.4, 0.1], atol=0.04)


def test_augmentation_toggles():
    import tensorflow as tf

    from training.augment import build_augmenter
    from training.config import AugmentConfig

    x = tf.constant(_images(n=6, size=32).images, tf.float32)
    off = AugmentConfig(hflip=False, vflip=False, rotation_degrees=0, shift=0, zoom=0, brightness=0, contrast=0)
    np.testing.assert_array_equal(build_augmenter(off, 0)(x).numpy(), x.numpy())
    np.testing.assert_array_equal(build_augmenter(AugmentConfig(enabled=False), 0)(x).numpy(), x.numpy())
    full = AugmentConfig(zoom=0.1, blur_probability=1.0, noise_std=5.0)
    y = build_augmenter(full, 0)(x).numpy()
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 255 and not np.array_equal(y, x.numpy())
    # brightness/contrast keep a grey image grey (all channels changed alike)
    grey = tf.repeat(tf.constant(_images(n=4).images[..., :1], tf.float32), 3, axis=-1)
    photometric = AugmentConfig(hflip=False, vflip=False, rotation_degrees=0, shift=0, zoom=0)
    out = build_augmenter(photometric, 1)(grey).numpy()
    np.testing.assert_allclose(out[..., 0], out[..., 2])
    assert not np.array_equal(out, grey.numpy())
    # flips alone only mirror: the multiset of pixel values of each image is preserved
    flips = AugmentConfig(rotation_degrees=0, shift=0, zoom=0, brightness=0, contrast=0)
    flipped = build_augmenter(flips, 2)(x).numpy()
    np.testing.assert_array_equal(np.sort(flipped.reshape(6, -1), 1), np.sort(x.numpy().reshape(6, -1), 1))


def test_same_seed_same_augmented_batches():
    """A run trained again on the same split and seed sees the same batches (parallel augmentation did not)."""
    import keras

    from training.config import AugmentConfig
    from training.data import train_dataset

    data = _images(n=96, size=48, classes=3)

    def batches():
        keras.utils.set_random_seed(0)
        ds = train_dataset(data, 3, batch_size=8, augment=AugmentConfig(), seed=0, sampling_weights=[0.5, 0.3, 0.2])
        return [x.numpy() for x, _, _ in ds.take(24)]

    first, again = batches(), batches()
    raw = data.images.astype(np.float32)
    assert not any((raw == image).all(axis=(1, 2, 3)).any() for image in first[0])  # augmented, not raw
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
