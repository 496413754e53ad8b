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
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from inspector.bundle import Bundle
from inspector.decision import DecisionPolicy, defect_score
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
    """A TFLite model in one interpreter: quantize in, invoke, dequantize out. Not thread-safe."""

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
        self._out = self.interpreter.get_output_details()[0]
        self.input_dtype = np.dtype(self._in["dtype"])
        self.input_shape = tuple(int(d) for d in self._in["shape"])
        in_scale, in_zero = self._in["quantization"]
        self._in_q = (float(in_scale), int(in_zero)) if in_scale else None
        out_scale, out_zero = self._out["quantization"]
        self._out_q = (float(out_scale), int(out_zero)) if out_scale else None
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
        self.interpreter.set_tensor(self._in["index"], self._quantize(image[np.newaxis]))
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self._out["index"])[0]
        if self._out_q is not None:
            scale, zero = self._out_q
            return np.asarray((out.astype(np.float32) - zero) * scale, dtype=np.float32)
        return np.asarray(out, dtype=np.float32)


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


@dataclass
class Classifier:
    """A bundle ready to classify frames: its preprocessing, its model, its decision policy."""

    bundle: Bundle
    backend: Backend | str = Backend.AUTO
    threads: Optional[int] = None
    delegates: Sequence[str] = ()
    policy: Optional[DecisionPolicy] = None
    delegate_options: Optional[Dict[str, str]] = None
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

    def warm_up(self) -> Classification:
        """Run one blank model input through the interpreter: proves the model runs before it is trusted.

        A blank *model input* rather than a blank frame, because the frame size is the camera's, not known here.
        """
        spec = self.bundle.manifest.preprocess
        return self.classify_prepared(np.full((spec.height, spec.width, 3), 128, np.uint8))

    def probabilities(self, prepared: np.ndarray) -> np.ndarray:
        return self.runner.run(prepared)

    def classify_prepared(self, prepared: np.ndarray, preprocess_ms: float = 0.0) -> Classification:
        start = time.perf_counter()
        probs = self.runner.run(prepared)
        inference_ms = (time.perf_counter() - start) * 1000.0
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

    def classify(self, frame: np.ndarray, order: ChannelOrder | str = ChannelOrder.BGR) -> Classification:
        """Preprocess a raw frame (BGR from a camera by default) and classify it."""
        start = time.perf_counter()
        prepared = self.preprocessor.prepare(frame, order)
        return self.classify_prepared(prepared, (time.perf_counter() - start) * 1000.0)

    def predict_batch(self, prepared: np.ndarray) -> np.ndarray:
        """Probabilities for an NxHxWx3 batch of prepared images (one invoke each: batch size is 1)."""
        return (
            np.stack([self.runner.run(image) for image in prepared])
            if len(prepared)
            else np.zeros((0, len(self.labels)), np.float32)
        )
