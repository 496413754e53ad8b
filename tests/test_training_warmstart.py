"""Warm start (``inspector train --init-from``): split continuity, adopted settings, weights, comparison, and the
retrained run's bundle reloaded on a running station."""

import json
import shutil

import numpy as np
import pytest

from inspector.dataset import extend_split, make_split, scan_folder
from inspector.synth import generate
from tests.fixtures_model import small_config


def _split_of(manifest):
    return {s.sha256: (name, s.label) for name, samples in manifest.splits.items() for s in samples}


def test_extend_split_keeps_every_previous_image_in_its_split(tmp_path):
    root = tmp_path / "data"
    generate(root, per_class=12, size=(32, 32), seed=3)
    before = make_split(scan_folder(root), seed=0)
    # The loop: one image moved to another class (a relabel), new images, a new class.
    moved = before.splits["train"][0]
    target = next(c for c in before.classes if c != moved.label)
    shutil.move(str(root / moved.path), str(root / target / ("relabeled_" + moved.path.split("/")[-1])))
    generate(tmp_path / "more", per_class=6, size=(32, 32), seed=9)
    for folder in (tmp_path / "more").iterdir():
        dest = root / ("dent" if folder.name == "good" else folder.name)
        dest.mkdir(exist_ok=True)
        for f in folder.iterdir():
            shutil.copy(f, dest / ("new_" + f.name))

    after = extend_split(before, scan_folder(root), seed=5)

    old, new = _split_of(before), _split_of(after)
    for digest, (split, _) in old.items():
        assert new[digest][0] == split, "an image of the previous run changed split"
    assert new[moved.sha256] == ("train", target), "a relabeled image keeps its split and takes its new label"
    added = [d for d in new if d not in old]
    assert len(added) == len(scan_folder(root).samples) - len(old)
    assert {new[d][0] for d in added} == {"train", "val", "test"}, "new images are split, not all put in train"
    assert "dent" in after.classes and any(new[d][1] == "dent" and new[d][0] == "test" for d in added)


def test_adopt_takes_the_previous_view_and_names_a_conflicting_key(trained_run, synth_root):
    from training.warmstart import PreviousRun, WarmStartError, adopt

    previous = PreviousRun.load(trained_run)
    config = small_config(synth_root, model={"input_size": "auto", "alpha": 1.0, "minimalistic": False})
    adopted = adopt(config, previous, lambda _: None)
    assert adopted.model.input_size == tuple(previous.config.model.input_size)
    assert (adopted.model.alpha, adopted.model.minimalistic) == (0.75, True)
    assert adopted.data.grayscale == previous.config.data.grayscale
    with pytest.raises(WarmStartError, match="model.input_size"):
        adopt(small_config(synth_root, model={"input_size": [96, 96]}), previous, lambda _: None)
    with pytest.raises(WarmStartError, match="model.backbone"):
        adopt(small_config(synth_root, model={"backbone": "large"}), previous, lambda _: None)
    with pytest.raises(WarmStartError, match="no model.keras"):
        PreviousRun.load(synth_root)


def test_epochs_option_sets_the_warm_start_stage(trained_run, synth_root):
    import argparse

    from training.cli import add_arguments, build_config

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([str(synth_root), "--out", "x", "--init-from", str(trained_run), "--epochs", "3"])
    assert build_config(args).warm_start.epochs == 3


def test_transfer_weights_keeps_known_classes_and_adds_new_ones(trained_run):
    from training.model import build_model
    from training.warmstart import PreviousRun, load_previous_model, transfer_weights

    previous = PreviousRun.load(trained_run)
    old = load_previous_model(previous)
    labels = list(reversed(previous.manifest.labels)) + ["dent"]
    model = build_model(previous.config.model, len(labels), init_weights=False)
    fresh = transfer_weights(model, old, labels, previous.manifest.labels)
    assert fresh == ["dent"]
    for a, b in zip(model.get_layer("backbone").get_weights(), old.get_layer("backbone").get_weights()):
        np.testing.assert_array_equal(a, b)
    kernel, bias = model.get_layer("logits").get_weights()
    old_kernel, old_bias = old.get_layer("logits").get_weights()
    for i, label in enumerate(labels[:-1]):
        j = previous.manifest.labels.index(label)
        np.testing.assert_array_equal(kernel[:, i], old_kernel[:, j])
        assert bias[i] == old_bias[j]


@pytest.fixture(scope="module")
def warm_run(trained_run, synth_root, tmp_path_factory):
    """:class:`training.trainer.RunResult` of ``trained_run`` warm-started (one epoch) after adding the class ``dent``.

    Module-scoped: the tests that look at the run and the one that deploys it share one training.
    """
    from training.trainer import train

    work = tmp_path_factory.mktemp("warm")
    root = work / "data"
    shutil.copytree(synth_root, root)
    generate(work / "more", per_class=6, size=(64, 64), seed=11)
    (root / "dent").mkdir()
    for f in (work / "more" / "scratch").iterdir():
        shutil.copy(f, root / "dent" / f.name)
    config = small_config(root, optim={"epochs": 1}, warm_start={"run": str(trained_run), "epochs": 1})
    return train(config, work / "run2")


@pytest.mark.slow
def test_init_from_trains_compares_and_keeps_the_old_training_images_out_of_test(trained_run, warm_run):
    from inspector.dataset import SplitManifest
    from inspector.runfolder import RunFolder, RunManifest

    run_dir = warm_run.run_dir
    manifest = RunManifest.load(RunFolder(run_dir))
    assert manifest.init_from == str(trained_run.resolve())
    assert "dent" in manifest.labels
    old_train = {s.sha256 for s in SplitManifest.load(trained_run / "split.json").splits["train"]}
    new_test = {s.sha256 for s in SplitManifest.load(run_dir / "split.json").splits["test"]}
    assert not old_train & new_test
    comparison = json.loads((run_dir / "metrics.json").read_text())["warm_start"]
    assert comparison["images"] == len(new_test)
    assert set(comparison["old"]) == {"threshold", "escapes", "false_rejects", "review"}
    for change in comparison["changed"]:
        assert change["old"] != change["new"]
    assert "Compared with the previous model" in (run_dir / "report.html").read_text()
    assert warm_run.history and {h["stage"] for h in warm_run.history} == {"full"}


@pytest.mark.slow
def test_warm_started_bundle_with_a_new_class_reloads_on_a_running_station(
    warm_run, int8_bundle, shared_broker, synth_root, tmp_path
):
    """The loop of issue 14 end to end: a class added, warm-start retrain, INT8 bundle, ``inspector send reload``
    to a running station, which then runs the new bundle. Nothing here depends on what the tiny model predicts."""
    from app.commands import send
    from calibration.calibrate import calibrate
    from inspector.bundle import Bundle
    from inspector.exitcodes import ExitCode
    from inspector.protocol.enums import EventType
    from tests.fixtures_bundle import fixture_options
    from tests.fixtures_edge import StationThread, send_args, station_config

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(int8_bundle, models / "old.inspector")
    # force: the one-epoch run is NOT DEPLOYABLE by design, as the session bundle's run is.
    new = calibrate(warm_run.run_dir, models / "dent.inspector", fixture_options(version="warm-dent")).bundle
    old = Bundle.load(models / "old.inspector").manifest
    assert new is not None and "dent" in new.manifest.labels and "dent" not in old.labels
    new_ref = {"name": new.manifest.name, "version": "warm-dent", "sha256": new.manifest.model_sha256[:12]}
    assert new_ref["sha256"] != old.model_sha256[:12]

    source = {"type": "folder", "path": str(synth_root / "good"), "loop": True, "fps": 20}
    cfg = station_config(shared_broker, tmp_path, models / "old.inspector", source)
    rec = shared_broker.subscriber([f"inspector/edgetest/{cfg.station}/#"])
    station = StationThread(cfg).start()
    try:
        rec.wait_for(lambda r: r.results(), what="first results")
        first = rec.results()[0]
        assert first["model"]["sha256"] == old.model_sha256[:12] and set(first["scores"]) == set(old.labels)
        assert station.station.publisher.cmd_subscribed.wait(20)

        assert send.run(send_args(shared_broker, cfg.station, "reload", "dent.inspector")) == send.EXIT_APPLIED

        rec.wait_for(lambda r: r.events(EventType.MODEL_RELOADED.value), what="model_reloaded")
        (reloaded,) = rec.events(EventType.MODEL_RELOADED.value)
        assert reloaded["details"]["after"] == new_ref
        rec.wait_for(lambda r: any(x["model"] == new_ref for x in r.results()), what="results of the new bundle")
        after = [x for x in rec.results() if x["model"] == new_ref]
        assert all(set(x["scores"]) == set(new.manifest.labels) for x in after)
        rec.wait_for(
            lambda r: any(m.json()["model_version"] == "warm-dent" for m in r.on("stats")), what="stats of warm-dent"
        )
    finally:
        rec.close()
        assert station.stop() == ExitCode.OK
