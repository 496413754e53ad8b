"""The review page in a real headless Chromium: an archive written by a real station run, three frames
labeled by keyboard, one undone, and the files and sidecars on disk checked. Screenshots of each step are
saved under the test's tmp path (the path is printed; run with -s to see it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

# Skip before any fixture runs (the station run needs a trained model): nothing to drive without these.
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the dev extra)")
for _path in (CHROMIUM, CHROMEDRIVER):
    if not _path.is_file():
        pytest.skip(f"{_path} is missing (Debian: apt-get install chromium chromium-driver)", allow_module_level=True)

from tests.fixtures_edge import StationThread, station_config  # noqa: E402
from tests.test_review_store import Server  # noqa: E402


def _browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture
def station_archive(shared_broker, tmp_path, int8_bundle, synth_root) -> Path:
    """The archive of a real station run over six real parts (every frame archived: pass_every=1)."""
    parts = tmp_path / "parts"
    parts.mkdir()
    for i, src in enumerate(sorted(synth_root.glob("*/*.png"))[::16][:6]):
        shutil.copy(src, parts / f"{i:03d}_{src.parent.name}.png")
    cfg = station_config(
        shared_broker,
        tmp_path,
        int8_bundle,
        {"type": "folder", "path": str(parts)},
        station="review-cam",
        overrides={"archive.pass_every": 1},
    )
    assert StationThread(cfg).start().wait(120) == 0
    archive = Path(cfg.archive.path)
    assert len(list(archive.rglob("*.json"))) == 6
    return archive


def test_label_three_frames_by_keyboard_and_undo_one(station_archive, tmp_path, int8_bundle, trained_run):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from inspector.bundle import Bundle
    from inspector.config import validate
    from inspector.dataset import SplitManifest
    from inspector.fsutil import sha256_file
    from inspector.preprocess import Roi
    from review.config import ReviewConfig
    from review.store import SIDECAR_SUFFIX

    bundle = Bundle.load(int8_bundle)
    manifest = bundle.manifest
    roi = Roi(x=8, y=4, width=40, height=32)  # the stations' bundle, commissioned with a region of interest
    preprocess = manifest.preprocess.model_copy(update={"roi": roi})
    with_roi = Bundle(manifest.model_copy(update={"preprocess": preprocess}), bundle.model).save(
        tmp_path / "roi.inspector"
    )
    split = SplitManifest.load(trained_run / "split.json")
    data = tmp_path / "data"
    cfg = validate(
        ReviewConfig,
        {
            "data": data,
            "archives": [station_archive],
            "good_class": manifest.good_class,
            "run": trained_run,
            "bundle": with_roi,
            "user": "operator-7",
        },
    )
    shots = tmp_path / "screenshots"
    shots.mkdir()
    driver = _browser()
    try:
        with Server(cfg) as base:
            driver.get(base + "/")
            classes = [b.text.split(" ", 1)[1] for b in driver.find_elements(By.CSS_SELECTOR, "#labels button")]
            assert classes[0] == manifest.good_class and sorted(classes[1:]) == sorted(
                c for c in manifest.labels if c != manifest.good_class
            )
            assert "6 of 6 frames shown" in driver.find_element(By.TAG_NAME, "header").text
            assert driver.find_element(By.ID, "station").text.endswith("/review-cam")
            crop = driver.find_element(By.ID, "crop")
            WebDriverWait(driver, 20).until(lambda d: d.execute_script("return arguments[0].complete", crop))
            size = driver.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", crop)
            assert size == [roi.width, roi.height] and "ROI 8,4 40x32" in driver.page_source
            driver.save_screenshot(str(shots / "0-open.png"))

            chosen = {"1": classes[0], "2": classes[1], "3": classes[2]}
            labeled = []  # (frame image name, class) in labeling order
            for step, key in enumerate(["2", "1", "3"], start=1):
                frame = driver.find_element(By.ID, "frame")
                source = station_archive_path(driver)
                driver.find_element(By.TAG_NAME, "body").send_keys(key)
                WebDriverWait(driver, 20).until(lambda d, old=frame: _stale(old))
                note = driver.find_element(By.ID, "note").text
                assert source.name in note, note
                labeled.append((source, chosen[key]))
                driver.save_screenshot(str(shots / f"{step}-labeled-{chosen[key]}.png"))
            assert "3 of 6 frames shown" in driver.find_element(By.TAG_NAME, "header").text  # 3 left to label

            frame = driver.find_element(By.ID, "frame")
            driver.find_element(By.TAG_NAME, "body").send_keys("u")
            WebDriverWait(driver, 20).until(lambda d, old=frame: _stale(old))
            assert "undone" in driver.find_element(By.ID, "note").text
            assert station_archive_path(driver) == labeled[-1][0]  # back on the frame whose label was undone
            driver.save_screenshot(str(shots / "4-undone.png"))
            header = driver.find_element(By.TAG_NAME, "header").text
            assert "4 of 6 frames shown" in header
            trained = {(s.label, s.sha256) for part in split.splits.values() for s in part}
            for source, cls in labeled[:2]:  # new unless the run trained on these very bytes in that class
                gained = int((cls, sha256_file(source)) not in trained)
                assert f"{cls} 1 (+{gained})" in header, header
    finally:
        driver.quit()
    print(f"\nreview page screenshots: {shots}")
    assert sorted(p.name for p in shots.iterdir()) == [
        "0-open.png",
        f"1-labeled-{classes[1]}.png",
        f"2-labeled-{classes[0]}.png",
        f"3-labeled-{classes[2]}.png",
        "4-undone.png",
    ]

    files = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file())
    expected = []
    for source, cls in labeled[:2]:
        expected += [f"{cls}/{source.name}", f"{cls}/{source.name}{SIDECAR_SUFFIX}"]
    assert files == sorted(expected)  # the undone label left nothing behind, nothing else was written
    for source, cls in labeled[:2]:
        copy = data / cls / source.name
        assert copy.read_bytes() == source.read_bytes() and source.is_file()
        archived = json.loads(source.with_suffix(".json").read_text())
        side = json.loads((data / cls / (source.name + SIDECAR_SUFFIX)).read_text())
        assert side["label"] == cls and side["labeled_by"] == "operator-7"
        assert (side["station"], side["line"]) == ("review-cam", "edgetest")
        assert side["captured_at"] == archived["captured_at"] and side["result_id"] == archived["id"]
        assert (side["bundle_name"], side["bundle_version"]) == (manifest.name, manifest.version)
        assert side["bundle_sha256"] == manifest.model_sha256[:12]
        assert side["model_verdict"] == archived["verdict"] and side["defect_score"] == archived["defect_score"]
        assert side["source_image"] == str(source)
    assert not (data / labeled[2][1] / labeled[2][0].name).exists()
    assert labeled[2][0].is_file()  # the archive keeps its frame


def station_archive_path(driver) -> Path:
    """The archived image the page shows now (the metadata table prints its path)."""
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, "#meta tr")
    return Path(next(r for r in rows if r.text.startswith("file")).text.split(" ", 1)[1])


def _stale(element) -> bool:
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        element.is_enabled()
        return False
    except StaleElementReferenceException:
        return True
