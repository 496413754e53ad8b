"""The retraining archive: what is kept, the folder layout the trainer reads, sidecars, the disk budget."""

import json
import time

import numpy as np

from edge.archive import Archive
from edge.config import ArchiveConfig
from edge.sources import Frame
from inspector.dataset import scan_folder
from inspector.imageio import load_image
from inspector.preprocess import ChannelOrder
from inspector.protocol.enums import Verdict


def _frame(value=0, order=ChannelOrder.BGR):
    image = np.zeros((32, 32, 3), np.uint8)
    image[..., 0] = 200  # blue in BGR
    image[..., 2] = value
    return Frame(image, order, time.time(), 1, "img.png")


def _save(archive, verdict, top_class, seq, frame=None):
    path = archive.reserve(Verdict(verdict), top_class, seq, f"{seq:032x}", time.time())
    if path is not None:
        archive.submit(path, frame or _frame(), {"seq": seq, "verdict": verdict, "top_class": top_class})
    return path


def test_fail_and_review_are_kept_passes_sampled(tmp_path):
    archive = Archive(ArchiveConfig(path=tmp_path / "a", pass_every=3), "cam1")
    kept = [
        _save(archive, v, "good" if v == "pass" else "crack", i)
        for i, v in enumerate(["pass", "fail", "pass", "review", "pass", "pass"], start=1)
    ]
    archive.close()
    assert [p is not None for p in kept] == [False, True, False, True, True, False]
    assert kept[1].relative_to(tmp_path / "a").parts[:2] == ("crack", "fail")
    assert kept[1].name.startswith("cam1_00000002_")
    sidecar = json.loads(kept[1].with_suffix(".json").read_text())
    assert sidecar == {"seq": 2, "verdict": "fail", "top_class": "crack"}
    assert archive.saved == 3


def test_images_are_saved_in_true_colour(tmp_path):
    archive = Archive(ArchiveConfig(path=tmp_path / "a"), "cam1")
    bgr = _save(archive, "fail", "crack", 1, _frame(50, ChannelOrder.BGR))
    archive.close()
    rgb = load_image(bgr)
    assert rgb[0, 0].tolist() == [50, 0, 200]  # red 50, blue 200 whatever the capture order


def test_archive_layout_is_a_dataset_the_trainer_can_scan(tmp_path):
    archive = Archive(ArchiveConfig(path=tmp_path / "a", pass_every=1), "cam1")
    for seq, (verdict, cls) in enumerate([("pass", "good"), ("fail", "crack"), ("review", "good")], start=1):
        _save(archive, verdict, cls, seq)
    archive.close()
    scan = scan_folder(tmp_path / "a", good_class="good")
    assert scan.classes == ["crack", "good"] and scan.counts() == {"crack": 1, "good": 2}


def test_disk_budget_deletes_the_oldest_first_also_across_restarts(tmp_path):
    cfg = ArchiveConfig(path=tmp_path / "a", max_mb=0.0006)  # about 600 bytes: four tiny images and sidecars
    archive = Archive(cfg, "cam1")
    paths = [_save(archive, "fail", "crack", i) for i in range(1, 11)]
    archive.close()
    present = [p.exists() for p in paths]
    assert present[-1] and not present[0]
    assert present == sorted(present)  # a run of deleted (oldest) then a run of kept (newest)
    total = sum(f.stat().st_size for f in (tmp_path / "a").rglob("*") if f.is_file())
    assert total <= 0.0006 * 1024 * 1024
    again = Archive(cfg, "cam1")
    newer = [_save(again, "fail", "crack", i) for i in range(11, 14)]
    again.close()
    assert all(p.exists() for p in newer) and not paths[-4].exists()


def test_full_write_queue_skips_instead_of_blocking(tmp_path):
    archive = Archive(ArchiveConfig(path=tmp_path / "a", queue=1), "cam1")
    big = Frame(
        np.random.default_rng(0).integers(0, 255, (1200, 1600, 3), dtype=np.uint8), ChannelOrder.BGR, time.time(), 1
    )
    reserved = [_save(archive, "fail", "crack", i, big) for i in range(1, 30)]
    archive.close()
    assert None in reserved and archive.skipped == reserved.count(None)
    assert all(p.exists() for p in reserved if p is not None)


def test_snapshot_goes_to_its_own_folder(tmp_path):
    archive = Archive(ArchiveConfig(path=tmp_path / "a", snapshot_dir=tmp_path / "snaps", enabled=False), "cam1")
    path = archive.snapshot(_frame(), {"why": "test"})
    assert path.parent == tmp_path / "snaps" and path.exists()
    assert json.loads(path.with_suffix(".json").read_text()) == {"why": "test"}
    assert archive.reserve(Verdict.FAIL, "crack", 1, "x" * 32, time.time()) is None  # archive disabled
