"""Conversion on a tiny Keras model: precisions, integer I/O types, static-shape check, float fallback."""

import numpy as np
import pytest

from calibration.convert import ConversionError, FallbackQuantizer, check_static, convert
from inspector.bundle import Precision


def _model(batch_size):
    import keras

    inputs = keras.Input((16, 16, 3), batch_size=batch_size)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="hard_swish")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def tiny():
    import keras

    keras.utils.set_random_seed(0)
    return _model(1)


def _representative():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (1, 16, 16, 3)).astype(np.float32) for _ in range(8)]
    images[0][0, 0, 0] = [0, 255, 0]  # cover the full pixel range

    def generate():
        for image in images:
            yield [image]

    return generate


@pytest.mark.parametrize("io_dtype", ["uint8", "int8"])
def test_int8_full_integer(tiny, io_dtype):
    result = convert(tiny, Precision.INT8, _representative(), io_dtype=io_dtype)
    assert result.input.dtype == io_dtype and result.output.dtype == io_dtype
    assert result.input.shape == [1, 16, 16, 3] and result.input.quantized
    assert result.float_ops == {} and not result.mixed and result.kind == "int8 (full integer)"
    assert "CONV_2D" in result.ops and "HARD_SWISH" in result.ops
    if io_dtype == "uint8":  # raw pixels 0..255 map 1:1 onto the input
        assert (result.input.scale, result.input.zero_point) == (pytest.approx(1.0), 0)


def test_float_precisions(tiny):
    f32 = convert(tiny, "float32")
    f16 = convert(tiny, "float16")
    assert f32.input.dtype == f16.input.dtype == "float32" and not f32.input.quantized
    assert "DEQUANTIZE" in f16.ops and "DEQUANTIZE" not in f32.ops
    with pytest.raises(ConversionError, match="INT8"):
        convert(tiny, "float32", float_op_types=["HARD_SWISH"])
    with pytest.raises(ConversionError, match="representative"):
        convert(tiny, "int8")


def test_dynamic_batch_is_refused():
    import tensorflow as tf

    model = tf.lite.TFLiteConverter.from_keras_model(_model(None)).convert()
    with pytest.raises(ConversionError, match="dynamic dimension"):
        check_static(model)


def test_float_fallback_keeps_the_named_layers_float(tiny):
    quantizer = FallbackQuantizer(tiny, _representative(), "uint8")
    layers = quantizer.sensitivity()
    assert layers and all(a.rmse_over_scale >= b.rmse_over_scale for a, b in zip(layers, layers[1:]))
    by_ops = quantizer.convert(float_op_types=["HARD_SWISH"])
    assert by_ops.mixed and by_ops.float_ops == {"HARD_SWISH": 1} and by_ops.input.dtype == "uint8"
    conv_layer = next(e for e in layers if e.op == "CONV_2D")
    by_node = quantizer.convert(float_nodes=[conv_layer.tensor])
    assert by_node.float_ops.get("CONV_2D") == 1 and by_node.float_nodes == [conv_layer.tensor]
