"""Training-time augmentation of float32 0-255 image batches, each kind switchable on its own.

Chosen for inspection images: parts can appear mirrored, slightly rotated or shifted in the fixture,
and light varies between shifts (brightness/contrast); optional blur and noise imitate focus drift and
sensor noise. Nothing here changes colours' meaning or crops defects away, and the class never depends
on orientation. Geometric changes fill with reflected pixels, not black borders the edge never sees.
"""

from __future__ import annotations

import math
from typing import Callable, List

import keras
import tensorflow as tf

from training.config import AugmentConfig


def _gaussian_kernel(sigma: float) -> tf.Tensor:
    radius = max(1, int(math.ceil(2.5 * sigma)))
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    k = tf.exp(-(x**2) / (2.0 * sigma**2))
    k = k / tf.reduce_sum(k)
    k2 = tf.tensordot(k, k, axes=0)
    return tf.tile(k2[:, :, None, None], [1, 1, 3, 1])


def build_augmenter(cfg: AugmentConfig, seed: int) -> Callable[[tf.Tensor], tf.Tensor]:
    """A function mapping a float32 NxHxWx3 batch to an augmented batch (identity when disabled)."""
    if not cfg.enabled:
        return lambda x: x
    steps: List[Callable[[tf.Tensor], tf.Tensor]] = []
    flip_mode = (
        "horizontal_and_vertical"
        if cfg.hflip and cfg.vflip
        else ("horizontal" if cfg.hflip else "vertical" if cfg.vflip else None)
    )
    if flip_mode:
        flip = keras.layers.RandomFlip(flip_mode, seed=seed)
        steps.append(lambda x: flip(x, training=True))
    if cfg.rotation_degrees > 0:
        rotate = keras.layers.RandomRotation(cfg.rotation_degrees / 360.0, fill_mode="reflect", seed=seed + 1)
        steps.append(lambda x: rotate(x, training=True))
    if cfg.shift > 0:
        shift = keras.layers.RandomTranslation(cfg.shift, cfg.shift, fill_mode="reflect", seed=seed + 2)
        steps.append(lambda x: shift(x, training=True))
    if cfg.zoom > 0:
        zoom = keras.layers.RandomZoom(cfg.zoom, fill_mode="reflect", seed=seed + 3)
        steps.append(lambda x: zoom(x, training=True))

    def photometric(x: tf.Tensor) -> tf.Tensor:
        n = tf.shape(x)[0]
        if cfg.contrast > 0:
            mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
            factor = tf.random.uniform([n, 1, 1, 1], 1.0 - cfg.contrast, 1.0 + cfg.contrast)
            x = (x - mean) * factor + mean
        if cfg.brightness > 0:
            x = x + tf.random.uniform([n, 1, 1, 1], -255.0 * cfg.brightness, 255.0 * cfg.brightness)
        if cfg.blur_probability > 0:
            blurred = tf.nn.depthwise_conv2d(x, _gaussian_kernel(cfg.blur_sigma), [1, 1, 1, 1], "SAME")
            pick = tf.random.uniform([n, 1, 1, 1]) < cfg.blur_probability
            x = tf.where(pick, blurred, x)
        if cfg.noise_std > 0:
            std = tf.random.uniform([n, 1, 1, 1], 0.0, cfg.noise_std)
            x = x + tf.random.normal(tf.shape(x)) * std
        return tf.clip_by_value(x, 0.0, 255.0)

    if cfg.contrast > 0 or cfg.brightness > 0 or cfg.blur_probability > 0 or cfg.noise_std > 0:
        steps.append(photometric)

    def apply(x: tf.Tensor) -> tf.Tensor:
        for step in steps:
            x = step(x)
        return x

    return apply
