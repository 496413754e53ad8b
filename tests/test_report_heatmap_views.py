"""Report heatmaps show the map the station locates (``reporting.heatmap_overlay`` through
``Classifier.classify`` and ``Classifier.locate``): with flip averaging the views' maps mirrored back and
averaged, with tiles the deciding tile's, not the plain single view. Real INT8 bundle (``int8_bundle``)
with its inference section rewritten, real images; the station's overlay is what the archive renders
(``render_overlay`` of the station's heatmap), cut to the region of interest as the report's crop."""

import re
import shutil

import numpy as np
import pytest

from inspector import reporting
from inspector.bundle import Bundle, InferenceSpec, TilingSpec
from inspector.imageio import load_image
from inspector.inference import Classifier, mirror
from inspector.localization import render_overlay
from inspector.preprocess import ChannelOrder
from inspector.reporting.gallery import png_data_url
from inspector.synth import DEFECTS, render
from tests.test_core_tta_where import rewritten


def station_overlay(clf: Classifier, frame: np.ndarray) -> np.ndarray:
    """The archive's overlay of the station's heatmap for ``frame`` (RGB), cut to the region of interest."""
    heat = clf.locate(clf.classify(frame, ChannelOrder.RGB), frame.shape)
    assert heat is not None
    return clf.preprocessor.crop(render_overlay(frame, heat))


def defect_frames(synth_root, count=6):
    return [load_image(path) for label in DEFECTS for path in sorted((synth_root / label).glob("*.png"))[:count]]


def views_averaged_overlay(clf: Classifier, frame: np.ndarray) -> np.ndarray:
    """The flip views' maps worked out here from the plain view's model: each view of the model input run
    alone, its map mirrored back, the maps averaged, drawn with the views' cell placement."""
    plain = Classifier(clf.bundle, threads=1, inference=InferenceSpec())
    prepared = clf.preprocessor.prepare(frame, ChannelOrder.RGB)
    maps = []
    for rows, columns in clf.views:
        view = np.ascontiguousarray(mirror(prepared, rows, columns))
        maps.append(mirror(plain.classify_prepared(view).class_map, rows, columns))
    averaged = np.stack(maps).mean(axis=0, dtype=np.float32)
    spec = clf.preprocessor.spec
    return reporting.render_heatmap(frame, averaged, clf.labels, clf.good_index, spec, views=clf.views)


@pytest.mark.parametrize("tta", ["hflip", "hvflip"])
def test_flip_averaged_bundle_heatmap_is_the_stations(int8_bundle, synth_root, tta):
    """The report draws the station's map, and that map is the views' average (worked out independently),
    not the plain view's: whatever the weights, so no assumption about what the shared model learned."""
    clf = Classifier(Bundle.load(int8_bundle), threads=1, inference=InferenceSpec(tta=tta))
    assert len(clf.views) == (2 if tta == "hflip" else 4)
    for frame in defect_frames(synth_root):
        drawn = reporting.heatmap_overlay(clf, frame)
        assert drawn is not None and np.array_equal(drawn, station_overlay(clf, frame))
        assert np.array_equal(drawn, views_averaged_overlay(clf, frame))
        prepared = clf.preprocessor.prepare(frame, ChannelOrder.RGB)
        on_input = reporting.heatmap_overlay(clf, prepared, model_input=True)
        expected = reporting.render_heatmap(
            prepared, clf.classify_prepared(prepared).class_map, clf.labels, clf.good_index, views=clf.views
        )
        assert on_input is not None and np.array_equal(on_input, expected)


def test_tiled_bundle_heatmap_is_the_deciding_tiles(int8_bundle):
    """Frames larger than the 64x64 input: the overlay is the deciding tile's map placed in its window; a
    prepared model input has no tiles, so it is refused rather than drawn from another map."""
    clf = Classifier(Bundle.load(int8_bundle), threads=1, inference=InferenceSpec(tta="hflip", tiling=TilingSpec()))
    rng = np.random.default_rng(4)
    for label in DEFECTS:
        frame = render(rng, label, (160, 96))
        c = clf.classify(frame, ChannelOrder.RGB)
        assert c.map_window is not None and c.map_window != (0.0, 0.0, 1.0, 1.0)
        drawn = reporting.heatmap_overlay(clf, frame)
        assert drawn is not None and drawn.shape == frame.shape
        assert np.array_equal(drawn, station_overlay(clf, frame))
        whole = reporting.render_heatmap(frame, c.class_map, clf.labels, clf.good_index, clf.preprocessor.spec)
        assert not np.array_equal(drawn, whole)  # the tile's map over the whole frame would be elsewhere
    with pytest.raises(ValueError, match="tiles"):
        reporting.heatmap_overlay(clf, clf.preprocessor.prepare(frame, ChannelOrder.RGB), model_input=True)


def test_calibration_report_shows_a_tiled_bundles_mistakes_from_the_files(int8_bundle, calibrated):
    from calibration.report import _shown

    tiled = Classifier(Bundle.load(int8_bundle), threads=1, inference=InferenceSpec(tiling=TilingSpec()))
    image = _shown(tiled, calibrated.test, calibrated.root)
    for i in range(3):
        frame = load_image(calibrated.root / calibrated.test.paths[i])
        crop, overlay = image(i)
        assert np.array_equal(crop, tiled.preprocessor.crop(frame))
        assert overlay is not None and np.array_equal(overlay, station_overlay(tiled, frame))
    flipped = Classifier(Bundle.load(int8_bundle), threads=1, inference=InferenceSpec(tta="hflip"))
    crop, overlay = _shown(flipped, calibrated.test, calibrated.root)(0)
    prepared = calibrated.test.images[0]
    assert np.array_equal(crop, prepared)
    expected = reporting.render_heatmap(
        prepared, flipped.classify_prepared(prepared).class_map, flipped.labels, flipped.good_index, views=flipped.views
    )
    assert overlay is not None and np.array_equal(overlay, expected)


def test_evaluation_report_draws_the_flip_averaged_map(int8_bundle, synth_root, tmp_path):
    """The evaluation report of a flip-averaging bundle embeds the station's overlay beside each mistake.

    Threshold 0 fails every part, so every good image is a false reject: the report has mistakes to show
    whatever the shared near-chance model scores (it once had none, and the test failed 1 run in 5).
    """
    from calibration.evaluate import evaluate_bundle
    from calibration.report import write_evaluation_report

    bundle = rewritten(int8_bundle, tmp_path / "hflip.inspector", threshold=0.0, tta="hflip")
    data = tmp_path / "data"
    shutil.copytree(synth_root, data)
    evaluation = evaluate_bundle(bundle, data)
    manifest = Bundle.load(bundle).manifest
    page, _ = write_evaluation_report(evaluation, manifest.good_index, manifest.decision, tmp_path / "r", "Eval")
    shown = re.findall(r'<img src="(data:image/png;base64,[^"]+)" alt="([^"]+) heatmap"', page.read_text())
    assert shown
    clf = Classifier(Bundle.load(bundle), threads=1)
    for url, name in shown:
        assert url == png_data_url(station_overlay(clf, load_image(data / name)))
