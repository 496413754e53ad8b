"""The class activation map head: the classifier's own dense layer applied to every cell of the feature map.

The head is ``se_attention -> pool (global average) -> dropout -> logits (Dense) -> softmax``. Dropout is
the identity at inference and a dense layer is linear, so applying the ``logits`` kernel and bias to each
cell of the SE output *before* pooling gives per-cell class logits whose spatial mean is exactly the
model's logits (Zhou et al., "Learning Deep Features for Discriminative Localization", 2016). The map
costs one 1x1 convolution with one filter per class on a map of input/32 cells, nothing next to the
backbone.

:func:`with_class_map` adds it to an export model as a second output named :data:`CLASS_MAP`, shaped
(1, H/32, W/32, classes); the probabilities stay the first output and are computed exactly as before, so
a bundle's verdicts do not change. The station reads the map in :mod:`inspector.localization`.

Example:
    >>> fixed = with_class_map(export_model(model))   # doctest: +SKIP
    >>> probabilities, cells = fixed(batch)            # doctest: +SKIP
"""

from __future__ import annotations

import keras
import numpy as np

CLASS_MAP = "class_map"
FEATURES_LAYER = "se_attention"
LOGITS_LAYER = "logits"


def class_map_layer(logits: keras.layers.Dense) -> keras.layers.Conv2D:
    """A 1x1 convolution computing ``logits`` (kernel and bias) at every cell of its input feature map."""
    kernel, bias = logits.get_weights()
    conv = keras.layers.Conv2D(kernel.shape[1], 1, name=CLASS_MAP, dtype="float32")
    conv.build((None, None, None, kernel.shape[0]))
    conv.set_weights([kernel.reshape(1, 1, *kernel.shape).astype(np.float32), bias.astype(np.float32)])
    return conv


def with_class_map(fixed: keras.Model) -> keras.Model:
    """The export model with the per-cell class logits as a second output (the probabilities first).

    ``fixed`` is the output of :func:`training.model.export_model`; a model that already has the map is
    returned as it is.
    """
    if len(fixed.outputs) > 1:
        return fixed
    features = fixed.get_layer(FEATURES_LAYER).output
    cells = class_map_layer(fixed.get_layer(LOGITS_LAYER))(features)
    model = keras.Model(fixed.inputs, [fixed.outputs[0], cells], name=fixed.name)
    model.trainable = False
    return model
