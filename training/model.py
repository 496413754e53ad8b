"""The classifier: Keras MobileNetV3 backbone + squeeze-and-excitation head, and its export form.

Layout (layer names are part of the contract, tests and calibration look them up)::

    image (raw RGB 0-255) -> backbone (MobileNetV3Small/Large, include_preprocessing=True, no top)
      -> se_attention (SqueezeExcite) -> pool (global average) -> dropout -> logits (Dense)
      -> probabilities (softmax, float32)

The backbone is one nested layer named ``backbone`` so that "freeze the backbone" and "train its top N
layers" mean exactly ``backbone.layers``. Keras' own Rescaling layer sits inside, so every caller feeds
the same raw pixels the edge gets from :class:`inspector.preprocess.Preprocessor`.

Example:
    >>> from training.config import ModelConfig
    >>> m = build_model(ModelConfig(input_size=(64, 64), weights="none"), num_classes=3)  # doctest: +SKIP
    >>> export_model(m).input_shape                                                       # doctest: +SKIP
    (1, 64, 64, 3)
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, List, Optional

import keras

from training.config import ModelConfig
from training.se import SqueezeExcite

BACKBONE = "backbone"
HEAD_LAYERS = ("se_attention", "pool", "dropout", "logits", "probabilities")
_WEIGHTS_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/"

__all__ = [
    "SqueezeExcite",
    "WeightsError",
    "build_model",
    "export_model",
    "rebuild_float32",
    "backbone_of",
    "set_stage",
    "imagenet_weights_url",
]


class WeightsError(ValueError):
    """Backbone weights cannot be obtained or do not fit; the message says what to do instead."""


def imagenet_weights_url(cfg: ModelConfig) -> str:
    """Where Keras downloads the no-top ImageNet weights of this backbone (for offline users)."""
    kind = "large" if cfg.backbone.value == "large" else "small"
    name = f"{kind}{'_minimalistic' if cfg.minimalistic else ''}_224_{cfg.alpha}_float"
    return f"{_WEIGHTS_BASE_URL}weights_mobilenet_v3_{name}_no_top_v2.h5"


def _application(cfg: ModelConfig):
    return getattr(keras.applications, cfg.backbone.keras_name)


def build_backbone(cfg: ModelConfig, weights: Optional[str]) -> keras.Model:
    """The Keras application without its top, with ``weights`` None, 'imagenet' or a file path.

    A failed download or an unusable file is a :class:`WeightsError`; there is no silent fallback to
    random weights, because a run that silently trained from scratch would look like a bad dataset.
    """
    width, height = cfg.input_size
    kwargs = dict(
        input_shape=(height, width, 3),
        alpha=cfg.alpha,
        minimalistic=cfg.minimalistic,
        include_top=False,
        include_preprocessing=True,
        name=BACKBONE,
    )
    if weights is None:
        backbone = _application(cfg)(weights=None, **kwargs)
    elif weights == "imagenet":
        try:
            backbone = _application(cfg)(weights="imagenet", **kwargs)
        except Exception as exc:  # network errors come as several exception types from urllib/get_file
            raise WeightsError(
                f"cannot download ImageNet weights for {cfg.backbone.keras_name} (alpha {cfg.alpha}"
                f"{', minimalistic' if cfg.minimalistic else ''}): {exc}. Without internet access, fetch "
                f"{imagenet_weights_url(cfg)} on another machine, copy it here and pass "
                f"--weights /path/to/that.h5, or train from scratch with --weights none"
            ) from None
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"backbone weights file {weights} not found; pass an existing Keras weights file "
                f"(.weights.h5 or the Keras-applications .h5, e.g. {imagenet_weights_url(cfg).rsplit('/', 1)[1]}), "
                f"--weights imagenet to download, or --weights none for random init"
            )
        backbone = _application(cfg)(weights=None, **kwargs)
        try:
            backbone.load_weights(str(path))
        except Exception as exc:
            raise WeightsError(
                f"{path}: cannot load as weights of {cfg.backbone.keras_name} (alpha {cfg.alpha}, "
                f"minimalistic {cfg.minimalistic}, no top): {exc}"
            ) from None
    if cfg.bn_momentum is not None:
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = cfg.bn_momentum
    return backbone


def build_model(
    cfg: ModelConfig, num_classes: int, batch_size: Optional[int] = None, init_weights: bool = True
) -> keras.Model:
    """Backbone + SE head; ``init_weights=False`` skips loading backbone weights (they come later)."""
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got {num_classes}")
    weights = None
    if init_weights and cfg.pretrained:
        weights = cfg.weights
    width, height = cfg.input_size
    inputs = keras.Input(shape=(height, width, 3), batch_size=batch_size, name="image")
    features = build_backbone(cfg, weights)(inputs)
    x = SqueezeExcite(ratio=cfg.se_ratio, name="se_attention")(features)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(cfg.dropout, name="dropout")(x)
    x = keras.layers.Dense(num_classes, name="logits")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"inspector_{cfg.backbone.value}")


def backbone_of(model: keras.Model) -> keras.Model:
    return model.get_layer(BACKBONE)


def set_stage(model: keras.Model, stage: str, unfreeze_layers: int = 0, train_batchnorm: bool = False) -> None:
    """Set which layers train in a stage: ``head`` (backbone frozen), ``finetune`` (top N) or ``full``.

    A frozen BatchNormalization layer runs in inference mode in Keras 3, so freezing the backbone also
    keeps its statistics fixed. Call before ``compile`` (Keras reads the flags at compile time).
    """
    if stage not in ("head", "finetune", "full"):
        raise ValueError(f"unknown stage {stage!r}")
    backbone = backbone_of(model)
    for layer in model.layers:
        if layer is not backbone:
            layer.trainable = True
    layers: List[keras.layers.Layer] = backbone.layers
    cut = {"head": len(layers), "finetune": max(len(layers) - unfreeze_layers, 0), "full": 0}[stage]
    backbone.trainable = stage != "head"
    # Each layer explicitly: Keras does not re-propagate trainable=True into a nested model's layers.
    for i, layer in enumerate(layers):
        trainable = i >= cut
        if stage == "finetune" and isinstance(layer, keras.layers.BatchNormalization) and not train_batchnorm:
            trainable = False
        layer.trainable = trainable


def _rewrite_config(node: Any, batch_size: Optional[int]) -> Any:
    """Rewrite a model config: every Input gets ``batch_size``, every dtype policy becomes float32."""
    if isinstance(node, list):
        return [_rewrite_config(v, batch_size) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _rewrite_config(v, batch_size) for k, v in node.items()}
    cls = out.get("class_name")
    if cls == "InputLayer" and isinstance(out.get("config"), dict) and out["config"].get("batch_shape"):
        out["config"]["batch_shape"] = [batch_size] + list(out["config"]["batch_shape"][1:])
    if cls in ("DTypePolicy", "FloatDTypePolicy") and isinstance(out.get("config"), dict):
        out["config"]["name"] = "float32"
    return out


def rebuild_float32(model: keras.Model, batch_size: Optional[int] = None) -> keras.Model:
    """An uncompiled copy with float32 compute and the given input batch size, same weights."""
    config = _rewrite_config(copy.deepcopy(model.get_config()), batch_size)
    copy_ = model.__class__.from_config(config)
    copy_.set_weights(model.get_weights())
    return copy_


def export_model(model: keras.Model) -> keras.Model:
    """The same layers and weights with input shape (1, H, W, 3) and float32 compute, for TFLite.

    A fixed batch of one gives the converter static shapes everywhere (no SHAPE/dynamic-reshape ops),
    and float32 undoes a mixed-precision training policy before quantization.
    """
    fixed = rebuild_float32(model, batch_size=1)
    fixed.trainable = False
    return fixed
