"""INT8 bundles run whole in one XNNPACK partition, and the export rewrite that makes it so is the same math.

The session bundle (``int8_bundle``) is minimalistic MobileNetV3 (ReLU, no hard-swish); the hard-swish
case is a full MobileNetV3Small + SE built here at 64 px with random weights and batch-norm statistics
from the synthetic images (:func:`bench.models.settle_batchnorm`; nothing is trained), converted with the
product's own converter, which rewrites hard-swish at INT8 (:mod:`training.export_graph`), and with the
rewrite turned off for comparison.
"""

import numpy as np
import pytest

SIZE = 64
ENDS = {"QUANTIZE", "SOFTMAX"}  # ops XNNPACK leaves to TFLite at the model's ends; they split nothing


def test_int8_bundle_is_one_partition(int8_bundle):
    from inspector.bundle import Bundle
    from inspector.delegation import delegation

    d = delegation(Bundle.load(int8_bundle).model)
    assert d.partitions == 1, str(d)
    assert set(d.outside) <= ENDS, str(d)


def test_bundle_verify_reports_the_partitions(int8_bundle, capsys):
    import json

    from app.cli import main

    assert main(["bundle", "verify", str(int8_bundle), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["delegation"]["partitions"] == 1


@pytest.fixture(scope="module")
def hard_swish_model(synth_root):
    """(Keras MobileNetV3Small + SE with hard-swish, prepared uint8 synthetic images)."""
    import keras

    from bench.models import settle_batchnorm
    from inspector.imageio import is_image_name, load_image
    from inspector.preprocess import Preprocessor, PreprocessSpec
    from training.config import ModelConfig
    from training.model import build_model

    files = sorted(p for p in synth_root.rglob("*") if is_image_name(p))[::5][:24]
    images = Preprocessor(PreprocessSpec(width=SIZE, height=SIZE)).prepare_batch([load_image(p) for p in files])
    keras.utils.set_random_seed(0)
    model = build_model(ModelConfig(input_size=(SIZE, SIZE), weights="none", alpha=0.75), num_classes=3)
    settle_batchnorm(model, images[:16])
    return model, images


def _representative(images):
    def sample():
        for image in images[:16]:
            yield [image[np.newaxis].astype(np.float32)]

    return sample


def _probabilities(model_bytes, images):
    from inspector.inference import ModelRunner

    runner = ModelRunner(model_bytes, threads=1)
    return np.stack([runner.run(image) for image in images])


@pytest.fixture(scope="module")
def int8_pair(hard_swish_model):
    """INT8 conversions of the same model: (exported with the rewrite, exported without)."""
    from calibration.convert import convert
    from training.model import export_model

    model, images = hard_swish_model
    fixed, rep = export_model(model), _representative(images)
    return convert(fixed, "int8", rep), convert(fixed, "int8", rep, split_hard_swish=False)


def test_split_hard_swish_is_hard_swish():
    import keras

    from training.export_graph import SplitHardSwish

    x = np.concatenate([np.linspace(-8, 8, 4001), [-3.0, 3.0, 0.0, -1e-7, 1e-7, 1e4, -1e4]]).astype(np.float32)
    ours = keras.ops.convert_to_numpy(SplitHardSwish()(x))
    np.testing.assert_allclose(ours, keras.ops.convert_to_numpy(keras.activations.hard_swish(x)), rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_rewrite_replaces_every_hard_swish_and_keeps_the_function(hard_swish_model):
    from training.export_graph import SplitHardSwish, split_hard_swish
    from training.model import export_model

    model, images = hard_swish_model
    fixed = export_model(model)
    rewritten = split_hard_swish(fixed)
    split = [layer for layer in rewritten._flatten_layers() if isinstance(layer, SplitHardSwish)]
    assert len(split) == 18  # every hard-swish of MobileNetV3Small's backbone
    assert split_hard_swish(rewritten) is rewritten  # nothing left to rewrite
    batch = images[:4].astype(np.float32)
    before = fixed.predict(batch, batch_size=1, verbose=0)
    after = rewritten.predict(batch, batch_size=1, verbose=0)
    np.testing.assert_allclose(after, before, atol=1e-6)


@pytest.mark.slow
def test_int8_hard_swish_model_is_one_partition(int8_pair):
    from inspector.delegation import delegation

    rewritten, plain = int8_pair
    d = delegation(rewritten.model)
    assert d.partitions == 1, str(d)
    assert set(d.outside) <= ENDS, str(d)
    assert "HARD_SWISH" not in rewritten.ops
    # Without the rewrite the converter fuses hard-swish into HARD_SWISH, which XNNPACK refuses at INT8:
    # the check above is what catches it.
    before = delegation(plain.model)
    assert before.partitions > 1 and before.outside.get("HARD_SWISH") == plain.ops["HARD_SWISH"], str(before)


@pytest.fixture(scope="module")
def float32_export(hard_swish_model):
    """The float32 conversion of the export (float32 keeps HARD_SWISH, which XNNPACK takes in float)."""
    from calibration.convert import convert
    from training.model import export_model

    return convert(export_model(hard_swish_model[0]), "float32")


@pytest.mark.slow
def test_float32_export_is_one_partition(float32_export):
    from inspector.delegation import delegation

    d = delegation(float32_export.model)
    assert d.partitions == 1 and not d.outside, str(d)


@pytest.mark.slow
def test_two_output_model_is_one_partition(hard_swish_model):
    """A second output off the SE features (as the class activation map is) keeps the model whole."""
    import keras

    from calibration.convert import convert
    from inspector.delegation import delegation
    from training.model import export_model

    model, images = hard_swish_model
    fixed = export_model(model)
    cells = keras.layers.Conv2D(3, 1, name="cells")(fixed.get_layer("se_attention").output)
    two = keras.Model(fixed.inputs, [fixed.outputs[0], cells])
    d = delegation(convert(two, "int8", _representative(images)).model)
    assert d.partitions == 1, str(d)
    assert set(d.outside) <= ENDS, str(d)


@pytest.mark.slow
def test_int8_probabilities_do_not_move(int8_pair, float32_export, hard_swish_model):
    """The rewrite changes only where requantization happens inside hard-swish: on real images the INT8
    probabilities of both exports agree to within the INT8 error of the plain export against float."""
    _, images = hard_swish_model
    rewritten, plain = int8_pair
    reference = _probabilities(float32_export.model, images)
    new, old = _probabilities(rewritten.model, images), _probabilities(plain.model, images)
    tolerance = 2 * float(np.abs(old - reference).max()) + 2 * plain.output.scale  # output step: 1/256
    figures = f"new-old {np.abs(new - old).max():.4f}, new-float {np.abs(new - reference).max():.4f}, "
    figures += f"old-float {np.abs(old - reference).max():.4f}"
    assert float(np.abs(new - old).max()) <= tolerance, figures
    assert float(np.abs(new - reference).max()) <= tolerance, figures


def test_calibrate_retries_with_fused_hard_swish_only_where_there_is_one(hard_swish_model, trained_run):
    """A guard failure of the one-partition model is retried with the fused op; a model without hard-swish
    (minimalistic, like the session fixture) has nothing to retry."""
    import keras

    from calibration.calibrate import _has_hard_swish
    from training.model import export_model

    model, _ = hard_swish_model
    assert _has_hard_swish(model)
    minimalistic = export_model(keras.models.load_model(trained_run / "model.keras"))
    assert not _has_hard_swish(minimalistic)
