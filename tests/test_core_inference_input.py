"""The model input written in place into the interpreter's tensor gives exactly the scores of the copy path
(``set_tensor`` of the quantized batch, as before), for every input type a bundle can have, and for the
real INT8 bundle on real part images; a wrong shape is refused, never broadcast."""

import numpy as np
import pytest

from calibration.convert import convert
from inspector.bundle import Bundle, Precision
from inspector.imageio import load_image
from inspector.inference import Classifier, ModelRunner, _dequantize


def _tiny_model():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3), batch_size=1)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def _representative():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (1, 16, 16, 3)).astype(np.float32) for _ in range(8)]

    def generate():
        for image in images:
            yield [image]

    return generate


def _copy_path(runner: ModelRunner, image: np.ndarray) -> np.ndarray:
    """The input path before the in-place write: quantize a batch of one, ``set_tensor`` copies it in."""
    interpreter = runner.interpreter
    interpreter.set_tensor(runner._in["index"], runner._quantize(image[np.newaxis]))
    interpreter.invoke()
    return _dequantize(interpreter.get_tensor(runner._out["index"])[0], runner._out_q)


def _images(count: int, shape) -> list:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count)]
    return images + [np.zeros(shape, np.uint8), np.full(shape, 255, np.uint8)]


@pytest.fixture(scope="module")
def tiny_models():
    model = _tiny_model()
    return {
        "float32": convert(model, Precision.FLOAT32).model,
        "uint8": convert(model, Precision.INT8, _representative(), io_dtype="uint8").model,
        "int8": convert(model, Precision.INT8, _representative(), io_dtype="int8").model,
    }


@pytest.mark.parametrize("kind", ["float32", "uint8", "int8"])
def test_in_place_input_scores_exactly_as_the_copy_path(tiny_models, kind):
    runner = ModelRunner(tiny_models[kind], threads=1)
    assert runner.input_dtype == np.dtype(kind)
    assert runner._passthrough == (kind == "uint8")  # the three ways a pixel becomes the input value
    for image in _images(6, (16, 16, 3)):
        in_place = runner.run(image)
        assert np.array_equal(in_place, _copy_path(runner, image))
        assert np.array_equal(runner.run(image), in_place)  # no view outlived the invoke: it runs again


def test_a_wrong_shape_is_refused_not_broadcast(tiny_models):
    runner = ModelRunner(tiny_models["uint8"], threads=1)
    for shape in [(16, 16, 1), (1, 16, 16, 3), (16, 15, 3)]:
        with pytest.raises(ValueError, match="model takes"):
            runner.set_input(np.zeros(shape, np.uint8))


def test_real_bundle_same_scores_and_class_map_on_real_parts(int8_bundle, synth_root):
    clf = Classifier(Bundle.load(int8_bundle), threads=1)
    paths = [p for d in sorted(synth_root.iterdir()) if d.is_dir() for p in sorted(d.glob("*.png"))[:2]]
    assert len(paths) >= 6
    for path in paths:
        prepared = clf.preprocessor.prepare(load_image(path), "rgb")
        c = clf.classify_prepared(prepared)
        before = _copy_path(clf.runner, prepared)
        assert np.array_equal(np.array([c.scores[label] for label in clf.labels], np.float32), before)
        if c.class_map is not None:
            assert np.array_equal(c.class_map, clf.runner.class_map())  # the copy path's invoke: same map
