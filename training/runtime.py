"""Devices and precision: the tf.distribute strategy, mixed precision and who writes the run folder.

The trainer never assumes one device: the model, its optimizer and metrics are created inside
``strategy.scope()``, batches are ``batch_size x replicas``, and in a multi-worker cluster only the chief
writes RUN_DIR (the other workers write their checkpoints to a private temporary folder, as the
tf.distribute multi-worker guide requires, because saving may involve collective operations).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from typing import Iterator

import keras
import tensorflow as tf

from training.config import MixedPrecision, Strategy

log = logging.getLogger(__name__)

_POLICIES = {MixedPrecision.FLOAT16: "mixed_float16", MixedPrecision.BFLOAT16: "mixed_bfloat16"}


def make_strategy(kind: Strategy) -> tf.distribute.Strategy:
    """``default`` (one device, or whatever TF picks), ``mirrored`` (all local GPUs), ``multi_worker``."""
    kind = Strategy(kind)
    if kind is Strategy.MIRRORED:
        return tf.distribute.MirroredStrategy()
    if kind is Strategy.MULTI_WORKER:
        if "TF_CONFIG" not in os.environ:
            log.warning("multi_worker strategy without TF_CONFIG: running as a single worker")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief() -> bool:
    """True unless TF_CONFIG names this process as a non-chief worker (worker 0 is chief if none is)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return True
    config = json.loads(raw)
    task = config.get("task", {})
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    if kind == "chief":
        return True
    has_chief = "chief" in config.get("cluster", {})
    return kind == "worker" and index == 0 and not has_chief


@contextlib.contextmanager
def precision(mode: MixedPrecision) -> Iterator[None]:
    """Set the global Keras dtype policy for the block and restore the previous one after."""
    mode = MixedPrecision(mode)
    previous = keras.mixed_precision.global_policy().name
    if mode is not MixedPrecision.OFF:
        keras.mixed_precision.set_global_policy(_POLICIES[mode])
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
