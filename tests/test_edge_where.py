"""Where the defect is, on the station: a failed or review result carries ``where`` (from the INT8 bundle's
class map) and the archive keeps a heatmap overlay beside the frame, named in its sidecar and invisible to
the dataset scanner. A real station on a real broker with the shared ``int8_bundle``."""

import json
import time
from pathlib import Path

import numpy as np
import pytest

from edge.archive import Archive, overlay_path
from edge.config import ArchiveConfig
from edge.sources import Frame
from inspector.bundle import Bundle
from inspector.dataset import scan_folder
from inspector.decision import DecisionPolicy
from inspector.exitcodes import ExitCode
from inspector.imageio import load_image
from inspector.inference import Classifier
from inspector.localization import Heatmap, locate
from inspector.preprocess import ChannelOrder
from inspector.protocol.enums import Verdict
from inspector.protocol.payloads import Result
from tests.fixtures_edge import StationThread, station_config


def _bundle_with_threshold(int8_bundle, threshold: float, folder: Path) -> Path:
    """The shared bundle deciding at ``threshold`` (the near-chance fixture model scores every part alike)."""
    bundle = Bundle.load(int8_bundle)
    manifest = bundle.manifest.model_copy(update={"decision": DecisionPolicy(threshold=threshold)})
    return Bundle.create(manifest, bundle.model).save(folder / f"t{threshold:g}.inspector")


@pytest.mark.parametrize("threshold, verdict", [(0.0, Verdict.FAIL), (1.0, Verdict.PASS)])
def test_failed_results_say_where_and_the_archive_keeps_the_overlay(
    shared_broker, tmp_path, int8_bundle, part_images, threshold, verdict
):
    bundle = _bundle_with_threshold(int8_bundle, threshold, tmp_path)
    source = {"type": "folder", "path": str(part_images[0].parent)}
    cfg = station_config(shared_broker, tmp_path, bundle, source, overrides={"gate.enabled": False})
    rec = shared_broker.subscriber([f"inspector/edgetest/{cfg.station}/#"])
    assert StationThread(cfg).start().wait(120) == ExitCode.OK
    rec.wait_for(lambda r: [m.text for m in r.on("status")][-1:] == ["offline"], what="offline")
    results = [Result.model_validate(r) for r in rec.results()]
    rec.close()
    assert len(results) == len(part_images) and {r.verdict for r in results} == {verdict}
    if verdict == Verdict.PASS:
        assert all(r.where is None and r.image is None for r in results)  # nobody looks at a pass
        return

    clf = Classifier(Bundle.load(bundle))
    for path, result in zip(part_images, results):
        image = load_image(path)
        c = clf.classify(image, order="rgb")
        expected = locate(c.class_map, clf.labels, clf.good_index, clf.preprocessor.spec, image.shape).where()
        assert result.where == expected
        x, y, w, h = result.where.box
        assert 0 <= x < x + w <= image.shape[1] and 0 <= y < y + h <= image.shape[0]
        assert x <= result.where.x < x + w and y <= result.where.y < y + h
        sidecar = json.loads(Path(result.image).with_suffix(".json").read_text())
        assert sidecar["where"] == expected.model_dump(mode="json")
        overlay = Path(result.image).parent / sidecar["heatmap"]
        assert overlay == overlay_path(Path(result.image)) and load_image(overlay).shape == image.shape


def test_overlay_never_trains_as_a_part_image(tmp_path):
    archive = Archive(ArchiveConfig(path=tmp_path / "a", pass_every=1), "cam1")
    frame = Frame(np.full((64, 96, 3), 90, np.uint8), ChannelOrder.BGR, time.time(), 1, "img.png")
    heat = Heatmap("crack", np.array([[0.0, 3.0, 0.0]], np.float32), (96, 32), (0.0, 0.0, 96.0, 64.0))
    for seq, (verdict, cls) in enumerate([("pass", "good"), ("fail", "crack")], start=1):
        path = archive.reserve(Verdict(verdict), cls, seq, f"{seq:032x}", time.time())
        archive.submit(path, frame, {"seq": seq}, heat if verdict == "fail" else None)
    archive.close()
    failed = next(p for p in (tmp_path / "a" / "crack").rglob("*.png") if not p.name.startswith("."))
    assert json.loads(failed.with_suffix(".json").read_text()) == {"seq": 2, "heatmap": overlay_path(failed).name}
    assert overlay_path(failed).is_file() and overlay_path(failed).name.startswith(".")
    scan = scan_folder(tmp_path / "a", good_class="good")
    assert scan.counts() == {"crack": 1, "good": 1}
    assert all(s.path.endswith(".json") for s in scan.skipped)  # the sidecars, never the overlay
