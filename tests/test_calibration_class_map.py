"""The class activation map output of a calibrated bundle (``training/cam.py``, ``calibration/convert.py``):
exact in Keras (its cells' mean is the logits), the INT8 bundle's map agrees with the Keras map, and a
bundle from before the map still runs.

The first two hold for any weights, so they use the shared near-chance ``trained_run`` and its
``int8_bundle``. That model's map is almost only its per-class offsets (its spatial variation is about one
quantization step), so ``tests/test_cam_constructed.py`` compares the INT8 and Keras maps cell by cell on
a model with its dense layer set in closed form, whose maps have spatial structure; *where* a trained
model's map points is measured on magnetic tile by ``bench/cam.py``.
"""

import json

import numpy as np
import pytest

from inspector.bundle import MANIFEST_NAME, Bundle
from inspector.inference import Classifier


def _softmax(logits):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def keras_maps(trained_run, calibrated):
    """(probabilities, class maps) of the Keras export model on the validation images."""
    from calibration.convert import export_for_conversion, load_keras_model

    fixed = export_for_conversion(load_keras_model(trained_run / "model.keras"))
    probs, maps = fixed.predict(calibrated.val.images.astype(np.float32), batch_size=1, verbose=0)
    return probs, maps


def test_keras_class_map_cells_average_to_the_logits(keras_maps, calibrated):
    probs, maps = keras_maps
    assert maps.shape == (len(probs), 2, 2, len(calibrated.run.labels))  # 64x64 input: 2x2 cells of 32 px
    np.testing.assert_allclose(_softmax(maps.mean(axis=(1, 2))), probs, atol=1e-5)


def test_int8_bundle_class_map_agrees_with_keras(keras_maps, calibrated, int8_bundle):
    probs, maps = keras_maps
    bundle = Bundle.load(int8_bundle)
    spec = bundle.manifest.class_map
    assert spec is not None and spec.dtype == "uint8" and spec.shape == [1, *maps.shape[1:]] and spec.scale > 0
    clf = Classifier(bundle)
    results = [clf.classify_prepared(image) for image in calibrated.val.images]
    int8 = np.stack([c.class_map for c in results])
    assert np.corrcoef(int8.ravel(), maps.ravel())[0, 1] > 0.99
    # Within quantization: the typical cell is off by about one step of the output's scale.
    assert np.median(np.abs(int8 - maps)) <= 2 * spec.scale
    # The INT8 map's cells average to the INT8 model's own logits too (its probabilities are 1/256 steps).
    int8_probs = np.stack([[c.scores[label] for label in clf.labels] for c in results])
    np.testing.assert_allclose(_softmax(int8.mean(axis=(1, 2))), int8_probs, atol=0.02)


@pytest.mark.slow
def test_bundle_without_class_map_runs_as_before(trained_run, calibrated, int8_bundle, tmp_path):
    """A one-output model (every bundle calibrated before the map existed) and a manifest without the field."""
    from calibration.convert import convert, export_for_conversion, load_keras_model

    fixed = export_for_conversion(load_keras_model(trained_run / "model.keras"), class_map=False)
    conversion = convert(fixed, "int8", calibrated.representative.dataset())
    assert conversion.class_map is None and conversion.output.shape == [1, len(calibrated.run.labels)]
    new = Bundle.load(int8_bundle)
    manifest = new.manifest.model_dump(mode="json")
    del manifest["class_map"]  # what an older calibrate wrote
    manifest.update(output=conversion.output.model_dump(), input=conversion.input.model_dump())
    old = tmp_path / "old"
    old.mkdir()
    Bundle.create(new.manifest.model_validate(manifest), conversion.model).save(old)
    written = json.loads((old / MANIFEST_NAME).read_text())
    del written["class_map"]  # the manifest as an older calibrate wrote it: no such key
    (old / MANIFEST_NAME).write_text(json.dumps(written))
    loaded = Bundle.load(old)
    assert loaded.manifest.class_map is None and "class map   none" in loaded.summary()
    before, after = Classifier(loaded), Classifier(new)
    assert not before.runner.has_class_map and after.runner.has_class_map
    for image in calibrated.val.images[:5]:
        a, b = before.classify_prepared(image), after.classify_prepared(image)
        assert a.class_map is None and b.class_map is not None
        assert a.scores == pytest.approx(b.scores, abs=0.02)  # same weights, same calibration sample
