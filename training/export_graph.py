"""Export-time graph rewrite so that the whole INT8 model runs in one XNNPACK partition, with the same math.

Why: TFLite's XNNPACK delegate (the CPU fast path on x86 and ARM) has no quantized HARD_SWISH kernel in
ai-edge-litert 2.3. MobileNetV3 applies hard-swish after almost every convolution (18 times in the Small
backbone), and the converter fuses any ``x * relu6(x + 3) / 6`` it sees, whatever the operand order, back
into one HARD_SWISH op. Each of them falls back to TFLite's own kernel, which cuts the full-integer model
into 19 delegate partitions with layout conversions between them: INT8 ran 2-3x *slower* than float32.

:func:`split_hard_swish` replaces every ``Activation("hard_swish")`` (Keras serializes it as ``hard_silu``)
of an export model's config with :class:`SplitHardSwish`, ``0.5 x clip(x / 3, -1, 1) + 0.5 x``: the same
function (for |x| <= 3 it is x (x + 3) / 6, above 3 it is x, below -3 it is 0), written so that the
converter emits three MULs (the clip fused into the first as RELU_N1_TO_1) and one ADD, which XNNPACK
runs at INT8. No weight changes: the new layer has none, so ``set_weights`` takes the list unchanged.
``calibration.convert`` applies it to INT8 conversions only: XNNPACK takes float32 HARD_SWISH, and one op
is faster than four (0.51 against 0.61 ms per invoke on the magnetic-tile model).

Of the forms measured on the magnetic-tile model (docs/calibration.md, "Delegation"), this one's INT8
error is closest to HARD_SWISH's: ``(x / 6) * relu6(x + 3)`` is also one partition but lost 4.9 pp of
validation accuracy (against 0.5 pp), and ``x * relu6(x + 3)`` would need the 1/6 folded into the
weights of whatever follows.

XNNPACK takes a quantized ADD only when each input's scale is at least 2**-10 of the output's; here the
two inputs scale with ``x``, which holds unless a whole hard-swish input spans less than about +-0.003 (a
dead layer, e.g. a random-init network whose batch-norm statistics were never set: see
``bench.models.settle_batchnorm``).

Everything else of MobileNetV3 + SE already stays in the delegate at INT8 (checked op by op: MEAN over H
and W, LOGISTIC, broadcasting MUL, the backbone's hard-sigmoid ``relu6(x + 3) / 6`` in its SE blocks,
which becomes a CONV_2D with fused ReLU6 and a MUL). Only the ends run outside it, which splits nothing:
the uint8 <-> int8 QUANTIZE of input and output and the final SOFTMAX over the class logits.
:func:`inspector.delegation.delegation` counts the partitions of a converted model.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

HARD_SWISH_NAMES = ("hard_swish", "hard_silu")  # Keras 3 serializes hard_swish under its alias

__all__ = ["SplitHardSwish", "delegate_friendly_config", "split_hard_swish"]


@keras.saving.register_keras_serializable(package="inspector")
class SplitHardSwish(keras.layers.Layer):
    """Hard-swish ``x * relu6(x + 3) / 6`` computed as ``0.5 x clip(x / 3, -1, 1) + 0.5 x`` (module docstring)."""

    def call(self, inputs):
        half = inputs * 0.5
        return half * ops.clip(inputs * (1.0 / 3.0), -1.0, 1.0) + half

    def compute_output_shape(self, input_shape):
        return input_shape


def _is_hard_swish(layer: dict) -> bool:
    config = layer.get("config")
    return (
        layer.get("class_name") == "Activation"
        and isinstance(config, dict)
        and config.get("activation") in HARD_SWISH_NAMES
    )


def _split_hard_swish(layer: dict) -> dict:
    """The layer config of a SplitHardSwish in place of an Activation layer: same name, same inbound nodes."""
    identity = keras.saving.serialize_keras_object(SplitHardSwish())
    config = {k: v for k, v in layer["config"].items() if k != "activation"}
    return {**layer, **{k: identity[k] for k in ("module", "class_name", "registered_name")}, "config": config}


def delegate_friendly_config(node: Any) -> Any:
    """A model config (nested models included) with every hard-swish Activation replaced by SplitHardSwish."""
    if isinstance(node, list):
        return [delegate_friendly_config(v) for v in node]
    if not isinstance(node, dict):
        return node
    if _is_hard_swish(node):
        return _split_hard_swish(node)
    return {k: delegate_friendly_config(v) for k, v in node.items()}


def split_hard_swish(model: keras.Model) -> keras.Model:
    """A copy of an export model (fixed batch, any number of outputs) with :class:`SplitHardSwish` in place
    of every hard-swish Activation and the same weights; the model itself when it has none (minimalistic)."""
    config = model.get_config()
    rewritten = delegate_friendly_config(config)
    if rewritten == config:
        return model
    copy_ = model.__class__.from_config(rewritten)
    copy_.set_weights(model.get_weights())
    copy_.trainable = False
    return copy_
