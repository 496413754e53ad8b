"""Scanning labeled folders, duplicates and the split manifest."""

import shutil

import cv2
import numpy as np
import pytest

from inspector.dataset import DatasetError, SplitManifest, format_table, make_split, scan_folder, unmeasured_warnings
from inspector.synth import generate


@pytest.fixture
def messy_root(tmp_path):
    """Good and defect images plus every kind of bad file a factory folder holds."""
    root = tmp_path / "data"
    generate(root, per_class={"good": 12, "scratch": 8}, size=(32, 32), seed=3, classes=("good", "scratch"))
    rng = np.random.default_rng(0)
    ok, jpeg = cv2.imencode(".jpg", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    (root / "scratch" / "corrupt.jpg").write_bytes(jpeg.tobytes()[:200])
    (root / "scratch" / "zero.png").write_bytes(b"")
    (root / "good" / "notes.png").write_text("not really a png")
    (root / "good" / "readme.txt").write_text("labels by Anna")
    cv2.imwrite(str(root / "good" / "deep.PNG"), rng.integers(0, 65535, (32, 32), dtype=np.uint16))
    cv2.imwrite(str(root / "good" / "gray.bmp"), rng.integers(0, 255, (32, 32), dtype=np.uint8))
    cv2.imwrite(str(root / "scratch" / "alpha.png"), rng.integers(0, 255, (32, 32, 4), dtype=np.uint8))
    return root


def test_scan_loads_good_files_and_reports_bad_ones(messy_root):
    scan = scan_folder(messy_root, good_class="good")
    paths = {s.path for s in scan.samples}
    assert {"good/deep.PNG", "good/gray.bmp", "scratch/alpha.png"} <= paths
    skipped = {s.path: s.reason for s in scan.skipped}
    assert set(skipped) == {"scratch/corrupt.jpg", "scratch/zero.png", "good/notes.png", "good/readme.txt"}
    assert "truncated" in skipped["scratch/corrupt.jpg"]
    assert skipped["scratch/zero.png"] == "empty file"
    assert "PNG" in skipped["good/notes.png"]
    assert scan.counts() == {"good": 14, "scratch": 9}


def test_duplicates_never_cross_splits(tmp_path):
    root = tmp_path / "d"
    generate(root, per_class=20, size=(16, 16), seed=0, classes=("good", "spot"))
    for i in range(6):  # copies of the same defect image under new names
        shutil.copy(root / "spot" / "spot_00000.png", root / "spot" / f"copy_{i}.png")
    scan = scan_folder(root)
    assert len(scan.duplicate_groups()) == 1
    for seed in range(5):
        split = make_split(scan, seed=seed)
        holders = [
            name
            for name, items in split.splits.items()
            if any(s.path.startswith("spot/copy_") or s.path == "spot/spot_00000.png" for s in items)
        ]
        assert len(holders) == 1


def test_conflicting_labels_are_left_out(tmp_path):
    root = tmp_path / "c"
    generate(root, per_class=6, size=(16, 16), seed=0, classes=("good", "spot"))
    shutil.copy(root / "good" / "good_00000.png", root / "spot" / "mislabeled.png")
    split = make_split(scan_folder(root))
    left_out = {c.path for c in split.conflicts}
    assert left_out == {"good/good_00000.png", "spot/mislabeled.png"}
    assert all(s.path not in left_out for items in split.splits.values() for s in items)


def test_split_is_deterministic_stratified_and_round_trips(tmp_path, synth_root):
    scan = scan_folder(synth_root)
    a, b = make_split(scan, seed=7), make_split(scan, seed=7)
    assert a.to_json() == b.to_json()
    assert make_split(scan, seed=8).to_json() != a.to_json()
    counts = a.counts()
    for label in a.classes:  # 24 per class at 70/15/15 -> 17/4/3 or 16/4/4 in every class
        assert [counts[n][label] for n in ("train", "val", "test")] in ([17, 4, 3], [16, 4, 4], [17, 3, 4])
    total = sum(len(v) for v in a.splits.values())
    assert total == len(scan.samples)
    path = a.save(tmp_path / "split.json")
    again = SplitManifest.load(path)
    assert again.to_json() == a.to_json() and again.sha256() == a.sha256()
    assert again.labels("test").tolist() == [a.classes.index(s.label) for s in a.splits["test"]]


def test_ratios_are_respected(synth_root):
    split = make_split(scan_folder(synth_root), ratios=(0.5, 0.25, 0.25))
    counts = {n: sum(split.counts()[n].values()) for n in ("train", "val", "test")}
    assert counts == {"train": 60, "val": 30, "test": 30}


def test_a_defect_class_too_small_for_the_held_out_splits_is_named(tmp_path):
    root = tmp_path / "rare"
    generate(
        root, per_class={"good": 10, "spot": 10, "stain": 2}, size=(16, 16), seed=0, classes=("good", "spot", "stain")
    )
    split = make_split(scan_folder(root))
    assert split.unmeasured() == {"stain": ["val", "test"]}
    (warning,) = unmeasured_warnings(split)
    assert "'stain' has no image in val or test (2 in train)" in warning and warning in format_table(split)
    generate(root, per_class={"stain": 3}, size=(16, 16), seed=1, classes=("stain",))
    assert make_split(scan_folder(root)).unmeasured() == {}


def test_fingerprint_changes_with_content(tmp_path):
    root = tmp_path / "f"
    generate(root, per_class=3, size=(16, 16), seed=0, classes=("good", "spot"))
    before = scan_folder(root).fingerprint()
    img = cv2.imread(str(root / "spot" / "spot_00001.png"))
    img[0, 0] = 255 - img[0, 0]
    cv2.imwrite(str(root / "spot" / "spot_00001.png"), img)
    assert scan_folder(root).fingerprint() != before


def test_clear_errors(tmp_path):
    (tmp_path / "one" / "good").mkdir(parents=True)
    with pytest.raises(DatasetError, match="need at least two"):
        scan_folder(tmp_path / "one")
    root = tmp_path / "two"
    generate(root, per_class=2, size=(16, 16), seed=0, classes=("spot", "crack"))
    with pytest.raises(DatasetError, match="good class 'ok' not found"):
        scan_folder(root, good_class="ok")
    (root / "ok").mkdir()
    (root / "ok" / "broken.png").write_bytes(b"")
    (root / "ok" / "a.pgm").write_bytes(b"P5\n1 1\n255\n\x00")
    with pytest.raises(DatasetError, match="no usable image: ok") as err:
        scan_folder(root, good_class="ok")
    # The error says why each file of the empty class was left out.
    assert "ok/broken.png: empty file" in str(err.value) and "ok/a.pgm: not an image file ending (.pgm)" in str(
        err.value
    )
    shutil.rmtree(root / "ok")
    with pytest.raises(DatasetError, match="ratios"):
        make_split(scan_folder(root, good_class="spot"), ratios=(0.5, 0.5, 0.5))
