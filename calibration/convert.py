"""Keras model -> TFLite flatbuffer at a chosen precision, checked for static shapes.

* ``int8``: full-integer post-training quantization (``TFLITE_BUILTINS_INT8`` only, per-channel weights,
  activation ranges from a representative sample), with uint8 (default) or int8 input and output, what
  integer-only accelerators (Edge TPU, NPUs, Cortex-M) need.
* ``float16``: float16 weights, float32 compute and I/O; half the size of float32, no integer accelerator.
* ``float32``: the reference; what the float model computes, at TFLite speed.

Selective float fallback (the opt-in remedy for layers that lose too much in INT8, typically MobileNetV3's
hard-swish and squeeze-excite layers) keeps the named layers in float. The result is a *mixed* model, not
full-integer: it runs on a CPU, but an integer-only accelerator will not take the float layers.
:class:`FallbackQuantizer` ranks the layers by quantization error with TFLite's QuantizationDebugger (RMSE
of each layer's quantized output against its float output, in units of the layer's quantization step).

The converter is fed the model from ``training.model.export_model``: input (1, H, W, 3), so every shape
in the graph is static. :func:`check_static` refuses a flatbuffer that still has a dynamic dimension.

TensorFlow is imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from inspector.bundle import InferenceSpec, Manifest, Precision, Provenance, TensorSpec
from inspector.camera import CameraReference
from inspector.decision import DecisionPolicy
from inspector.nativelog import native_stderr_filtered
from inspector.preprocess import PreprocessSpec

log = logging.getLogger(__name__)

IO_DTYPES = ("uint8", "int8")
RepresentativeDataset = Callable[[], Iterator[List[np.ndarray]]]


class ConversionError(RuntimeError):
    """The model cannot be converted as asked; the message says why and what to change."""


@dataclass
class Conversion:
    """A converted model and what it is made of."""

    model: bytes
    precision: Precision
    input: TensorSpec
    output: TensorSpec
    ops: Dict[str, int]  # builtin op name -> count
    float_ops: Dict[str, int]  # ops computing in float (non-empty for float models and mixed INT8)
    float_nodes: List[str] = field(default_factory=list)  # layers kept float on request
    float_op_types: List[str] = field(default_factory=list)  # op types kept float on request
    seconds: float = 0.0
    class_map: Optional[TensorSpec] = None  # the second output, per-cell class logits (training.cam)

    @property
    def mixed(self) -> bool:
        """An INT8 model with float layers: runs on CPU, not on integer-only accelerators."""
        return self.precision == Precision.INT8 and bool(self.float_ops)

    @property
    def kind(self) -> str:
        if self.precision != Precision.INT8:
            return self.precision.value
        return "int8 (mixed: float fallback)" if self.mixed else "int8 (full integer)"

    def manifest(
        self,
        *,
        name: str,
        version: str,
        labels: Sequence[str],
        good_class: str,
        preprocess: PreprocessSpec,
        decision: Optional[DecisionPolicy] = None,
        inference: Optional[InferenceSpec] = None,
        camera: Optional[CameraReference] = None,
        metrics: Optional[Dict[str, Any]] = None,
        provenance: Optional[Provenance] = None,
    ) -> Manifest:
        """The bundle manifest of this model: the tensors the conversion produced (precision, input, output,
        class map) written one way for every caller, plus what only the caller knows."""
        return Manifest(
            name=name,
            version=version,
            labels=list(labels),
            good_class=good_class,
            precision=self.precision,
            preprocess=preprocess,
            input=self.input,
            output=self.output,
            class_map=self.class_map,
            decision=decision or DecisionPolicy(),
            inference=inference or InferenceSpec(),
            camera=camera,
            metrics=metrics or {},
            provenance=provenance or Provenance(),
        )

    def describe(self) -> dict:
        return {
            "precision": self.precision.value,
            "kind": self.kind,
            "bytes": len(self.model),
            "input": self.input.model_dump(),
            "output": self.output.model_dump(),
            "class_map": self.class_map.model_dump() if self.class_map is not None else None,
            "ops": self.ops,
            "float_ops": self.float_ops,
            "float_nodes": self.float_nodes,
            "float_op_types": self.float_op_types,
            "seconds": round(self.seconds, 1),
        }


@dataclass(frozen=True)
class LayerError:
    """Quantization error of one layer: RMSE against float, in quantization steps (>~0.7 is suspect)."""

    tensor: str
    op: str
    rmse_over_scale: float
    scale: float


def _quiet_tf() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def load_keras_model(path: str | os.PathLike):
    """Load a training run's ``model.keras`` (importing ``training.model`` registers its custom layers)."""
    _quiet_tf()
    import keras

    import training.model  # noqa: F401  (registers SqueezeExcite for deserialization)

    try:
        return keras.models.load_model(path, compile=False)
    except (OSError, ValueError) as exc:
        raise ConversionError(f"{path}: cannot load the Keras model: {exc}") from None


def export_for_conversion(model, class_map: bool = True):
    """The model with a fixed (1, H, W, 3) float32 input, as training defines it for TFLite, and (by
    default) the class activation map as a second output (``training.cam``): where the defect is."""
    from training.cam import with_class_map
    from training.model import export_model

    fixed = export_model(model)
    return with_class_map(fixed) if class_map else fixed


def _int8_graph(fixed_model):
    from training.export_graph import split_hard_swish

    return split_hard_swish(fixed_model)


def _converter(fixed_model):
    _quiet_tf()
    import tensorflow as tf

    return tf, tf.lite.TFLiteConverter.from_keras_model(fixed_model)


def _configure_int8(tf, converter, representative: RepresentativeDataset, io_dtype: str, allow_float: bool):
    if io_dtype not in IO_DTYPES:
        raise ConversionError(f"INT8 input/output type must be one of {IO_DTYPES}, got {io_dtype!r}")
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if allow_float:
        ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)
    converter.target_spec.supported_ops = ops
    converter.inference_input_type = getattr(tf, io_dtype)
    converter.inference_output_type = getattr(tf, io_dtype)


@contextlib.contextmanager
def _quiet_conversion():
    """Silence what the converter prints on success: Keras' export listing of every captured tensor
    (stdout), TF's Python logger and the converter's UserWarnings. Errors still raise."""
    import tensorflow as tf

    logger = tf.get_logger()
    old = logger.level
    logger.setLevel(40)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        logger.setLevel(old)


def convert(
    fixed_model,
    precision: Precision | str,
    representative: Optional[RepresentativeDataset] = None,
    io_dtype: str = "uint8",
    float_nodes: Sequence[str] = (),
    float_op_types: Sequence[str] = (),
    split_hard_swish: bool = True,
) -> Conversion:
    """Convert a fixed-batch Keras model (see :func:`export_for_conversion`).

    ``float_nodes`` / ``float_op_types`` (INT8 only) keep those layers / TFLite op types in float: the
    result is a mixed model (see the module docstring and :class:`FallbackQuantizer`). At INT8, hard-swish
    is written in ops XNNPACK takes so the model runs in one partition (``training.export_graph``, same
    function); ``split_hard_swish=False`` keeps the fused HARD_SWISH, for comparison only.
    """
    precision = Precision(precision)
    if precision == Precision.INT8 and split_hard_swish:
        fixed_model = _int8_graph(fixed_model)
    if float_nodes or float_op_types:
        if precision != Precision.INT8:
            raise ConversionError("float fallback only applies to INT8 conversion")
        return FallbackQuantizer(fixed_model, representative, io_dtype).convert(float_nodes, float_op_types)
    start = time.perf_counter()
    tf, converter = _converter(fixed_model)
    if precision == Precision.INT8:
        if representative is None:
            raise ConversionError("INT8 conversion needs a representative sample")
        _configure_int8(tf, converter, representative, io_dtype, allow_float=False)
    elif precision == Precision.FLOAT16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    return _conversion(_run(converter), precision, start)


def _conversion(
    model: bytes,
    precision: Precision,
    start: float,
    float_nodes: Sequence[str] = (),
    float_op_types: Sequence[str] = (),
) -> Conversion:
    check_static(model)
    ops, float_ops = op_census(model)
    inp, out, class_map = tensor_specs(model)
    return Conversion(
        bytes(model),
        precision,
        inp,
        out,
        ops,
        float_ops,
        list(float_nodes),
        list(float_op_types),
        time.perf_counter() - start,
        class_map,
    )


def _run(converter) -> bytes:
    with _quiet_conversion(), native_stderr_filtered():
        try:
            return converter.convert()
        except Exception as exc:  # the converter raises ConverterError and several others
            raise ConversionError(f"TFLite conversion failed: {exc}") from None


class FallbackQuantizer:
    """One calibration of the model, from which layer errors are measured and mixed models are built.

    Wraps TFLite's QuantizationDebugger: calibrating is the expensive part, so ranking the layers and
    re-quantizing with some of them denylisted share it.
    """

    def __init__(self, fixed_model, representative: Optional[RepresentativeDataset], io_dtype: str = "uint8"):
        if representative is None:
            raise ConversionError("INT8 conversion needs a representative sample")
        start = time.perf_counter()
        self.tf, converter = _converter(_int8_graph(fixed_model))
        self.io_dtype = io_dtype
        _configure_int8(self.tf, converter, representative, io_dtype, allow_float=True)
        with _quiet_conversion():
            try:
                self.debugger = self.tf.lite.experimental.QuantizationDebugger(
                    converter=converter, debug_dataset=representative
                )
            except Exception as exc:
                raise ConversionError(f"INT8 calibration for float fallback failed: {exc}") from None
        self.calibration_seconds = time.perf_counter() - start

    def sensitivity(self) -> List[LayerError]:
        """Layers ranked by INT8 error (RMSE / scale of the layer output, largest first)."""
        with _quiet_conversion():
            self.debugger.run()
        buffer = io.StringIO()
        self.debugger.layer_statistics_dump(buffer)
        buffer.seek(0)
        layers = []
        for row in csv.DictReader(buffer):
            scale = float(row["scale"])
            mse = float(row["mean_squared_error"])
            if not scale or not np.isfinite(mse):
                continue
            layers.append(LayerError(row["tensor_name"], row["op_name"], float(np.sqrt(mse) / scale), scale))
        layers.sort(key=lambda e: e.rmse_over_scale, reverse=True)
        return layers

    def convert(self, float_nodes: Sequence[str] = (), float_op_types: Sequence[str] = ()) -> Conversion:
        """Quantize everything except the denylisted layers / op types, with the requested integer I/O."""
        from tensorflow.lite.python import util as tflite_util

        start = time.perf_counter()
        tf = self.tf
        with _quiet_conversion():
            self.debugger.options = tf.lite.experimental.QuantizationDebugOptions(
                denylisted_nodes=list(float_nodes) or None,
                denylisted_ops=list(float_op_types) or None,
                fully_quantize=False,
            )
            model = self.debugger.get_nondebug_quantized_model()
            # Float I/O with QUANTIZE/DEQUANTIZE at the ends; the converter's own helper makes them integer.
            dtype = getattr(tf, self.io_dtype)
            model = tflite_util.modify_model_io_type(model, dtype, dtype)
        conversion = _conversion(model, Precision.INT8, start - self.calibration_seconds, float_nodes, float_op_types)
        if conversion.input.dtype != self.io_dtype:
            # A float layer right at the input leaves no QUANTIZE op to turn into integer input; the bundle
            # records the real input type and the station feeds that, but the user asked for integer I/O.
            log.warning(
                "the mixed model takes %s input, not %s: a layer kept float reads the input directly",
                conversion.input.dtype,
                self.io_dtype,
            )
        return conversion


def _interpreter(model: bytes):
    """A TFLite interpreter without the default delegate, so the op list is the model's own."""
    from ai_edge_litert import interpreter as litert

    it = litert.Interpreter(
        model_content=model,
        experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    it.allocate_tensors()
    return it


def check_static(model: bytes) -> None:
    """Refuse a model with a dynamic dimension anywhere: devices and accelerators need static shapes."""
    it = _interpreter(model)
    dynamic = [d["name"] for d in it.get_tensor_details() if np.any(np.asarray(d.get("shape_signature", [])) < 0)]
    if dynamic:
        raise ConversionError(
            f"the converted model has {len(dynamic)} tensor(s) with a dynamic dimension (first: {dynamic[0]}); "
            "convert the fixed-batch export of the model (training.model.export_model)"
        )


def op_census(model: bytes) -> Tuple[Dict[str, int], Dict[str, int]]:
    """(op name -> count, float-computing op name -> count); QUANTIZE/DEQUANTIZE are not float compute."""
    it = _interpreter(model)
    tensors = {d["index"]: d for d in it.get_tensor_details()}
    ops: Counter = Counter()
    float_ops: Counter = Counter()
    for op in it._get_ops_details():  # no public listing of a model's ops in the Python API
        name = op["op_name"]
        ops[name] += 1
        if name in ("QUANTIZE", "DEQUANTIZE"):
            continue
        outputs = [tensors[i] for i in op["outputs"] if i in tensors]
        if any(np.dtype(t["dtype"]) in (np.float32, np.float16) for t in outputs):
            float_ops[name] += 1
    return dict(sorted(ops.items())), dict(sorted(float_ops.items()))


def tensor_specs(model: bytes) -> Tuple[TensorSpec, TensorSpec, Optional[TensorSpec]]:
    """Input, probabilities and class map (None without it) TensorSpecs, the outputs told apart as the
    shared interpreter (``inspector.inference.ModelRunner``) tells them apart: by rank, not by position."""
    from inspector.inference import ModelRunner, split_outputs

    runner = ModelRunner(model, threads=1)
    probabilities, class_map = split_outputs(runner.interpreter.get_output_details())

    def spec(detail) -> TensorSpec:
        scale, zero_point = detail["quantization"]
        return TensorSpec(
            dtype=np.dtype(detail["dtype"]).name,
            shape=[int(d) for d in detail["shape"]],
            scale=float(scale),
            zero_point=int(zero_point),
        )

    return (
        spec(runner.interpreter.get_input_details()[0]),
        spec(probabilities),
        spec(class_map) if class_map is not None else None,
    )
