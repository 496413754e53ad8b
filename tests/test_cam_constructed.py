"""The INT8 bundle's class map against the Keras model's, on a model built (not trained) to have a map
with spatial structure, through the station's code in frame pixels.

Issue 14 asks for a test that the heatmap of the INT8 bundle agrees with the Keras model's map and that, on
synthetic parts whose defect position is known, the peak cell overlaps the defect box for >= 90 % of the
defects. A model trained for a few SGD steps would make that flaky, so this model is constructed and every
step is seeded (same weights, same images, same numbers on every run; no timing):

* the product's model, :func:`training.model.build_model` (MobileNetV3-Small, minimalistic, + SE head) at
  a 160x128 input (5x4 map cells), its backbone random from a fixed seed;
* frames of :mod:`inspector.synth`'s good surfaces with a dark pit drawn at a random position inside the
  bundle's region of interest;
* only the final dense layer (``logits``) set in closed form with numpy: the difference of the mean pooled
  SE-head features of pitted and good frames, the bias halfway between the two classes.

Then the product's path: :func:`calibration.convert.export_for_conversion` and :func:`calibration.convert.convert`
(full-integer INT8, the representative sample from the fit frames), a bundle with a region of interest and
a resize, the edge's :class:`inspector.inference.Classifier` and ``Classifier.locate`` (what the station's
``Result.where`` comes from) on held-out frames, against the Keras export model's map located by the same
code. Proven: the export, the INT8 quantization of the map and the mapping of its cells back through the
resize and the region of interest keep the map's spatial pattern (per-frame correlation after removing
each map's mean) and, for most frames, its peak cell.

Not asserted: that the peak falls on the pit. Measured with this construction (seeds 0-3, held-out pitted
frames, chance 8-9 %): Keras 40, 47, 22, 3 %, INT8 38, 45, 22, 3 %. A random backbone spreads a local
change over the whole map (the feature change of a pit peaks in its own cell for 3 of 36 placements with
the default backbone, 23 of 36 with the minimalistic one), and the map's cells do not look where
``inspector.localization`` puts them: every stride-2 layer of MobileNetV3 pads one pixel more at the
bottom and right (Keras ``correct_pad`` / SAME on even sizes), so a cell's receptive field is centred 15.5
model-input pixels right of and below its rectangle's centre, on the corner it shares with three others
(moving the rectangle by that much: 15 and 32 of 36). Where a trained model points is measured on real
defects by ``bench/cam.py``'s pointing game on magnetic tile (docs/edge.md).
"""

from typing import List, Tuple

import cv2
import numpy as np
import pytest

from inspector.bundle import Bundle, Manifest, Precision
from inspector.inference import Classifier
from inspector.localization import Heatmap
from inspector.preprocess import ChannelOrder, Preprocessor, PreprocessSpec, Roi
from inspector.synth import GOOD, render

pytestmark = pytest.mark.slow

SEED = 0
FRAME = (360, 280)  # width, height
SPEC = PreprocessSpec(width=160, height=128, roi=Roi(x=20, y=12, width=320, height=256))  # cells of 64x64 frame px
LABELS = [GOOD, "pit"]
FIT = 48  # frames per class the dense layer is set from (and the representative sample is drawn from)
HELD_OUT = 60  # pitted frames the maps are compared on
PIT_RADIUS = (9, 15)  # frame pixels, low inclusive, high exclusive
PIT_DARKEN = 0.7  # the pit keeps 30 % of the surface's brightness


def pitted(rng: np.random.Generator) -> np.ndarray:
    """A good surface with a dark pit (radius 9-14 frame pixels) inside the region of interest."""
    frame = render(rng, GOOD, FRAME)
    roi = SPEC.roi
    assert roi is not None
    radius = int(rng.integers(*PIT_RADIUS))
    margin = radius + 2
    cx = int(rng.integers(roi.x + margin, roi.x + roi.width - margin))
    cy = int(rng.integers(roi.y + margin, roi.y + roi.height - margin))
    mask = np.zeros(frame.shape[:2], np.float32)
    cv2.circle(mask, (cx, cy), radius, 1.0, -1, cv2.LINE_AA)
    frame = np.clip(frame * (1.0 - PIT_DARKEN * mask[:, :, None]), 0, 255).astype(np.uint8)
    return frame


def good(rng: np.random.Generator) -> np.ndarray:
    return render(rng, GOOD, FRAME)


def build(seed: int):
    """The product's model with a random backbone from ``seed`` (no dense layer set yet)."""
    import keras

    from training.config import ModelConfig
    from training.model import build_model

    keras.utils.set_random_seed(seed)
    cfg = ModelConfig(input_size=(SPEC.width, SPEC.height), weights="none", minimalistic=True)
    return build_model(cfg, len(LABELS))


def cell_features(model, prepared: np.ndarray) -> np.ndarray:
    """The SE head's output (N x cells_y x cells_x x channels): what the dense layer sees per cell."""
    import keras

    from training.cam import FEATURES_LAYER

    features = keras.Model(model.inputs, model.get_layer(FEATURES_LAYER).output)
    return np.asarray(features.predict(prepared.astype(np.float32), batch_size=16, verbose=0), np.float64)


def set_dense(model, pitted_cells: np.ndarray, good_cells: np.ndarray) -> None:
    """Set ``logits`` in closed form: the pit class's weights minus the good class's are the difference
    of the mean pooled features (scaled to unit spread of the fit frames' score), the bias puts the
    decision halfway between the two means. No gradient step anywhere."""
    pooled_pit, pooled_good = pitted_cells.mean(axis=(1, 2)), good_cells.mean(axis=(1, 2))
    direction = pooled_pit.mean(axis=0) - pooled_good.mean(axis=0)
    spread = np.concatenate([pooled_pit, pooled_good]) @ direction
    direction /= spread.std()
    bias = -0.5 * (pooled_pit.mean(axis=0) + pooled_good.mean(axis=0)) @ direction
    kernel = np.stack([-direction / 2, direction / 2], axis=1)  # (channels, [good, pit])
    model.get_layer("logits").set_weights([kernel.astype(np.float32), np.array([-bias / 2, bias / 2], np.float32)])


def prepare(frames: List[np.ndarray]) -> np.ndarray:
    preprocessor = Preprocessor(SPEC)
    return np.stack([preprocessor.prepare(f, ChannelOrder.RGB) for f in frames])


class Constructed:
    """The constructed model, its INT8 bundle's Classifier and the held-out pitted frames."""

    def __init__(self, seed: int = SEED):
        from calibration.convert import convert, export_for_conversion
        from calibration.representative import RepresentativeSample

        rng = np.random.default_rng([seed, 14])
        fit_pitted = [pitted(rng) for _ in range(FIT)]
        fit_good = [good(rng) for _ in range(FIT)]
        self.held_out = [pitted(rng) for _ in range(HELD_OUT)]
        self.model = build(seed)
        fit = prepare(fit_pitted + fit_good)
        cells = cell_features(self.model, fit)
        set_dense(self.model, cells[:FIT], cells[FIT:])
        sample = RepresentativeSample(fit, np.array([1] * FIT + [0] * FIT), [f"fit{i}" for i in range(2 * FIT)])
        self.fixed = export_for_conversion(self.model)
        conversion = convert(self.fixed, Precision.INT8, sample.dataset())
        manifest = Manifest(
            name="cam-pointing",
            version="1",
            labels=LABELS,
            good_class=GOOD,
            precision=conversion.precision,
            preprocess=SPEC,
            input=conversion.input,
            output=conversion.output,
            class_map=conversion.class_map,
        )
        self.classifier = Classifier(Bundle.create(manifest, conversion.model), threads=1)

    def keras_maps(self) -> np.ndarray:
        """The Keras export model's class maps of the held-out frames (N x cells_y x cells_x x classes)."""
        prepared = prepare(self.held_out).astype(np.float32)
        return np.asarray(self.fixed.predict(prepared, batch_size=1, verbose=0)[1])

    def int8(self) -> List[Tuple[np.ndarray, Heatmap]]:
        """(class map, heatmap in frame pixels) of each held-out frame through the bundle, as the station."""
        out = []
        for frame in self.held_out:
            c = self.classifier.classify(frame, ChannelOrder.RGB)
            heat = self.classifier.locate(c, frame.shape)
            assert c.class_map is not None and heat is not None
            out.append((c.class_map, heat))
        return out


def keras_heat(class_map: np.ndarray) -> Heatmap:
    """The Keras map located by the station's code with the bundle's geometry (frame pixels)."""
    from inspector.localization import locate

    return locate(class_map, LABELS, 0, SPEC, (FRAME[1], FRAME[0], 3))


def centred_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two maps' defect evidence (pit minus good) after removing each map's mean: agreement on
    *where*, not on the frame's overall score."""
    x, y = (m[..., 1] - m[..., 0] for m in (a, b))
    return float(np.corrcoef((x - x.mean()).ravel(), (y - y.mean()).ravel())[0, 1])


@pytest.fixture(scope="module")
def maps():
    """(Keras maps, INT8 (map, heatmap) pairs) of the held-out frames of the seeded construction."""
    built = Constructed()
    return built.keras_maps(), built.int8()


def test_int8_map_has_the_keras_maps_spatial_pattern(maps):
    keras, int8 = maps
    assert keras.shape == (HELD_OUT, 4, 5, 2) and all(m.shape == (4, 5, 2) for m, _ in int8)
    correlations = [centred_correlation(m, k) for (m, _), k in zip(int8, keras)]
    # Measured over seeds 0-3: median per frame 0.966-0.995, lowest frame 0.879-0.965 (quantization noise).
    assert np.median(correlations) > 0.9 and min(correlations) > 0.8


def test_int8_peak_in_frame_pixels_is_the_keras_peak(maps):
    """Classifier.locate (the station's ``where``) puts the INT8 map's peak on the Keras map's peak cell."""
    keras, int8 = maps
    same = [
        heat.cell_rect(*heat.peak) == keras_heat(k).cell_rect(*keras_heat(k).peak) for (_, heat), k in zip(int8, keras)
    ]
    # Measured 80-92 % over seeds 0-3; the rest are near ties that one quantization step decides.
    assert np.mean(same) >= 0.7
    for _, heat in int8[:3]:
        x0, y0, x1, y1 = heat.cell_rect(*heat.peak)
        assert x1 - x0 == 64 and y1 - y0 == 64 and 20 <= x0 < 340 and 12 <= y0 < 268  # a cell of the ROI
