"""Benchmark 6: training speed on this CPU, seconds per epoch and images per second.

For MobileNetV3 Small and Large at 224 and 128, the product's training pieces are put together the way
:func:`training.trainer.train` does for a random-init run (stage ``full``: every layer trains):
:func:`training.model.build_model`, :func:`training.trainer.make_optimizer`, the augmenting
:func:`training.data.train_dataset` at the default batch size (32) and the trainer's compile settings
(AdamW, label-smoothed cross-entropy, Keras' default jit_compile). A Keras callback times every step;
the first step (graph tracing, XLA compilation) is reported separately and excluded from the per-step median.
Images are random pixels: the time of a step does not depend on what the pictures show.

Seconds per epoch = steps of one pass over the magnetic-tile training split (70 % of its 1,344 images,
batch 32) x the median step time; the per-epoch validation pass is not included.

Full: the four configurations, 8 timed steps each. Quick: Small at 128 only, 3 timed steps (the first step,
tracing and XLA compilation, takes about 1-2 minutes per configuration on two busy cores).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from bench.common import DATASET, context, log, summary, write_result

NAME = "training"
CONFIGS = [("small", 224), ("small", 128), ("large", 224), ("large", 128)]
QUICK_CONFIGS = [("small", 128)]  # the first step alone (tracing + XLA) takes minutes on a busy 2-core machine
BATCH = 32
TRAIN_FRACTION = 0.7
DATASET_IMAGES = 1344  # magnetic tile, when the folder is not here to count


def _train_images() -> int:
    """Images in the magnetic-tile training split (70 % of each class)."""
    if DATASET.is_dir():
        return sum(int(round(TRAIN_FRACTION * len(list(d.glob("*.jpg"))))) for d in DATASET.iterdir() if d.is_dir())
    return int(round(TRAIN_FRACTION * DATASET_IMAGES))


def measure(arch: str, size: int, steps: int) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    from training.config import DataConfig, ModelConfig, TrainConfig
    from training.data import ImageSet, train_dataset
    from training.model import build_model, set_stage
    from training.trainer import make_optimizer

    config = TrainConfig(
        data=DataConfig(root="unused"), model=ModelConfig(backbone=arch, input_size=(size, size), weights="none")
    )
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n, classes = 4 * BATCH, 6
    data = ImageSet(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), rng.integers(0, classes, n), [])
    ds = train_dataset(data, classes, BATCH, config.augment, config.seed)
    model = build_model(config.model, classes)
    set_stage(model, "full")
    optim = config.optim
    # The compile of training.trainer._run_stage (stage "full").
    model.compile(
        optimizer=make_optimizer(config, optim.learning_rate, steps + 1, 0),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=optim.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        run_eagerly=config.runtime.run_eagerly,
        jit_compile="auto" if config.runtime.jit_compile is None else config.runtime.jit_compile,
    )
    times = []

    class StepTimer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.t = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self.t)

    model.fit(ds, epochs=1, steps_per_epoch=steps + 1, callbacks=[StepTimer()], verbose=0)
    keras.backend.clear_session()
    step = summary(times[1:], scale=1.0)
    images = _train_images()
    steps_per_epoch = math.ceil(images / BATCH)
    return {
        "arch": arch,
        "size": size,
        "batch": BATCH,
        "first_step_s": round(times[0], 2),
        "step_s": step,
        "images_per_s": round(BATCH / step["p50"], 2),
        "train_images": images,
        "steps_per_epoch": steps_per_epoch,
        "seconds_per_epoch": round(steps_per_epoch * step["p50"], 1),
    }


def run(quick: bool, out_dir: Path) -> Path:
    started = time.monotonic()
    steps = 3 if quick else 8
    ctx = context(
        quick,
        timed_steps=steps,
        batch=BATCH,
        note="random-init, stage 'full' (all layers train); random pixels; first step excluded",
    )
    rows = []
    for arch, size in QUICK_CONFIGS if quick else CONFIGS:
        row = measure(arch, size, steps)
        rows.append(row)
        log(
            f"train {arch} {size}: {row['step_s']['p50']:.2f} s/step, {row['images_per_s']:.1f} images/s, "
            f"{row['seconds_per_epoch']:.0f} s/epoch (first step {row['first_step_s']:.0f} s)"
        )
    return write_result(out_dir, NAME, ctx, {"rows": rows}, started)
