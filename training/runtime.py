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
from typing import Iterator, List, Optional

import keras
import tensorflow as tf

from training.config import MixedPrecision, Strategy

log = logging.getLogger(__name__)

_POLICIES = {MixedPrecision.FLOAT16: "mixed_float16", MixedPrecision.BFLOAT16: "mixed_bfloat16"}


def make_strategy(kind: Strategy, devices: Optional[List[str]] = None) -> tf.distribute.Strategy:
    """``default`` (one device, or whatever TF picks), ``mirrored`` (all local GPUs, or ``devices``),
    ``multi_worker`` (the cluster in TF_CONFIG)."""
    kind = Strategy(kind)
    if kind is Strategy.MIRRORED:
        return tf.distribute.MirroredStrategy(devices=devices or None)
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


@contextlib.contextmanager
def keras_multi_worker_fixes(model: keras.Model, strategy: tf.distribute.Strategy, element_spec) -> Iterator[None]:
    """Work around two Keras 3 bugs that make ``fit`` fail under MultiWorkerMirroredStrategy.

    Keras' TensorFlow trainer (keras-team/keras#20585, open for Keras 3.x, seen here with 3.15):

    1. before training it reduces the first *distributed* batch across workers to build the model
       symbolically, and the collective reduce of per-replica data raises "Attempt to convert a value
       (PerReplica...)". The build needs only shapes and dtypes, so it is done from the element spec;
    2. it reduces each step's scalar logs (loss, accuracy) with ``strategy.reduce("MEAN", v, axis=0)``,
       which raises "Invalid reduction dimension 0 for input with 0 dimensions". Scalars are reduced
       with ``axis=None`` (the mean over replicas) instead; everything else keeps Keras' own path.

    Only active for a multi-worker strategy, and only for the duration of the block.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        yield
        return
    from keras.src.backend.tensorflow import trainer as tf_trainer

    def symbolic_build_from_spec(iterator=None, data_batch=None):
        with strategy.scope():
            model._symbolic_build(data_batch=element_spec)

    original_reduce = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy_, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy_):

            def reduce_one(v):
                local = v.values[0] if tf_trainer._is_per_replica_instance(v) else v
                if getattr(local, "shape", None) is not None and local.shape.rank == 0:
                    return strategy_.reduce("MEAN", v, axis=None)
                return original_reduce(v, strategy_, reduction)

            return keras.tree.map_structure(reduce_one, values)
        return original_reduce(values, strategy_, reduction)

    model._maybe_symbolic_build = symbolic_build_from_spec
    tf_trainer.reduce_per_replica = reduce_per_replica
    try:
        yield
    finally:
        tf_trainer.reduce_per_replica = original_reduce
        del model._maybe_symbolic_build
