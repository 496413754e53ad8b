"""training.trainer: the two-stage path from a local weights file, frozen layers, resume, run folder rules."""

import json

import numpy as np
import pytest

from tests.fixtures_model import small_config

pytestmark = pytest.mark.slow

UNFREEZE = 10
HEAD_LR = 1e-2


class Interrupt(Exception):
    pass


def _stop_after_first_epoch():
    import keras

    class StopOnce(keras.callbacks.Callback):
        calls = 0

        def on_epoch_end(self, epoch, logs=None):
            StopOnce.calls += 1
            if StopOnce.calls == 1:
                raise Interrupt()

    return StopOnce()


def _backbone_weights(ckpt, source_cfg):
    """Per-layer backbone weights of the last checkpoint, loaded into a fresh model of the run's config."""
    from training.model import backbone_of, build_model

    model = build_model(source_cfg, num_classes=5, init_weights=False)
    ckpt.restore_weights(model)
    return {l.name: l.get_weights() for l in backbone_of(model).layers if l.weights}


def test_two_stage_from_local_weights_with_resume(synth_root, tmp_path):
    import keras

    from training.checkpoints import Checkpoints
    from training.trainer import load_run_config, train

    source = keras.applications.MobileNetV3Small(
        input_shape=(64, 64, 3), alpha=0.75, minimalistic=True, include_top=False, weights=None
    )
    # Give the source "pretrained" BN statistics that differ from init, so frozen BN is observable.
    for layer in source.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_variance.assign(np.full(layer.moving_variance.shape, 2.0, np.float32))
    weights_file = tmp_path / "backbone.weights.h5"
    source.save_weights(weights_file)
    original = {l.name: l.get_weights() for l in source.layers if l.weights}

    config = small_config(
        synth_root,
        model={"weights": str(weights_file)},
        optim={"steps_per_epoch": 2, "warmup_epochs": 0.0, "min_lr_ratio": 0.0},
        finetune={
            "head_epochs": 2,
            "head_learning_rate": HEAD_LR,
            "epochs": 1,
            "learning_rate": 1e-3,
            "unfreeze_layers": UNFREEZE,
        },
        early_stopping={"patience": 5},
        runtime={"tensorboard": True},
    )
    run_dir = tmp_path / "run"
    with pytest.raises(Interrupt):
        train(config, run_dir, callbacks=[_stop_after_first_epoch()])
    assert not (run_dir / "run.json").exists()
    ckpt = Checkpoints(run_dir / "checkpoints")
    state = ckpt.load_state()
    assert (state["stage_index"], state["epoch"], state["stage_done"]) == (0, 1, False)
    # Stage 1 (head) left the whole backbone untouched, BatchNorm statistics included.
    after_head = _backbone_weights(ckpt, config.model)
    for name, values in original.items():
        for a, b in zip(values, after_head[name]):
            np.testing.assert_array_equal(a, b, err_msg=name)

    result = train(load_run_config(run_dir), run_dir, resume=True)
    history = result.history
    assert [(h["stage"], h["epoch"]) for h in history] == [("head", 1), ("head", 2), ("finetune", 1)]
    assert history[0] == state["history"][0]  # the first session's epoch is kept, not re-run
    # The optimizer state was restored: the cosine schedule continued from step 2 (lr 0.5 * peak) to step 4 (0).
    assert history[0]["learning_rate"] == pytest.approx(0.5 * HEAD_LR, rel=1e-4)
    assert history[1]["learning_rate"] == pytest.approx(0.0, abs=1e-9)

    # Stage 2 trained exactly the top UNFREEZE layers (BatchNorm excluded); lower layers are as loaded.
    import training.model  # noqa: F401

    final = keras.models.load_model(run_dir / "model.keras")
    layers = final.get_layer("backbone").layers
    top = {l.name for l in layers[-UNFREEZE:] if not isinstance(l, keras.layers.BatchNormalization)}
    changed = set()
    for layer in layers:
        if layer.weights and any(not np.array_equal(a, b) for a, b in zip(original[layer.name], layer.get_weights())):
            changed.add(layer.name)
    assert changed and changed <= top

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["training"]["stages"] == ["head", "finetune"]
    assert list((run_dir / "tensorboard" / "finetune").rglob("events.out.tfevents.*"))
    assert json.loads((run_dir / "run.json").read_text())["weights"] == str(weights_file)


def test_refuses_to_overwrite_a_run(synth_root, tmp_path):
    from training.trainer import RunError, train

    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "run.json").write_text("{}")
    with pytest.raises(RunError, match="not empty"):
        train(small_config(synth_root), tmp_path / "old")
    with pytest.raises(RunError, match="nothing to resume"):
        train(small_config(synth_root), tmp_path / "empty", resume=True)


def test_missing_weights_file_fails_before_training_and_the_retry_starts_over(synth_root, tmp_path):
    from training.model import WeightsError
    from training.trainer import train

    with pytest.raises(WeightsError, match="not found"):
        train(small_config(synth_root, model={"weights": str(tmp_path / "missing.h5")}), tmp_path / "run")
    assert (tmp_path / "run" / "config.json").is_file()  # what the failed run wrote before the error
    with pytest.raises(WeightsError, match="not found"):  # the retry is not refused as "not empty"
        train(small_config(synth_root, model={"weights": str(tmp_path / "missing.h5")}), tmp_path / "run")


MIRRORED_SCRIPT = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tests.fixtures_model import small_config
from training.trainer import train
config = small_config(sys.argv[1], runtime={"strategy": "mirrored", "devices": ["/cpu:0", "/cpu:1"]},
                      optim={"epochs": 1, "steps_per_epoch": 2, "batch_size": 4})
result = train(config, sys.argv[2])
print("RESULT", json.dumps({"samples": result.metrics["test"]["samples"]}))
"""


def test_mirrored_strategy_over_two_devices(synth_root, tmp_path):
    """The trainer does not assume one device: two logical CPUs, two replicas, batch 4 each."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(synth_root), str(tmp_path / "run")],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "steps of 8 images (2 replica(s))" in out.stdout
    assert (tmp_path / "run" / "run.json").is_file() and (tmp_path / "run" / "model.keras").is_file()


MULTI_WORKER_SCRIPT = """
import json, os, sys
from tests.fixtures_model import small_config
from training.trainer import train
config = small_config(sys.argv[1], runtime={"strategy": "multi_worker", "run_eagerly": False},
                      optim={"epochs": 1, "steps_per_epoch": 2, "batch_size": 4})
train(config, sys.argv[2])
"""


def test_multi_worker_training_with_the_keras_workarounds(synth_root, tmp_path):
    """Two worker processes on this machine (TF_CONFIG): they train in step and the chief writes the run.

    Without ``training.runtime.keras_multi_worker_fixes`` Keras 3's fit() fails under
    MultiWorkerMirroredStrategy (keras-team/keras#20585); this keeps the workaround honest (with the
    workaround replaced by a no-op, both workers fail converting a PerReplica batch). Graph mode, as in
    production: that is where the failure was seen.
    """
    import json
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("localhost", 0))
            ports.append(s.getsockname()[1])
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    repo = Path(__file__).resolve().parents[1]
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", MULTI_WORKER_SCRIPT, str(synth_root), str(tmp_path / "run")],
                cwd=repo,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=400) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    assert "(2 replica(s))" in outputs[0][0]
    assert (tmp_path / "run" / "run.json").is_file()


def test_ema_of_the_weights_is_validated_saved_and_resumed(synth_root, tmp_path):
    """With optim.ema the averaged weights are what each epoch is scored on and what the best checkpoint
    holds; a run interrupted after epoch 1 resumes with the averages and the raw weights in their places."""
    import keras

    import training.model  # noqa: F401
    from training.checkpoints import Checkpoints
    from training.trainer import load_run_config, train

    config = small_config(synth_root, optim={"ema": 0.5, "epochs": 2}, early_stopping={"patience": 5})
    run_dir = tmp_path / "run"
    with pytest.raises(Interrupt):
        train(config, run_dir, callbacks=[_stop_after_first_epoch()])
    assert Checkpoints(run_dir / "checkpoints").optimizer_file.is_file()
    result = train(load_run_config(run_dir), run_dir, resume=True)
    assert [h["epoch"] for h in result.history] == [1, 2]
    best = result.history[result.metrics["training"]["best_epoch"] - 1]
    final = keras.models.load_model(run_dir / "model.keras")
    # The saved model is the kept epoch's averaged weights: its validation loss is the one recorded then.
    from inspector.dataset import SplitManifest
    from inspector.imageio import load_image
    from inspector.preprocess import Preprocessor
    from training.trainer import predict_probs

    split = SplitManifest.load(run_dir / "split.json")
    prep = Preprocessor(load_run_config(run_dir).preprocess_spec())
    images = np.stack([prep.prepare(load_image(p)) for p in split.paths("val")])
    probs = predict_probs(final, images, 16)
    labels = split.labels("val")
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0))))
    assert loss == pytest.approx(best["val_loss"], rel=1e-4)
