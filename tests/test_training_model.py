"""training.model: architecture, SE block, weights handling, stage freezing and the export form."""

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SIZE = (64, 64)


def _cfg(**kw):
    from training.config import ModelConfig

    base = dict(input_size=SIZE, weights="none", alpha=0.75, minimalistic=True)
    base.update(kw)
    return ModelConfig(**base)


@pytest.fixture(scope="module")
def model():
    from training.model import build_model

    return build_model(_cfg(), num_classes=4)


def test_shape_se_block_and_raw_pixel_input(model):
    import keras

    from training.se import SqueezeExcite

    assert model.input_shape == (None, 64, 64, 3) and model.output_shape == (None, 4)
    se = model.get_layer("se_attention")
    assert isinstance(se, SqueezeExcite)
    channels = model.get_layer("backbone").output.shape[-1]
    assert se.reduce_kernel.shape == (1, 1, channels, max(8, channels // 16))
    assert se.expand_kernel.shape == (1, 1, max(8, channels // 16), channels)
    # order of the head: backbone -> SE -> pool -> dropout -> logits -> softmax
    names = [layer.name for layer in model.layers]
    assert names[-6:] == ["backbone", "se_attention", "pool", "dropout", "logits", "probabilities"]
    # Keras' own rescaling is inside the backbone, so the model takes 0-255 pixels
    rescaling = [l for l in model.get_layer("backbone").layers if isinstance(l, keras.layers.Rescaling)]
    assert len(rescaling) == 1 and rescaling[0].scale == pytest.approx(1 / 127.5)
    probs = model.predict(np.full((2, 64, 64, 3), 255.0, np.float32), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_bn_momentum_override_and_keras_default():
    import keras

    from training.model import build_backbone

    def bns(m):
        return {l.momentum for l in m.layers if isinstance(l, keras.layers.BatchNormalization)}

    assert bns(build_backbone(_cfg(bn_momentum=0.9), None)) == {0.9}
    assert bns(build_backbone(_cfg(bn_momentum=None), None)) == {0.999}


def test_se_gate_scales_channels():
    """The block output is the input times a per-channel gate in (0, 1), the same for every pixel."""
    from training.se import SqueezeExcite

    se = SqueezeExcite(ratio=4)
    x = np.random.default_rng(0).uniform(0.5, 2.0, (2, 5, 5, 16)).astype(np.float32)
    y = np.asarray(se(x))
    gate = y / x
    assert np.all((gate > 0) & (gate < 1))
    np.testing.assert_allclose(gate, np.broadcast_to(gate[:, :1, :1, :], gate.shape), rtol=1e-5)
    assert se.reduced_channels == 8  # max(min_channels=8, 16 // 4)


def test_missing_weights_file_is_a_clear_error(tmp_path):
    from training.model import WeightsError, build_model

    with pytest.raises(WeightsError) as info:
        build_model(_cfg(weights=str(tmp_path / "nope.weights.h5")), num_classes=3)
    message = str(info.value)
    assert "nope.weights.h5" in message and "not found" in message and "--weights none" in message


def test_wrong_weights_file_is_a_clear_error(tmp_path):
    from training.model import WeightsError, build_model

    bogus = tmp_path / "bogus.weights.h5"
    bogus.write_bytes(b"not hdf5")
    with pytest.raises(WeightsError, match="cannot load as weights of MobileNetV3Small"):
        build_model(_cfg(weights=str(bogus)), num_classes=3)


def test_imagenet_download_failure_names_the_offline_route(monkeypatch, tmp_path):
    """A real download through a dead proxy fails; the message says how to use a local file instead."""
    import keras

    from training.model import WeightsError, build_backbone

    # An empty Keras home (no cached file can hide the failure) and a proxy nobody listens on.
    monkeypatch.setattr(keras.src.backend.config, "_KERAS_DIR", str(tmp_path))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(WeightsError) as info:
        build_backbone(_cfg(weights="imagenet", alpha=1.0, minimalistic=False), "imagenet")
    message = str(info.value)
    assert "https://storage.googleapis.com/" in message
    assert "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5" in message
    assert "--weights /path/to" in message and "--weights none" in message


def test_local_weights_file_is_loaded(tmp_path):
    import keras

    from training.model import backbone_of, build_model

    cfg = _cfg()
    source = keras.applications.MobileNetV3Small(
        input_shape=(64, 64, 3), alpha=0.75, minimalistic=True, include_top=False, weights=None
    )
    path = tmp_path / "backbone.weights.h5"
    source.save_weights(path)
    model = build_model(cfg.model_copy(update={"weights": str(path)}), num_classes=3)
    for a, b in zip(source.get_weights(), backbone_of(model).get_weights()):
        np.testing.assert_array_equal(a, b)


def _changed(before, after):
    return [not np.array_equal(a, b) for a, b in zip(before, after)]


def test_head_stage_freezes_backbone_for_real(model):
    """Stage 1: backbone weights AND BatchNorm statistics unchanged by a training step; head changes."""
    import keras

    from training.model import backbone_of, set_stage

    set_stage(model, "head")
    backbone = backbone_of(model)
    assert not backbone.trainable and all(not l.trainable for l in backbone.layers)
    assert all(model.get_layer(n).trainable for n in ("se_attention", "logits"))
    model.compile(keras.optimizers.Adam(0.01), "categorical_crossentropy", run_eagerly=True)
    x = np.random.default_rng(1).uniform(0, 255, (8, 64, 64, 3)).astype(np.float32)
    y = np.eye(4)[np.arange(8) % 4]
    bb_before = backbone.get_weights()
    se_before, logits_before = (model.get_layer(n).get_weights() for n in ("se_attention", "logits"))
    model.train_on_batch(x, y)
    assert not any(_changed(bb_before, backbone.get_weights()))  # includes BN moving mean/variance
    assert all(_changed(logits_before, model.get_layer("logits").get_weights()))
    # (random-init features are tiny in inference mode, so only some SE variables get a visible update)
    assert any(_changed(se_before, model.get_layer("se_attention").get_weights()))


def test_finetune_stage_trains_top_layers_only(model):
    import keras

    from training.model import backbone_of, set_stage

    n = 12
    set_stage(model, "finetune", unfreeze_layers=n)
    layers = backbone_of(model).layers
    for layer in layers[:-n]:
        assert not layer.trainable, layer.name
    top = layers[-n:]
    for layer in top:
        expected = not isinstance(layer, keras.layers.BatchNormalization)
        assert layer.trainable == expected, layer.name
    model.compile(keras.optimizers.Adam(0.01), "categorical_crossentropy", run_eagerly=True)
    trained = [l for l in top if l.trainable and l.weights]
    frozen = [l for l in layers[:-n] if l.weights]
    assert trained and frozen
    before = {l.name: l.get_weights() for l in trained + frozen}
    x = np.random.default_rng(2).uniform(0, 255, (8, 64, 64, 3)).astype(np.float32)
    model.train_on_batch(x, np.eye(4)[np.arange(8) % 4])
    for l in frozen:
        assert not any(_changed(before[l.name], l.get_weights())), l.name
    assert any(any(_changed(before[l.name], l.get_weights())) for l in trained)

    set_stage(model, "finetune", unfreeze_layers=n, train_batchnorm=True)
    assert all(l.trainable for l in top)
    set_stage(model, "full")
    assert all(l.trainable for l in layers)


def test_export_model_fixed_batch_same_outputs(model):
    from training.model import export_model

    exported = export_model(model)
    assert exported.input_shape == (1, 64, 64, 3) and exported.output_shape == (1, 4)
    x = np.random.default_rng(3).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(exported(x, training=False), model(x, training=False), rtol=1e-5, atol=1e-6)


def test_mixed_precision_model_saves_as_float32(tmp_path):
    import keras

    from training.config import MixedPrecision
    from training.model import build_model, rebuild_float32
    from training.runtime import precision

    with precision(MixedPrecision.BFLOAT16):
        mixed = build_model(_cfg(), num_classes=3)
    assert mixed.get_layer("logits").compute_dtype == "bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"
    plain = rebuild_float32(mixed)
    assert {l.compute_dtype for l in plain.layers} == {"float32"}
    assert all(w.dtype == np.float32 for w in plain.get_weights())
    plain.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(4).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x), plain(x), rtol=1e-5, atol=1e-6)
