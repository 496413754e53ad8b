"""TFLite interpreter backends and the bundle-driven classifier the station and evaluation share.

Backends are tried in order ``ai_edge_litert`` (the maintained LiteRT runtime), ``tflite_runtime``
(older boards, needs numpy < 2), then ``tensorflow.lite`` (a workstation that has TensorFlow anyway).
:class:`Classifier` feeds the preprocessed uint8 frame straight into a quantized input (no float round
trip when the input is uint8 with scale 1, zero point 0) and dequantizes the output with the tensor's own
parameters, so every caller gets probabilities.

Example:
    >>> from inspector.bundle import Bundle
    >>> clf = Classifier(Bundle.load("model.inspector"), threads=2)   # doctest: +SKIP
    >>> clf.classify(frame_bgr, order="bgr").verdict                  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from enum import Enum
from types import ModuleType
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from inspector.bundle import Bundle, FlipAveraging, InferenceSpec
from inspector.decision import DecisionPolicy, defect_score
from inspector.localization import Heatmap, Rect, locate
from inspector.nativelog import native_stderr_filtered
from inspector.preprocess import ChannelOrder, Preprocessor
from inspector.protocol.enums import Verdict


class Backend(str, Enum):
    AUTO = "auto"
    AI_EDGE_LITERT = "ai_edge_litert"
    TFLITE_RUNTIME = "tflite_runtime"
    TENSORFLOW = "tensorflow"


_MODULES = {
    Backend.AI_EDGE_LITERT: "ai_edge_litert.interpreter",
    Backend.TFLITE_RUNTIME: "tflite_runtime.interpreter",
    Backend.TENSORFLOW: "tensorflow.lite",
}


class BackendError(RuntimeError):
    """No usable TFLite runtime, or the model cannot be loaded by it."""


def load_backend(backend: Backend | str = Backend.AUTO) -> Tuple[Backend, ModuleType]:
    """Return ``(Backend, module)`` whose module has ``Interpreter`` and ``load_delegate``."""
    backend = Backend(backend)
    order = [b for b in _MODULES] if backend == Backend.AUTO else [backend]
    errors = []
    for candidate in order:
        try:
            return candidate, importlib.import_module(_MODULES[candidate])
        except Exception as exc:  # ImportError, or a runtime that fails to import under this numpy
            errors.append(f"{candidate.value}: {type(exc).__name__}: {exc}")
    raise BackendError(
        "no TFLite runtime could be imported (" + "; ".join(errors) + "). Install one: "
        "pip install ai-edge-litert (64-bit Linux/macOS), or tflite-runtime with numpy<2 on 32-bit boards"
    )


def _load_delegate(module: ModuleType, library: str, options: Optional[Dict[str, str]]) -> Any:
    loader = getattr(module, "load_delegate", None)
    if loader is None and hasattr(module, "experimental"):
        loader = module.experimental.load_delegate
    if loader is None:
        raise BackendError(f"this TFLite runtime cannot load delegates ({library})")
    try:
        return loader(library, options or {})
    except (ValueError, OSError, RuntimeError) as exc:
        raise BackendError(f"cannot load delegate {library}: {exc}") from None


class ModelRunner:
    """A TFLite model in one interpreter: quantize in, invoke, dequantize out (the probabilities, and the
    class activation map when the model has one: :func:`split_outputs`). Not thread-safe."""

    def __init__(
        self,
        model: bytes,
        backend: Backend | str = Backend.AUTO,
        threads: Optional[int] = None,
        delegates: Sequence[str] = (),
        delegate_options: Optional[Dict[str, str]] = None,
    ):
        self.backend, module = load_backend(backend)
        loaded = [_load_delegate(module, lib, delegate_options) for lib in delegates]
        kwargs: Dict[str, Any] = {"model_content": model, "num_threads": threads}
        if loaded:
            kwargs["experimental_delegates"] = loaded
        try:
            with native_stderr_filtered():  # the runtime's "Created TensorFlow Lite XNNPACK delegate" INFO line
                self.interpreter = module.Interpreter(**kwargs)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"{self.backend.value} cannot load the model: {exc}") from None
        self._in = self.interpreter.get_input_details()[0]
        self._out, self._map = split_outputs(self.interpreter.get_output_details())
        self.input_dtype = np.dtype(self._in["dtype"])
        self.input_shape = tuple(int(d) for d in self._in["shape"])
        in_scale, in_zero = self._in["quantization"]
        self._in_q = (float(in_scale), int(in_zero)) if in_scale else None
        self._out_q = _quantization(self._out)
        self._map_q = _quantization(self._map) if self._map is not None else None
        # uint8 input with scale 1 / zero point 0 takes camera pixels as they are.
        self._passthrough = self.input_dtype == np.uint8 and self._in_q in (None, (1.0, 0))

    def _quantize(self, batch: np.ndarray) -> np.ndarray:
        if self._passthrough:
            return batch.astype(np.uint8, copy=False)
        if self._in_q is None:
            return batch.astype(self.input_dtype, copy=False)
        scale, zero = self._in_q
        info = np.iinfo(self.input_dtype)
        q = np.round(batch.astype(np.float32) / scale + zero)
        return np.clip(q, info.min, info.max).astype(self.input_dtype)

    def run(self, image: np.ndarray) -> np.ndarray:
        """One preprocessed HxWx3 uint8 image in, the dequantized output vector (float32) out."""
        self.set_input(image)
        self.interpreter.invoke()
        return self.output()

    def set_input(self, image: np.ndarray) -> None:
        """Write one preprocessed HxWx3 image into the interpreter's input tensor, in place.

        ``interpreter.tensor(index)()`` is a numpy view of the interpreter's own buffer: writing through it
        skips ``set_tensor``'s batch and copy (and a float model's float32 temporary: the cast happens in
        the one pass). The view is dropped before returning, because the runtime refuses ``invoke()``
        while a view of its buffers is alive (it may reallocate them).
        """
        if tuple(image.shape) != self.input_shape[1:]:
            raise ValueError(f"model input of shape {tuple(image.shape)}, the model takes {self.input_shape[1:]}")
        view = self.interpreter.tensor(self._in["index"])()
        if self._passthrough or self._in_q is None:
            np.copyto(view, image[np.newaxis], casting="unsafe")  # same values as astype(input dtype)
        else:
            np.copyto(view, self._quantize(image[np.newaxis]))
        del view

    def output(self) -> np.ndarray:
        """The dequantized output vector (float32) of the last invoke."""
        return _dequantize(self.interpreter.get_tensor(self._out["index"])[0], self._out_q)

    @property
    def has_class_map(self) -> bool:
        """True when the model has the class activation map output (bundles calibrated since it exists)."""
        return self._map is not None

    def class_map(self) -> Optional[np.ndarray]:
        """The per-cell class logits (cells_y x cells_x x classes, float32) of the last :meth:`run`, or None
        for a model without the map. Reading it is a copy of a few hundred bytes: no second invoke."""
        if self._map is None:
            return None
        return _dequantize(self.interpreter.get_tensor(self._map["index"])[0], self._map_q)


def split_outputs(details: Sequence[Dict[str, Any]]) -> Tuple[Dict[str, Any], Optional[Dict[str, Any]]]:
    """(probabilities, class map or None) among a model's output details.

    TFLite does not keep the Keras output order, so the outputs are told apart by rank: the
    probabilities are (1, classes), the class activation map (1, cells_y, cells_x, classes). A model with
    one output is a classifier without the map, whatever that output's shape.
    """
    if len(details) == 1:
        return details[0], None
    by_rank = {len(d["shape"]): d for d in details}
    if len(details) != 2 or set(by_rank) != {2, 4} or by_rank[2]["shape"][-1] != by_rank[4]["shape"][-1]:
        shapes = ", ".join(str([int(v) for v in d["shape"]]) for d in details)
        raise BackendError(
            f"model outputs {shapes}: expected the probabilities (1, classes) and optionally the class map "
            "(1, cells_y, cells_x, classes)"
        )
    return by_rank[2], by_rank[4]


def _quantization(detail: Dict[str, Any]) -> Optional[Tuple[float, int]]:
    scale, zero = detail["quantization"]
    return (float(scale), int(zero)) if scale else None


def _dequantize(values: np.ndarray, quantization: Optional[Tuple[float, int]]) -> np.ndarray:
    if quantization is None:
        return np.asarray(values, dtype=np.float32)
    scale, zero = quantization
    return np.asarray((values.astype(np.float32) - zero) * scale, dtype=np.float32)


@dataclass
class Classification:
    """What the model says about one frame."""

    verdict: Verdict
    defect_score: float
    top_class: str
    top_score: float
    scores: Dict[str, float]
    inference_ms: float
    preprocess_ms: float = 0.0
    # Per-cell class logits (cells_y x cells_x x classes) of the model input the decision came from, for
    # inspector.localization: the flip views' maps mirrored back and averaged like the probabilities, with
    # tiling the deciding tile's. None without the model's map output.
    class_map: Optional[np.ndarray] = None
    # The part of the model's region (the ROI, or the whole frame) the class map covers, as fractions
    # (x0, y0, x1, y1) of it: the deciding tile's; None for the whole region. ``locate`` takes it as is.
    map_window: Optional[Rect] = None


def flips(tta: FlipAveraging | str) -> List[Tuple[bool, bool]]:
    """(rows, columns) each view of flip averaging mirrors, the original first."""
    tta = FlipAveraging(tta)
    views = [(False, False)]
    if tta in (FlipAveraging.HFLIP, FlipAveraging.HVFLIP):
        views.append((False, True))
    if tta in (FlipAveraging.VFLIP, FlipAveraging.HVFLIP):
        views.append((True, False))
    if tta == FlipAveraging.HVFLIP:
        views.append((True, True))
    return views


def mirror(array: np.ndarray, rows: bool, columns: bool) -> np.ndarray:
    """``array`` (...xHxWxC: an image, a batch, or a class map's cells) mirrored top-bottom and/or left-right.

    A mirror is its own inverse, and mirroring the input mirrors the map's cells the same way (one cell per
    32x32 input pixels), so the same call maps a view's class map back onto the original.
    """
    return array[..., slice(None, None, -1 if rows else 1), slice(None, None, -1 if columns else 1), :]


def flip_views(image: np.ndarray, tta: FlipAveraging | str) -> List[np.ndarray]:
    """The views flip averaging runs for one HxWx3 model input (or an NxHxWx3 batch), the original first."""
    return [np.ascontiguousarray(mirror(image, rows, columns)) for rows, columns in flips(tta)]


def _mean(arrays: List[np.ndarray]) -> np.ndarray:
    return np.asarray(np.stack(arrays).mean(axis=0, dtype=np.float32), np.float32)


def tile_origins(length: int, tile: int, overlap: float) -> List[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``length`` with at least ``overlap`` between
    neighbours, spread evenly from 0 to ``length - tile`` (one tile when it fits)."""
    if length <= tile:
        return [0]
    stride = max(1.0, tile * (1.0 - overlap))
    count = int(np.ceil((length - tile) / stride)) + 1
    return sorted({int(round(v)) for v in np.linspace(0, length - tile, count)})


@dataclass
class Classifier:
    """A bundle ready to classify frames: its preprocessing, its model, its inference and decision policy.

    The bundle's ``inference`` section is applied here and only here, so the station, ``inspector
    predict``, ``inspector evaluate`` and calibration get the same probabilities for the same picture:
    flip averaging runs the model on the flipped views and averages the probabilities; tiling cuts the
    region of interest (at native resolution, enlarged only when smaller than one tile) into overlapping
    tiles of the model's input size and reports the tile with the highest defect score. The class map
    follows the probabilities: the views' maps mirrored back and averaged, the deciding tile's map.
    """

    bundle: Bundle
    backend: Backend | str = Backend.AUTO
    threads: Optional[int] = None
    delegates: Sequence[str] = ()
    policy: Optional[DecisionPolicy] = None
    delegate_options: Optional[Dict[str, str]] = None
    inference: Optional[InferenceSpec] = None  # default: the bundle's (calibration tries others)
    runner: ModelRunner = field(init=False)

    def __post_init__(self) -> None:
        m = self.bundle.manifest
        self.runner = ModelRunner(self.bundle.model, self.backend, self.threads, self.delegates, self.delegate_options)
        expected = (1, m.preprocess.height, m.preprocess.width, 3)
        if self.runner.input_shape != expected:
            raise BackendError(f"model input shape {self.runner.input_shape} does not match the manifest {expected}")
        self.preprocessor = Preprocessor(m.preprocess)
        self.labels: List[str] = list(m.labels)
        self.good_index = m.good_index
        if self.policy is None:
            self.policy = m.decision
        if self.inference is None:
            self.inference = m.inference

    @property
    def tiled(self) -> bool:
        """True when the decision needs the camera frame (tiles), not only the prepared model input."""
        return self.inference is not None and self.inference.tiling is not None

    def warm_up(self) -> Classification:
        """Run one blank model input through the interpreter: proves the model runs before it is trusted.

        A blank *model input* rather than a blank frame, because the frame size is the camera's, not known here.
        """
        spec = self.bundle.manifest.preprocess
        start = time.perf_counter()
        probs = self._averaged(np.full((spec.height, spec.width, 3), 128, np.uint8))
        return self._classification(probs, (time.perf_counter() - start) * 1000.0, 0.0)

    def probabilities(self, prepared: np.ndarray) -> np.ndarray:
        """The model's probabilities for one model input, averaged over the flip views (no tiling)."""
        return self._averaged(prepared)

    def _averaged(self, prepared: np.ndarray) -> np.ndarray:
        return self._views(prepared, with_map=False)[0]

    def _views(self, prepared: np.ndarray, with_map: bool) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """The probabilities averaged over the flip views and, ``with_map``, the views' class maps mirrored
        back onto ``prepared`` and averaged alike (None for a model without the map)."""
        tta = self.inference.tta if self.inference is not None else FlipAveraging.NONE
        with_map = with_map and self.runner.has_class_map
        if tta == FlipAveraging.NONE:
            probs = self.runner.run(prepared)
            return probs, self.runner.class_map() if with_map else None
        runs, maps = [], []
        for (rows, columns), view in zip(flips(tta), flip_views(prepared, tta)):
            runs.append(self.runner.run(view))
            class_map = self.runner.class_map() if with_map else None
            if class_map is not None:
                maps.append(mirror(class_map, rows, columns))
        return _mean(runs), _mean(maps) if maps else None

    def tiles(self, frame: np.ndarray, order: ChannelOrder | str = ChannelOrder.BGR) -> np.ndarray:
        """The NxHxWx3 model inputs tiled inference scores for one raw frame (region of interest first)."""
        return self._tiling(frame, order)[0]

    def _tiling(self, frame: np.ndarray, order: ChannelOrder | str) -> Tuple[np.ndarray, List[Rect]]:
        """The tiles of :meth:`tiles` and each one's window: its part of the region, as fractions (x0, y0, x1, y1)."""
        spec = self.bundle.manifest.preprocess
        overlap = self.inference.tiling.overlap if self.inference and self.inference.tiling else 0.0
        if frame.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {frame.dtype}")
        h, w = self.preprocessor.crop(frame).shape[:2]
        grow = max(spec.width / w, spec.height / h, 1.0)  # smaller than one tile: enlarge just enough
        w, h = max(spec.width, int(np.ceil(w * grow - 1e-9))), max(spec.height, int(np.ceil(h * grow - 1e-9)))
        # The whole region through the bundle's own preprocessing (crop, channels, grayscale), at native size.
        region = Preprocessor(self.bundle.manifest.preprocess.model_copy(update={"width": w, "height": h}))
        image = region.prepare(frame, order)
        origins = [(x, y) for y in tile_origins(h, spec.height, overlap) for x in tile_origins(w, spec.width, overlap)]
        tiles = np.stack([image[y : y + spec.height, x : x + spec.width] for x, y in origins])
        return tiles, [(x / w, y / h, (x + spec.width) / w, (y + spec.height) / h) for x, y in origins]

    def infer(
        self, prepared: np.ndarray, frame: Optional[np.ndarray] = None, order: ChannelOrder | str = ChannelOrder.BGR
    ) -> np.ndarray:
        """The bundle's probabilities for one frame: of ``prepared`` (flip-averaged), or with tiling of the
        tile of ``frame`` with the highest defect score."""
        return self._infer(prepared, frame, order, with_map=False)[0]

    def _infer(
        self, prepared: np.ndarray, frame: Optional[np.ndarray], order: ChannelOrder | str, with_map: bool
    ) -> Tuple[np.ndarray, Optional[np.ndarray], Optional[Rect]]:
        """:meth:`infer`, and the class map and window of the model input that decided (see Classification)."""
        if not self.tiled:
            probs, class_map = self._views(prepared, with_map)
            return probs, class_map, None
        if frame is None:
            raise ValueError("this bundle scores tiles of the camera frame: give the frame, not only the model input")
        tiles, windows = self._tiling(frame, order)
        scored = [self._views(tile, with_map) for tile in tiles]
        per_tile = np.stack([probs for probs, _ in scored])
        worst = int(np.argmax(defect_score(per_tile, self.good_index)))
        return np.asarray(per_tile[worst], np.float32), scored[worst][1], windows[worst]

    def _classification(self, probs: np.ndarray, inference_ms: float, preprocess_ms: float) -> Classification:
        score = float(defect_score(probs, self.good_index))
        top = int(np.argmax(probs))
        return Classification(
            verdict=(self.policy or self.bundle.manifest.decision).decide(score),
            defect_score=score,
            top_class=self.labels[top],
            top_score=float(probs[top]),
            scores={label: float(p) for label, p in zip(self.labels, probs)},
            inference_ms=inference_ms,
            preprocess_ms=preprocess_ms,
        )

    def classify_prepared(
        self,
        prepared: np.ndarray,
        preprocess_ms: float = 0.0,
        frame: Optional[np.ndarray] = None,
        order: ChannelOrder | str = ChannelOrder.BGR,
    ) -> Classification:
        """Classify a prepared model input; a tiled bundle also needs the raw ``frame`` in channel ``order``
        (cutting its tiles counts as inference time)."""
        start = time.perf_counter()
        probs, class_map, window = self._infer(prepared, frame, order, with_map=True)
        c = self._classification(probs, (time.perf_counter() - start) * 1000.0, preprocess_ms)
        c.class_map, c.map_window = class_map, window
        return c

    def locate(self, c: Classification, frame_shape: Sequence[int]) -> Optional[Heatmap]:
        """Where the defect is in the frame (of array shape ``frame_shape``) ``c`` was classified from, in frame
        pixels (None for a model without the class map): the station and ``inspector predict`` call this."""
        if c.class_map is None:
            return None
        spec = self.preprocessor.spec
        return locate(c.class_map, self.labels, self.good_index, spec, frame_shape, c.map_window, self.views)

    @property
    def views(self) -> List[Tuple[bool, bool]]:
        """The flip views (rows, columns mirrored) this bundle averages: its class maps are their blend."""
        return flips(self.inference.tta if self.inference is not None else FlipAveraging.NONE)

    def classify(self, frame: np.ndarray, order: ChannelOrder | str = ChannelOrder.BGR) -> Classification:
        """Preprocess a raw frame (BGR from a camera by default) and classify it."""
        start = time.perf_counter()
        prepared = self.preprocessor.prepare(frame, order)
        return self.classify_prepared(prepared, (time.perf_counter() - start) * 1000.0, frame, order)

    def predict_batch(self, prepared: np.ndarray) -> np.ndarray:
        """Probabilities for an NxHxWx3 batch of prepared images (one invoke per view: batch size is 1).
        A tiled bundle needs the frames: :meth:`predict_frames`."""
        if self.tiled:
            raise ValueError("this bundle scores tiles of the frames: use predict_frames")
        return (
            np.stack([self._averaged(image) for image in prepared])
            if len(prepared)
            else np.zeros((0, len(self.labels)), np.float32)
        )

    def predict_frames(self, frames: Iterable[np.ndarray], order: ChannelOrder | str = ChannelOrder.RGB) -> np.ndarray:
        """Probabilities for raw frames (image files load as RGB), exactly as :meth:`classify` computes them."""
        probs = [self.infer(self.preprocessor.prepare(frame, order), frame, order) for frame in frames]
        return np.stack(probs) if probs else np.zeros((0, len(self.labels)), np.float32)
