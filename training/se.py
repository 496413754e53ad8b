"""Squeeze-and-excitation channel attention on the backbone's final feature map.

Defects are small and local; the backbone's last feature map holds hundreds of channels, of which only
some respond to scratches or pits. The block learns a per-channel gate from the globally pooled map
(squeeze: global average pool; excite: 1x1 reduce + ReLU, 1x1 expand + sigmoid) and rescales the channels
before pooling, so the classifier sees the defect-sensitive channels amplified.

It is one registered layer (``inspector>SqueezeExcite``) so that it is easy to find in a model, saves and
loads with plain ``keras.models.load_model`` once this module is imported, and converts to TFLite as
MEAN, CONV_2D, RELU, LOGISTIC and MUL ops.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="inspector")
class SqueezeExcite(keras.layers.Layer):
    """``x * sigmoid(W2 relu(W1 mean_hw(x)))`` with ``W1: C -> max(min_channels, C // ratio)``."""

    def __init__(self, ratio: int = 16, min_channels: int = 8, **kwargs):
        super().__init__(**kwargs)
        if ratio < 1:
            raise ValueError(f"squeeze-and-excitation ratio must be >= 1, got {ratio}")
        self.ratio = int(ratio)
        self.min_channels = int(min_channels)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        reduced = max(self.min_channels, channels // self.ratio)
        self.reduce_kernel = self.add_weight(
            name="reduce_kernel", shape=(1, 1, channels, reduced), initializer="glorot_uniform"
        )
        self.reduce_bias = self.add_weight(name="reduce_bias", shape=(reduced,), initializer="zeros")
        self.expand_kernel = self.add_weight(
            name="expand_kernel", shape=(1, 1, reduced, channels), initializer="glorot_uniform"
        )
        self.expand_bias = self.add_weight(name="expand_bias", shape=(channels,), initializer="zeros")

    @property
    def reduced_channels(self) -> int:
        return int(self.reduce_kernel.shape[-1])

    def call(self, inputs):
        squeezed = ops.mean(inputs, axis=(1, 2), keepdims=True)
        gate = ops.relu(ops.conv(squeezed, self.reduce_kernel) + self.reduce_bias)
        gate = ops.sigmoid(ops.conv(gate, self.expand_kernel) + self.expand_bias)
        return inputs * gate

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "ratio": self.ratio, "min_channels": self.min_channels}
