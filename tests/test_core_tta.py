"""Flip averaging and tiled inference: the bundle's ``inference`` section, applied by ``Classifier`` alone,
gives the same decision in the station, ``inspector evaluate`` and ``inspector predict``; old manifests
load with both off. Real INT8 bundle (``int8_bundle``) with its inference section rewritten, real images."""

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from inspector.bundle import Bundle, BundleError, FlipAveraging, InferenceSpec, TilingSpec
from inspector.decision import defect_score
from inspector.exitcodes import ExitCode
from inspector.imageio import load_image
from inspector.inference import Classifier, flip_views, tile_origins
from inspector.synth import generate
from tests.fixtures_edge import StationThread, station_config
from tests.test_core_bundle import make_bundle


def with_inference(path: Path, out: Path, **inference) -> Path:
    """The bundle at ``path`` with another inference section (same model bytes)."""
    bundle = Bundle.load(path)
    manifest = bundle.manifest.model_copy(update={"inference": InferenceSpec(**inference)})
    return Bundle.create(manifest, bundle.model).save(out)


@pytest.fixture(scope="module")
def large_parts(tmp_path_factory) -> Path:
    """Synthetic parts at 96x160 (larger than the fixture model's 64x64 input): DATA/<class>/*.png."""
    root = tmp_path_factory.mktemp("large")
    generate(root, per_class=2, size=(96, 160), seed=7)
    return root


def test_flip_views_are_the_mirror_images():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert len(flip_views(image, "none")) == 1
    original, mirrored = flip_views(image, FlipAveraging.HFLIP)
    assert np.array_equal(original, image) and np.array_equal(mirrored, image[:, ::-1])
    assert np.array_equal(flip_views(image, "vflip")[1], image[::-1])
    views = flip_views(np.stack([image, image + 1]), "hvflip")  # a batch flips each image
    assert [v.shape for v in views] == [(2, 2, 3, 3)] * 4
    assert np.array_equal(views[3][1], (image + 1)[::-1, ::-1])


@pytest.mark.parametrize("tta", ["hflip", "vflip", "hvflip"])
def test_flip_averaging_of_a_symmetric_image_equals_one_view(int8_bundle, tta):
    rng = np.random.default_rng(3)
    quarter = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    half = np.concatenate([quarter, quarter[:, ::-1]], axis=1)
    symmetric = np.concatenate([half, half[::-1]], axis=0)  # left-right and top-bottom symmetric
    bundle = Bundle.load(int8_bundle)
    plain = Classifier(bundle, threads=1).probabilities(symmetric)
    assert np.array_equal(
        Classifier(bundle, threads=1, inference=InferenceSpec(tta=tta)).probabilities(symmetric), plain
    )


def test_flip_averaging_is_the_mean_over_the_views(int8_bundle, synth_root):
    bundle = Bundle.load(int8_bundle)
    plain = Classifier(bundle, threads=1)
    averaged = Classifier(bundle, threads=1, inference=InferenceSpec(tta="hvflip"))
    image = plain.preprocessor.prepare(load_image(sorted((synth_root / "scratch").glob("*.png"))[0]))
    expected = np.mean([plain.probabilities(v) for v in flip_views(image, "hvflip")], axis=0)
    assert np.allclose(averaged.probabilities(image), expected, atol=1e-7)
    batch = averaged.predict_batch(np.stack([image, image[:, ::-1]]))
    assert np.allclose(batch[0], expected, atol=1e-7) and np.allclose(batch[1], batch[0], atol=1e-6)


@pytest.mark.parametrize(
    ("length", "tile", "overlap"), [(64, 64, 0.25), (160, 64, 0.25), (96, 64, 0.0), (500, 64, 0.5)]
)
def test_tiles_cover_the_region_with_the_overlap(length, tile, overlap):
    starts = tile_origins(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] == max(0, length - tile)
    steps = np.diff(starts)
    assert (steps > 0).all() and (steps <= tile * (1 - overlap) + 1).all()


def test_tiled_score_is_the_worst_tile(int8_bundle, tmp_path, large_parts):
    tiled = Classifier(Bundle.load(with_inference(int8_bundle, tmp_path / "t.inspector", tiling=TilingSpec())))
    plain = Classifier(Bundle.load(int8_bundle))
    frame = load_image(sorted((large_parts / "scratch").glob("*.png"))[0])  # 96x160 RGB
    tiles = tiled.tiles(frame, "rgb")
    assert len(tiles) == len(tile_origins(96, 64, 0.25)) * len(tile_origins(160, 64, 0.25))
    assert np.array_equal(tiles[0], frame[:64, :64]) and np.array_equal(tiles[-1], frame[-64:, -64:])  # native pixels
    per_tile = [plain.classify_prepared(t) for t in tiles]
    worst = max(per_tile, key=lambda c: c.defect_score)
    got = tiled.classify(frame[:, :, ::-1], order="bgr")  # a camera frame: same tiles, same score
    assert got.defect_score == pytest.approx(worst.defect_score, abs=1e-7)
    assert got.top_class == worst.top_class and got.scores == pytest.approx(worst.scores, abs=1e-7)
    with pytest.raises(ValueError, match="tiles"):
        tiled.predict_batch(tiles)  # the prepared whole frame is not enough
    assert tiled.tiles(frame[:40, :40], "rgb").shape == (1, 64, 64, 3)  # smaller than a tile: enlarged to one
    assert tiled.tiles(frame[:40, :50], "rgb").shape == (2, 64, 64, 3)  # enlarged to 64x80, aspect kept


def test_old_manifest_loads_with_inference_off(tmp_path):
    path = make_bundle().save(tmp_path / "old.inspector")
    with zipfile.ZipFile(path) as zf:
        raw, model = json.loads(zf.read("manifest.json")), zf.read("model.tflite")
    raw["schema_version"] = 1
    del raw["inference"]  # what a bundle of schema 1 holds
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.json", json.dumps(raw))
        zf.writestr("model.tflite", model)
    loaded = Bundle.load(path)
    assert loaded.manifest.inference == InferenceSpec()
    assert loaded.manifest.inference.tta == FlipAveraging.NONE and loaded.manifest.inference.tiling is None
    assert loaded.manifest.schema_version == 2
    raw["inference"] = {"tta": "sideways"}
    raw["schema_version"] = 2
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.json", json.dumps(raw))
        zf.writestr("model.tflite", model)
    with pytest.raises(BundleError, match="inference.tta"):
        Bundle.load(path)


@pytest.mark.parametrize(
    "inference", [{"tta": "hflip"}, {"tta": "hvflip", "tiling": {"overlap": 0.5}}], ids=["hflip", "hvflip-tiles"]
)
def test_station_decides_like_evaluate(shared_broker, tmp_path, int8_bundle, large_parts, inference):
    from calibration.evaluate import evaluate_bundle
    from inspector.protocol.payloads import Result

    bundle = with_inference(int8_bundle, tmp_path / "b.inspector", **inference)
    flat = tmp_path / "frames"
    flat.mkdir()
    for src in sorted(large_parts.glob("*/*.png")):
        shutil.copy(src, flat / src.name)
    evaluation = evaluate_bundle(bundle, large_parts)
    expected = {Path(p).name: probs for p, probs in zip(evaluation.paths, evaluation.probs)}
    cfg = station_config(
        shared_broker, tmp_path, bundle, {"type": "folder", "path": str(flat)}, overrides={"gate.enabled": False}
    )
    rec = shared_broker.subscriber([f"inspector/edgetest/{cfg.station}/result"])
    assert StationThread(cfg).start().wait(120) == ExitCode.OK
    rec.wait_for(lambda r: len(r.results()) == len(expected), what="one result per frame")
    manifest = Bundle.load(bundle).manifest
    for payload in rec.results():
        result = Result.model_validate(payload)
        probs = expected[result.frame]
        score = float(defect_score(probs, manifest.good_index))
        assert result.defect_score == pytest.approx(score, abs=1e-5)
        assert result.verdict == manifest.decision.decide(score)
        assert result.top_class == manifest.labels[int(np.argmax(probs))]
    rec.close()


def test_predict_decides_like_evaluate(tmp_path, int8_bundle, large_parts):
    from calibration.evaluate import evaluate_bundle
    from inspector.inspection import bundle_gate, decide_frame

    bundle = with_inference(int8_bundle, tmp_path / "b.inspector", tta="vflip", tiling={"overlap": 0.25})
    evaluation = evaluate_bundle(bundle, large_parts)
    clf = Classifier(Bundle.load(bundle))
    for path, probs in zip(evaluation.paths, evaluation.probs):
        image = load_image(large_parts / path)
        decision = decide_frame(
            clf, bundle_gate(clf.bundle.manifest), clf.preprocessor.prepare(image), image, order="rgb"
        )
        assert decision.classification.defect_score == pytest.approx(
            float(defect_score(probs, clf.good_index)), abs=1e-6
        )


@pytest.mark.slow
def test_calibrate_chooses_the_threshold_on_the_flip_averaged_scores(trained_run):
    from calibration.calibrate import RunInfo, calibrate
    from inspector.operating_point import choose_policy
    from tests.fixtures_bundle import fixture_options

    result = calibrate(trained_run, None, fixture_options(tta="hvflip"))
    bundle = result.bundle
    assert bundle.manifest.inference == InferenceSpec(tta="hvflip")
    trials = bundle.manifest.metrics["inference"]["trials"]
    assert [t["inference"]["tta"] for t in trials] == ["none", "hvflip"]  # the plain variant for comparison
    clf = Classifier(bundle, threads=1)
    val_probs = clf.predict_batch(result.val.images)
    assert np.allclose(val_probs, result.chosen.val_probs, atol=1e-7)  # the scores the station computes
    assert np.allclose(clf.predict_batch(result.test.images), result.test_probs, atol=1e-7)
    run = RunInfo.load(trained_run).manifest
    good = bundle.manifest.good_index
    line = result.options.line
    expected = choose_policy(
        defect_score(val_probs, good),
        result.val.labels != good,
        run.operating_point.target,
        run.operating_point.target_rate,
        0.0,
        line.max_false_reject_rate,
        line.max_review_rate,
        line.max_escape_rate,
    ).policy
    assert bundle.manifest.decision == expected
    assert "training run's target" in result.chosen.operating_point.note


def _trial(tta, escapes, auc, ms):
    from calibration.inference_choice import InferenceTrial

    return InferenceTrial(InferenceSpec(tta=tta), np.zeros((0, 2)), None, auc, escapes, 0.05, ms, 0.0)


def test_auto_turns_flip_averaging_on_only_when_it_helps():
    from calibration.inference_choice import choose

    plain = InferenceSpec()
    worse = [_trial("none", 2, 0.95, 1.0), _trial("hflip", 2, 0.951, 2.0), _trial("hvflip", 3, 0.97, 4.0)]
    assert choose(worse, plain, auto=True).inference == plain  # AUC within noise, or more escapes
    better = [_trial("none", 2, 0.95, 1.0), _trial("hflip", 1, 0.96, 2.0), _trial("hvflip", 1, 0.96, 4.0)]
    assert choose(better, plain, auto=True).inference.tta == FlipAveraging.HFLIP  # as good, cheaper
    assert choose(better, plain, auto=False).inference == plain
    assert choose(worse[:1] + [_trial("vflip", 2, 0.96, 2.0)], plain, auto=True).inference.tta == "vflip"


def test_calibrate_options_for_flip_averaging_and_tiles():
    import argparse

    from calibration.calibrate import CalibrationOptions
    from calibration.cli import _options, add_arguments
    from calibration.inference_choice import FlipChoice, TilingChoice
    from inspector.config import ConfigError

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    options = _options(parser.parse_args(["run", "--out", "m.inspector", "--tta", "hflip", "--tiles", "on"]))
    assert (options.tta, options.tiles, options.tile_overlap) == (FlipChoice.HFLIP, TilingChoice.ON, 0.25)
    assert _options(parser.parse_args(["run", "--out", "m.inspector"])).tta == FlipChoice.AUTO  # by default
    assert CalibrationOptions().tta == FlipChoice.AUTO  # the Python API decides as the command does
    with pytest.raises(ConfigError, match="tile_overlap"):
        _options(parser.parse_args(["run", "--out", "m.inspector", "--tile-overlap", "0.9"]))
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--tta", "rotate"])
