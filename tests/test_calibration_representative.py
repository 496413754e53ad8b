"""The representative sample: stratified from train only, prepared like the edge, bad files skipped."""

import logging
import shutil
from collections import Counter

import numpy as np
import pytest

from calibration.representative import _quotas, draw_representative, load_labeled, resolve_root
from inspector.dataset import make_split, scan_folder
from inspector.imageio import load_image
from inspector.preprocess import Preprocessor, PreprocessSpec
from inspector.synth import generate


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("rep")
    generate(
        root,
        per_class={"good": 30, "scratch": 10, "spot": 10},
        size=(48, 40),
        seed=3,
        classes=("good", "scratch", "spot"),
    )
    return root, make_split(scan_folder(root), seed=0)


def test_quotas_are_proportional_and_keep_every_class():
    quotas = _quotas({"good": 900, "crack": 60, "fray": 5}, 100)
    assert sum(quotas.values()) == 100
    assert quotas["fray"] >= 1 and quotas["good"] > quotas["crack"] > quotas["fray"]
    assert _quotas({"a": 3, "b": 2}, 10) == {"a": 3, "b": 2}


def test_sample_is_stratified_from_train_and_prepared_like_the_edge(dataset, caplog):
    root, split = dataset
    pre = Preprocessor(PreprocessSpec(width=32, height=32))
    with caplog.at_level(logging.WARNING):
        sample = draw_representative(split, root, pre, size=20, seed=1)
    train_paths = {s.path for s in split.splits["train"]}
    assert set(sample.paths) <= train_paths
    assert sample.images.shape == (20, 32, 32, 3) and sample.images.dtype == np.uint8
    counts = Counter(split.classes[i] for i in sample.labels)
    assert counts["good"] > counts["scratch"] >= 1 and counts["spot"] >= 1
    np.testing.assert_array_equal(sample.images[0], pre.prepare(load_image(root / sample.paths[0])))
    batches = list(sample.dataset()())
    assert len(batches) == 20 and batches[0][0].shape == (1, 32, 32, 3) and batches[0][0].dtype == np.float32
    # 20 < 200 images: the default threshold warns, in the log and in the sample's record.
    assert any("fewer than 200" in w for w in sample.warnings)
    assert "fewer than 200" in caplog.text


def test_corrupted_image_is_skipped_with_reason_and_replaced(dataset, tmp_path):
    root, split = dataset
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    pre = Preprocessor(PreprocessSpec(width=32, height=32))
    size = 12
    clean = draw_representative(split, copy, pre, size=size, seed=0, recommended_min=0)
    victim = next(p for p, i in zip(clean.paths, clean.labels) if split.classes[i] == "scratch")
    (copy / victim).write_bytes(b"\x89PNG\r\n\x1a\n broken")
    sample = draw_representative(split, copy, pre, size=size, seed=0, recommended_min=0)
    assert [s.path for s in sample.skipped] == [victim]
    assert "PNG" in sample.skipped[0].reason
    assert sample.to_dict()["skipped"] == [{"path": victim, "reason": sample.skipped[0].reason}]
    # Another scratch image of the training split takes its place: same size, same class balance.
    assert victim not in sample.paths and len(sample.images) == size
    assert sample.per_class == clean.per_class
    assert sample.warnings == []


def test_load_labeled_skips_unreadable(dataset, tmp_path):
    root, split = dataset
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    bad = split.splits["val"][0]
    (copy / bad.path).write_bytes(b"")
    loaded = load_labeled(split.splits["val"], copy, Preprocessor(PreprocessSpec(width=16, height=16)), split.classes)
    assert len(loaded.images) == len(split.splits["val"]) - 1
    assert loaded.skipped[0].path == bad.path and loaded.skipped[0].reason == "empty file"


def test_moved_dataset_is_reported(dataset, tmp_path):
    _, split = dataset
    split.root = str(tmp_path / "gone")
    with pytest.raises(FileNotFoundError, match="--data-root"):
        resolve_root(split)
