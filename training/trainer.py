"""Training a run end to end: split, images, model, one or two stages, checkpoints, report, run folder.

With a pretrained backbone the run has two stages: ``head`` trains the SE head and classifier on the
frozen backbone (BatchNorm in inference mode), then ``finetune`` trains the top N backbone layers at a
much lower learning rate. From random weights there is one stage, ``full``. Every stage uses warm-up +
cosine decay (or a constant rate), stops early when the monitored validation value stops improving and
ends with its best epoch's weights. Every epoch is checkpointed, so ``resume=True`` continues a stopped
run from its last finished epoch with the same optimizer state.

RUN_DIR contract (calibration reads it): ``model.keras`` (best model, float32, plain
``keras.models.load_model`` once ``training.model`` is imported), ``run.json`` (labels, good class,
preprocessing, provenance; written last, so its presence means the run is complete), ``split.json``,
``config.json``, ``metrics.json``, ``predictions.json`` (val/test probabilities the metrics come from),
``history.json``, ``report.html`` + PNGs and ``checkpoints/``.

Example:
    >>> from training.config import TrainConfig, DataConfig
    >>> result = train(TrainConfig(data=DataConfig(root="data")), "runs/r1")   # doctest: +SKIP
    >>> result.metrics["test"]["pass_fail"]["roc_auc"]                          # doctest: +SKIP
"""
from __future__ import annotations

import importlib.util
import json
import math
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from inspector import __version__
from inspector.dataset import DatasetError, SplitManifest, make_split, scan_folder
from inspector.metrics import classification_report, roc_auc
from training.checkpoints import Checkpoints
from training.config import Optimizer, Progress, Schedule, TrainConfig
from training.data import ImageSet, eval_dataset, load_split_images, train_dataset
from training.imbalance import ImbalancePlan, plan_imbalance
from training.model import build_model, rebuild_float32, set_stage
from training.runtime import is_chief, keras_multi_worker_fixes, make_strategy, precision

MODEL_FILE = "model.keras"
RUN_FILE = "run.json"
SPLIT_FILE = "split.json"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.json"


class RunError(ValueError):
    """The run folder or the configuration cannot be used as asked."""


@dataclass
class Stage:
    name: str  # head | finetune | full
    epochs: int
    learning_rate: float


@dataclass
class RunResult:
    """What :func:`train` produced; ``metrics`` is the content of metrics.json."""

    run_dir: Path
    model_path: Path
    labels: List[str]
    good_class: str
    metrics: dict
    history: List[dict] = field(default_factory=list)


def plan_stages(config: TrainConfig) -> List[Stage]:
    if not config.model.pretrained:
        return [Stage("full", config.optim.epochs, config.optim.learning_rate)]
    ft = config.finetune
    stages = [Stage("head", ft.head_epochs, ft.head_learning_rate),
              Stage("finetune", ft.epochs, ft.learning_rate)]
    stages = [s for s in stages if s.epochs > 0]
    if not stages:
        raise RunError("finetune.head_epochs and finetune.epochs are both 0: nothing to train")
    return stages


def make_optimizer(config: TrainConfig, peak: float, total_steps: int, warmup_steps: int):
    """Optimizer with linear warm-up then cosine decay (or constant: a cosine with floor 1)."""
    optim = config.optim
    warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
    floor = 1.0 if optim.schedule is Schedule.CONSTANT else optim.min_lr_ratio
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else peak,
        decay_steps=max(total_steps - warmup_steps, 1),
        alpha=floor,
        warmup_target=peak if warmup_steps else None,
        warmup_steps=warmup_steps,
    )
    if optim.optimizer is Optimizer.ADAMW:
        opt = keras.optimizers.AdamW(schedule, weight_decay=optim.weight_decay)
    elif optim.optimizer is Optimizer.SGD:
        opt = keras.optimizers.SGD(schedule, momentum=optim.momentum, nesterov=True,
                                   weight_decay=optim.weight_decay or None)
    else:
        opt = keras.optimizers.Adam(schedule)
    if optim.optimizer is not Optimizer.ADAM and optim.weight_decay:
        opt.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return opt


def predict_probs(model: keras.Model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Class probabilities for uint8 images, no augmentation, in input order."""
    if len(images) == 0:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    return np.asarray(model.predict(eval_dataset(images, batch_size), verbose=0), np.float64)


def _cross_entropy(probs: np.ndarray, labels: np.ndarray) -> float:
    if len(labels) == 0:
        return float("nan")
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0))))


def _json_number(value: float) -> Optional[float]:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


class EpochMonitor(keras.callbacks.Callback):
    """Validation metrics, early stopping, best/last checkpoints and the progress line of each epoch.

    The validation loss is the plain cross-entropy of the un-augmented validation images (no label
    smoothing, no class weights), so it is comparable between runs with different recipes.
    """

    def __init__(self, stage: Stage, stage_index: int, val: ImageSet, good_index: int, config: TrainConfig,
                 checkpoints: Checkpoints, state: dict, batch_size: int, echo: Callable[[str], None]):
        super().__init__()
        self.stage, self.stage_index, self.val, self.good_index = stage, stage_index, val, good_index
        self.es = config.early_stopping
        self.checkpoints, self.state, self.batch_size, self.echo = checkpoints, state, batch_size, echo
        self._started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.time()

    def _improved(self, value: float) -> bool:
        best = self.state.get("best")
        if value is None or math.isnan(value):
            return False
        if best is None:
            return True
        if self.es.monitor.value == "val_auc":
            return value > best + self.es.min_delta
        return value < best - self.es.min_delta

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        seconds = time.time() - self._started
        probs = predict_probs(self.model, self.val.images, self.batch_size)
        y = self.val.labels
        val_auc = roc_auc(1.0 - probs[:, self.good_index], y != self.good_index) if len(y) else float("nan")
        record = {
            "stage": self.stage.name,
            "epoch": epoch + 1,
            "global_epoch": len(self.state["history"]) + 1,
            "loss": float(logs.get("loss", float("nan"))),
            "accuracy": float(logs.get("accuracy", float("nan"))),
            "val_loss": _cross_entropy(probs, y),
            "val_accuracy": float((probs.argmax(1) == y).mean()) if len(y) else float("nan"),
            "val_auc": _json_number(val_auc),
            "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
            "seconds": round(seconds, 2),
        }
        value = record[self.es.monitor.value]
        improved = self._improved(value)
        if improved:
            self.state.update(best=value, best_epoch=epoch + 1, wait=0)
            self.checkpoints.save_best(self.model)
        else:
            self.state["wait"] = self.state.get("wait", 0) + 1
        self.state["history"].append(record)
        self.state["epoch"] = epoch + 1
        if self.state["wait"] >= self.es.patience:
            self.model.stop_training = True
        self.checkpoints.save_last(self.model, self.state)
        auc = "-" if record["val_auc"] is None else f"{record['val_auc']:.3f}"
        self.echo(
            f"{self.stage.name:8s} epoch {epoch + 1:3d}/{self.stage.epochs}  loss {record['loss']:.4f} "
            f"acc {record['accuracy']:.3f}  val_loss {record['val_loss']:.4f} val_acc {record['val_accuracy']:.3f} "
            f"val_auc {auc}  lr {record['learning_rate']:.2e}  {seconds:.1f}s{'  *' if improved else ''}"
        )


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The exact config of an existing run (for --resume)."""
    path = Path(run_dir) / CONFIG_FILE
    try:
        return TrainConfig.model_validate_json(path.read_text())
    except OSError as exc:
        raise RunError(f"{path}: cannot read ({exc.strerror or exc}); is {run_dir} a training run?") from None


def _prepare_split(config: TrainConfig, run_dir: Path, resume: bool) -> SplitManifest:
    saved = run_dir / SPLIT_FILE
    if resume and saved.is_file():
        return SplitManifest.load(saved)
    if config.data.split:
        manifest = SplitManifest.load(config.data.split)
        if manifest.good_class != config.data.good_class:
            raise DatasetError(f"{config.data.split}: split's good class is '{manifest.good_class}', the run "
                               f"asks for '{config.data.good_class}'")
        return manifest
    scan = scan_folder(config.data.root, good_class=config.data.good_class)
    return make_split(scan, seed=config.data.split_seed, ratios=config.data.split_ratios)


def _check_run_dir(run_dir: Path, resume: bool) -> None:
    if resume:
        if not (run_dir / CONFIG_FILE).is_file():
            raise RunError(f"{run_dir}: nothing to resume (no {CONFIG_FILE})")
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        raise RunError(f"{run_dir}: folder is not empty; use --resume to continue that run or choose a new --out")


def _echo_for(config: TrainConfig, chief: bool) -> Callable[[str], None]:
    quiet = config.runtime.progress is Progress.QUIET or not chief

    def echo(text: str) -> None:
        if not quiet:
            print(text, flush=True)

    return echo


def _fit_verbose(config: TrainConfig) -> int:
    progress = config.runtime.progress
    if progress is Progress.AUTO:
        return 1 if sys.stdout.isatty() else 0
    return 1 if progress is Progress.BAR else 0


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=False))
    tmp.replace(path)


def train(config: TrainConfig, run_dir: str | Path, resume: bool = False,
          callbacks: Sequence[keras.callbacks.Callback] = ()) -> RunResult:
    """Train ``config`` into ``run_dir``; with ``resume``, continue the checkpointed run there.

    ``callbacks`` are extra Keras callbacks for every stage, run after the epoch's checkpoint is written.
    """
    run_dir = Path(run_dir)
    if config.runtime.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise RunError("--tensorboard needs the tensorboard package: pip install tensorboard")
    chief = is_chief()
    if chief:  # other workers find the chief's files in a shared RUN_DIR; only the chief checks it
        _check_run_dir(run_dir, resume)
    echo = _echo_for(config, chief)
    if config.runtime.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = make_strategy(config.runtime.strategy, config.runtime.devices)
    run_dir.mkdir(parents=True, exist_ok=True)

    manifest = _prepare_split(config, run_dir, resume)
    labels, good_class = list(manifest.classes), manifest.good_class
    good_index = labels.index(good_class)
    if chief:
        config.save(run_dir / CONFIG_FILE)
        manifest.save(run_dir / SPLIT_FILE)
    spec = config.preprocess_spec()
    started = time.time()
    data = load_split_images(manifest, spec, root=config.data.root or None,
                             cache_dir=run_dir / "cache" if config.data.cache and chief else None)
    if len(data["train"]) == 0 or len(data["val"]) == 0:
        raise DatasetError("the split has an empty train or validation set; add images or change the ratios")
    echo(f"data: {', '.join(f'{n} {len(s)}' for n, s in data.items())} images at {spec.width}x{spec.height} "
         f"({time.time() - started:.1f}s); classes {labels} (good: {good_class})")
    plan = plan_imbalance(data["train"].labels, labels, good_class, config.imbalance.method.value,
                          config.imbalance.good_fraction)
    echo(f"imbalance: {plan.describe()}")

    replicas = strategy.num_replicas_in_sync
    global_batch = config.optim.batch_size * replicas
    steps = config.optim.steps_per_epoch or max(1, math.ceil(len(data["train"]) / global_batch))
    stages = plan_stages(config)
    checkpoints = Checkpoints(run_dir / "checkpoints", writable=chief)
    state = checkpoints.load_state() if resume else None
    # A resumed run continues with a fresh shuffling/augmentation stream, not a replay of epoch 1's.
    data_seed = config.seed + (len(state["history"]) if state else 0)
    keras.utils.set_random_seed(data_seed)  # Python, numpy and TensorFlow: weights init, augmentation
    train_ds = train_dataset(data["train"], len(labels), global_batch, config.augment, data_seed,
                             class_weights=plan.class_weights, sampling_weights=plan.sampling_weights)
    with precision(config.runtime.mixed_precision):
        with strategy.scope():
            model = build_model(config.model, len(labels), init_weights=state is None)
        if state is not None:
            checkpoints.restore_weights(model)
            echo(f"resuming stage {stages[state['stage_index']].name} after epoch {state['epoch']}")
        history: List[dict] = state["history"] if state else []
        for index, stage in enumerate(stages):
            if state is not None and (index < state["stage_index"] or
                                      (index == state["stage_index"] and state.get("stage_done"))):
                continue
            in_progress = state is not None and index == state["stage_index"]
            stage_state = dict(state) if in_progress else {
                "stage_index": index, "epoch": 0, "best": None, "best_epoch": 0, "wait": 0, "stage_done": False}
            stage_state["history"] = history
            _run_stage(model, stage, index, config, strategy, train_ds, steps, data["val"], good_index,
                       checkpoints, stage_state, in_progress, global_batch, run_dir, echo, callbacks)
            state = None
        final = rebuild_float32(model)
    result = _finish(final, config, manifest, data, plan, history, run_dir, chief, global_batch, echo)
    checkpoints.close()
    return result


def _run_stage(model, stage: Stage, index: int, config: TrainConfig, strategy, train_ds, steps: int,
               val: ImageSet, good_index: int, checkpoints: Checkpoints, state: dict, in_progress: bool,
               batch_size: int, run_dir: Path, echo, extra_callbacks: Sequence = ()) -> None:
    ft = config.finetune
    set_stage(model, stage.name, ft.unfreeze_layers, ft.train_batchnorm)
    with strategy.scope():
        optimizer = make_optimizer(config, stage.learning_rate, stage.epochs * steps,
                                   int(round(config.optim.warmup_epochs * steps)))
        model.compile(optimizer=optimizer,
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.optim.label_smoothing),
                      metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
                      run_eagerly=config.runtime.run_eagerly,
                      jit_compile="auto" if config.runtime.jit_compile is None else config.runtime.jit_compile)
        if in_progress and state["epoch"] > 0:
            checkpoints.restore_optimizer(model)
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    echo(f"stage {stage.name}: up to {stage.epochs} epochs x {steps} steps of {batch_size} images "
         f"({strategy.num_replicas_in_sync} replica(s)), peak lr {stage.learning_rate:g}, "
         f"{trainable:,} trainable parameters")
    callbacks = [EpochMonitor(stage, index, val, good_index, config, checkpoints, state, batch_size, echo)]
    if config.runtime.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard" / stage.name)))
    callbacks.extend(extra_callbacks)
    started = time.time()
    first_epoch = state["epoch"]
    if first_epoch < stage.epochs and state["wait"] < config.early_stopping.patience:
        with keras_multi_worker_fixes(model, strategy, train_ds.element_spec):
            model.fit(train_ds, epochs=stage.epochs, initial_epoch=first_epoch, steps_per_epoch=steps,
                      callbacks=callbacks, verbose=_fit_verbose(config), shuffle=False)
    if config.early_stopping.restore_best and state["best_epoch"]:
        checkpoints.restore_weights(model, best=True)
    state["stage_done"] = True
    checkpoints.save_last(model, state)
    ran = [h for h in state["history"] if h["stage"] == stage.name]
    per_epoch = np.median([h["seconds"] for h in ran]) if ran else float("nan")
    best = state.get("best")
    best_text = "-" if best is None else f"{best:.4f}"
    echo(f"stage {stage.name} done: {len(ran)} epochs in {time.time() - started:.0f}s ({per_epoch:.1f}s/epoch), "
         f"best {config.early_stopping.monitor.value} {best_text} at epoch {state['best_epoch']}"
         f"{', early stop' if state['wait'] >= config.early_stopping.patience else ''}")


def _finish(model: keras.Model, config: TrainConfig, manifest: SplitManifest, data: Dict[str, ImageSet],
            plan: ImbalancePlan, history: List[dict], run_dir: Path, chief: bool, batch_size: int,
            echo) -> RunResult:
    """Evaluate the final model on val and test, then write model, metrics, report and run.json."""
    from training.report import write_report

    labels, good_class = list(manifest.classes), manifest.good_class
    threshold = config.report.threshold
    probs = {name: predict_probs(model, data[name].images, batch_size) for name in ("val", "test")}
    evaluations = {name: classification_report(probs[name], data[name].labels, labels, good_class, threshold)
                   for name in ("val", "test")}
    metrics = {
        "labels": labels,
        "good_class": good_class,
        "threshold": threshold,
        **evaluations,
        "imbalance": plan.to_dict(),
        "training": {
            "epochs": len(history),
            "seconds_per_epoch": float(np.median([h["seconds"] for h in history])) if history else None,
            "stages": list(dict.fromkeys(h["stage"] for h in history)),
        },
    }
    model_path = run_dir / MODEL_FILE
    if chief:
        model.save(model_path)
        _write_json(run_dir / HISTORY_FILE, history)
        _write_json(run_dir / METRICS_FILE, metrics)
        _write_json(run_dir / PREDICTIONS_FILE, {
            name: {"paths": data[name].paths, "labels": data[name].labels.tolist(),
                   "probabilities": np.round(probs[name], 7).tolist()} for name in ("val", "test")})
        write_report(run_dir, config, metrics, history, data["test"], probs["test"])
        width, height = config.model.input_size
        run = {
            "labels": labels,
            "good_class": good_class,
            "preprocess": config.preprocess_spec().model_dump(mode="json"),
            "backbone": config.model.backbone.keras_name,
            "input_size": [width, height],
            "weights": config.model.weights,
            "dataset_root": str(Path(config.data.root or manifest.root).resolve()),
            "dataset_fingerprint": manifest.fingerprint,
            "split_sha256": manifest.sha256(),
            "name": config.name,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seed": config.seed,
            "tool_version": __version__,
        }
        _write_json(run_dir / RUN_FILE, run)
    test = evaluations["test"]
    auc = test["pass_fail"]["roc_auc"]
    echo(f"test: accuracy {test['accuracy']:.3f}, macro F1 {test['macro_f1']:.3f}, pass/fail ROC AUC "
         f"{'-' if auc is None else f'{auc:.4f}'}, escape rate {test['pass_fail']['escape_rate']:.3f}, "
         f"false-reject rate {test['pass_fail']['false_reject_rate']:.3f} at threshold {threshold}")
    echo(f"run folder: {run_dir} (report.html, model.keras)")
    return RunResult(run_dir, model_path, labels, good_class, metrics, history)
