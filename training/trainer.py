"""Training a run end to end: split, images, model, one or two stages, checkpoints, report, run folder.

With a pretrained backbone the run has two stages: ``head`` trains the SE head and classifier on the
frozen backbone (BatchNorm in inference mode), then ``finetune`` trains the top N backbone layers at a
much lower learning rate. From random weights there is one stage, ``full``. Every stage uses warm-up +
cosine decay (or a constant rate), stops early when the monitored validation value stops improving and
ends with its best epoch's weights. Every epoch is checkpointed, so ``resume=True`` continues a stopped
run from its last finished epoch with the same optimizer state.

Every stage keeps the epoch with the best validation pass/fail score (training.selection), never the
lowest loss of label-smoothed training. The run then chooses its operating point on the validation scores
(inspector.operating_point), reports val and test at that threshold, and ends with a deployability
verdict (inspector.deployability) on the test split.

RUN_DIR contract: :mod:`inspector.runfolder` (file names and run.json, read by calibration and the demo).

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

from inspector import __version__, nativelog
from inspector.dataset import DatasetError, SplitManifest, extend_split, make_split, scan_folder, unmeasured_warnings
from inspector.decision import DecisionPolicy, defect_score
from inspector.deployability import DeployabilityVerdict, absent_defect_classes, assess
from inspector.metrics import classification_report
from inspector.runfolder import RunFolder, RunManifest, write_json
from training.checkpoints import Checkpoints
from training.config import Optimizer, Progress, Schedule, TrainConfig
from training.data import ImageSet, eval_dataset, load_split_images, train_dataset
from training.folds import OutOfFold, out_of_fold
from training.imbalance import ImbalancePlan, plan_imbalance
from training.model import build_model, rebuild_float32, set_stage
from training.outcome import RunError, Stage, choose_run_policy, decision_counts, plan_stages, resolve_auto, share
from training.runtime import is_chief, keras_multi_worker_fixes, make_strategy, precision
from training.selection import EpochScore
from training.state import TrainState
from training.warmstart import PreviousRun, adopt, compare, describe_comparison, load_previous_model, transfer_weights


@dataclass
class RunResult:
    """What :func:`train` produced; ``metrics`` is the content of metrics.json."""

    run_dir: Path
    model_path: Path
    labels: List[str]
    good_class: str
    metrics: dict
    history: List[dict] = field(default_factory=list)
    verdict: Optional[DeployabilityVerdict] = None


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
    ema = dict(use_ema=optim.ema is not None, ema_momentum=optim.ema or 0.99)
    if optim.optimizer is Optimizer.ADAMW:
        opt = keras.optimizers.AdamW(schedule, weight_decay=optim.weight_decay, **ema)
    elif optim.optimizer is Optimizer.SGD:
        opt = keras.optimizers.SGD(
            schedule, momentum=optim.momentum, nesterov=True, weight_decay=optim.weight_decay or None, **ema
        )
    else:
        opt = keras.optimizers.Adam(schedule, **ema)
    if optim.optimizer is not Optimizer.ADAM and optim.weight_decay:
        opt.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return opt


def predict_probs(model: keras.Model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Class probabilities for uint8 images, no augmentation, in input order."""
    if len(images) == 0:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    return np.asarray(model.predict(eval_dataset(images, batch_size), verbose=0), np.float64)


def _json_number(value: float) -> Optional[float]:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


@dataclass
class RunContext:
    """Everything a stage needs that does not change during the run."""

    config: TrainConfig
    folder: RunFolder
    strategy: tf.distribute.Strategy
    train_ds: tf.data.Dataset
    steps: int
    val: ImageSet
    good_index: int
    checkpoints: Checkpoints
    batch_size: int
    stages: List[Stage]
    echo: Callable[[str], None]
    callbacks: Sequence[keras.callbacks.Callback] = ()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class EpochMonitor(keras.callbacks.Callback):
    """Validation score, model selection / early stopping, checkpoints and the progress line of each epoch.

    The epoch is scored by :class:`training.selection.EpochScore` on the un-augmented validation images
    (pass/fail ROC AUC, escapes at the false-reject budget, plain cross-entropy without label smoothing or
    class weights); :class:`training.selection.ModelSelector` decides whether it is the best so far.
    With an EMA of the weights, Keras' SwapEMAWeights (placed before this callback) has swapped the
    averaged weights in, so they are what is scored and checkpointed.
    """

    def __init__(self, ctx: RunContext, stage: Stage, state: TrainState):
        super().__init__()
        self.ctx, self.stage, self.state = ctx, stage, state
        self._started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.time()

    def _remaining(self, epoch: int) -> float:
        """Seconds left if no stage stops early: recent epochs' median times the epochs still planned
        (0 = unknown: after a stage's first epoch, whose time includes tracing the graph)."""
        recent = [h["seconds"] for h in self.state.history if h["stage_index"] == self.state.stage_index][1:][-3:]
        later = sum(s.epochs for s in self.ctx.stages[self.state.stage_index + 1 :])
        return float(np.median(recent)) * (self.stage.epochs - epoch - 1 + later) if recent else 0.0

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        ctx, state = self.ctx, self.state
        seconds = time.time() - self._started
        probs = predict_probs(self.model, ctx.val.images, ctx.batch_size)
        y = ctx.val.labels
        score = EpochScore.measure(probs, y, ctx.good_index, ctx.config.line.max_false_reject_rate)
        record = {
            "stage": self.stage.name,
            "stage_index": state.stage_index,
            "epoch": epoch + 1,
            "global_epoch": len(state.history) + 1,
            "loss": float(logs.get("loss", float("nan"))),
            "accuracy": float(logs.get("accuracy", float("nan"))),
            "val_loss": score.loss,
            "val_accuracy": float((probs.argmax(1) == y).mean()) if len(y) else float("nan"),
            "val_auc": _json_number(score.auc),
            "val_escapes_at_budget": score.escapes,
            "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
            "seconds": round(seconds, 2),
        }
        improved = state.selector.update(epoch + 1, score)
        if improved:
            ctx.checkpoints.save_best(self.model)
        state.history.append(record)
        state.epoch = epoch + 1
        if state.selector.should_stop:
            self.model.stop_training = True
        ctx.checkpoints.save_last(self.model, state.to_dict())
        auc = "-" if record["val_auc"] is None else f"{record['val_auc']:.3f}"
        left = self._remaining(epoch)
        ctx.echo(
            f"{self.stage.name:8s} epoch {epoch + 1:3d}/{self.stage.epochs}  loss {record['loss']:.4f} "
            f"acc {record['accuracy']:.3f}  val_loss {record['val_loss']:.4f} val_acc {record['val_accuracy']:.3f} "
            f"val_auc {auc}  lr {record['learning_rate']:.2e}  {seconds:.1f}s"
            f"{f'  ~{_duration(left)} left' if left and not self.model.stop_training else ''}"
            f"{'  *' if improved else ''}"
        )


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The exact config of an existing run (for --resume)."""
    path = RunFolder(run_dir).config
    try:
        return TrainConfig.model_validate_json(path.read_text())
    except OSError as exc:
        raise RunError(f"{path}: cannot read ({exc.strerror or exc}); is {run_dir} a training run?") from None


def _prepare_split(
    config: TrainConfig, folder: RunFolder, resume: bool, previous: Optional[PreviousRun] = None
) -> SplitManifest:
    saved = folder.split
    if resume and saved.is_file():
        return SplitManifest.load(saved)
    if config.data.split:
        manifest = SplitManifest.load(config.data.split)
        if manifest.good_class != config.data.good_class:
            raise DatasetError(
                f"{config.data.split}: split's good class is '{manifest.good_class}', the run "
                f"asks for '{config.data.good_class}'"
            )
        return manifest
    scan = scan_folder(config.data.root, good_class=config.data.good_class)
    if previous is not None:  # the previous model's training images must stay out of the new test split
        return extend_split(previous.split, scan, seed=config.data.split_seed, ratios=config.data.split_ratios)
    return make_split(scan, seed=config.data.split_seed, ratios=config.data.split_ratios)


def _check_run_dir(folder: RunFolder, resume: bool) -> None:
    run_dir = folder.root
    if resume:
        if not folder.config.is_file():
            raise RunError(f"{run_dir}: nothing to resume (no {folder.config.name})")
        return
    if not run_dir.exists():
        return
    # A run that failed before its first epoch (e.g. missing weights) left only what it wrote first; starting
    # again over it loses nothing, and --resume would only repeat the failure.
    left = {p.name for p in run_dir.iterdir()} - {folder.config.name, folder.split.name, folder.checkpoints.name}
    if left or (folder.checkpoints.is_dir() and any(folder.checkpoints.iterdir())):
        raise RunError(f"{run_dir}: folder is not empty; use --resume to continue that run or choose a new --out")


def _echo_for(config: TrainConfig, chief: bool) -> Callable[[str], None]:
    quiet = config.runtime.progress is Progress.QUIET or not chief

    def echo(text: str) -> None:
        if not quiet:
            print(text, flush=True)

    return echo


def _fit_verbose(config: TrainConfig) -> int:
    """Keras' own progress bar (1) or not (0). By default the epoch line of :class:`EpochMonitor` is the
    progress; ``auto`` adds the bar on a terminal only when the libraries' own output is wanted
    (``inspector -v``, see :func:`inspector.nativelog.quiet`), ``bar`` always."""
    progress = config.runtime.progress
    if progress is Progress.AUTO:
        return 1 if sys.stdout.isatty() and not nativelog.quiet() else 0
    return 1 if progress is Progress.BAR else 0


def train(
    config: TrainConfig, run_dir: str | Path, resume: bool = False, callbacks: Sequence[keras.callbacks.Callback] = ()
) -> RunResult:
    """Train ``config`` into ``run_dir``; with ``resume``, continue the checkpointed run there.

    ``callbacks`` are extra Keras callbacks for every stage, run after the epoch's checkpoint is written.
    """
    folder = RunFolder(run_dir)
    if config.runtime.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise RunError("--tensorboard needs the tensorboard package: pip install tensorboard")
    chief = is_chief()
    if chief:  # other workers find the chief's files in a shared RUN_DIR; only the chief checks it
        _check_run_dir(folder, resume)
    echo = _echo_for(config, chief)
    if config.runtime.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = make_strategy(config.runtime.strategy, config.runtime.devices)

    previous = PreviousRun.load(config.warm_start.run) if config.warm_start.run else None
    if previous is not None:
        config = adopt(config, previous, echo)
    manifest = _prepare_split(config, folder, resume, previous)
    config = resolve_auto(config, manifest, echo)
    folder.root.mkdir(parents=True, exist_ok=True)
    labels, good_class = list(manifest.classes), manifest.good_class
    if chief:
        config.save(folder.config)
        manifest.save(folder.split)
    spec = config.preprocess_spec()
    started = time.time()
    data = load_split_images(
        manifest, spec, root=config.data.root or None, cache_dir=folder.cache if config.data.cache and chief else None
    )
    if len(data["train"]) == 0 or len(data["val"]) == 0:
        raise DatasetError("the split has an empty train or validation set; add images or change the ratios")
    echo(
        f"data: {', '.join(f'{n} {len(s)}' for n, s in data.items())} images at {spec.width}x{spec.height} "
        f"({time.time() - started:.1f}s); classes {labels} (good: {good_class})"
    )
    for line in unmeasured_warnings(manifest):
        echo(line)
    plan = plan_imbalance(
        data["train"].labels, labels, good_class, config.imbalance.method.value, config.imbalance.good_fraction
    )
    echo(f"imbalance: {plan.describe()}")

    global_batch = config.optim.batch_size * strategy.num_replicas_in_sync
    steps = config.optim.steps_per_epoch or max(1, math.ceil(len(data["train"]) / global_batch))
    checkpoints = Checkpoints(folder.checkpoints, writable=chief)
    saved = checkpoints.load_state() if resume else None
    state = TrainState.from_dict(saved, config.early_stopping) if saved else None
    # A resumed run continues with a fresh shuffling/augmentation stream, not a replay of epoch 1's.
    data_seed = config.seed + (len(state.history) if state else 0)
    keras.utils.set_random_seed(data_seed)  # Python, numpy and TensorFlow: weights init, augmentation
    train_ds = train_dataset(
        data["train"],
        len(labels),
        global_batch,
        config.augment,
        data_seed,
        class_weights=plan.class_weights,
        sampling_weights=plan.sampling_weights,
    )
    ctx = RunContext(
        config,
        folder,
        strategy,
        train_ds,
        steps,
        data["val"],
        labels.index(good_class),
        checkpoints,
        global_batch,
        plan_stages(config),
        echo,
        callbacks,
    )
    with precision(config.runtime.mixed_precision):
        with strategy.scope():
            model = build_model(config.model, len(labels), init_weights=state is None and previous is None)
        if state is not None:
            checkpoints.restore_weights(model)
            echo(f"resuming stage {ctx.stages[state.stage_index].name} after epoch {state.epoch}")
        elif previous is not None:
            fresh = transfer_weights(model, load_previous_model(previous), labels, previous.manifest.labels)
            echo(f"warm start: weights of {previous.folder.model}" + (f"; new classes {fresh}" if fresh else ""))
        state = state or TrainState.fresh(config.early_stopping)
        for index, stage in enumerate(ctx.stages):
            if index < state.stage_index:
                continue
            if state.stage_done:
                if index == state.stage_index:
                    continue
                state = state.next_stage(config.early_stopping)
            _run_stage(ctx, model, stage, state)
        final = rebuild_float32(model)
    oof = _out_of_fold(config, manifest, folder, echo) if config.folds >= 2 and chief else None
    result = _finish(ctx, final, manifest, data, plan, state, chief, oof, previous)
    checkpoints.close()
    return result


def _run_stage(ctx: RunContext, model: keras.Model, stage: Stage, state: TrainState) -> None:
    config, checkpoints = ctx.config, ctx.checkpoints
    ft = config.finetune
    resuming = state.epoch > 0
    set_stage(model, stage.name, ft.unfreeze_layers, ft.train_batchnorm)
    with ctx.strategy.scope():
        optimizer = make_optimizer(
            config, stage.learning_rate, stage.epochs * ctx.steps, int(round(config.optim.warmup_epochs * ctx.steps))
        )
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.optim.label_smoothing),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
            run_eagerly=config.runtime.run_eagerly,
            jit_compile="auto" if config.runtime.jit_compile is None else config.runtime.jit_compile,
        )
        if resuming:
            checkpoints.restore_optimizer(model)
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    ctx.echo(
        f"stage {stage.name}: up to {stage.epochs} epochs x {ctx.steps} steps of {ctx.batch_size} images "
        f"({ctx.strategy.num_replicas_in_sync} replica(s)), peak lr {stage.learning_rate:g}, "
        f"{trainable:,} trainable parameters{', EMA of the weights' if config.optim.ema else ''}"
        f"{'' if resuming else '; the first epoch also traces the graph (slower)'}"
    )
    callbacks: List[keras.callbacks.Callback] = []
    if config.optim.ema is not None:
        swap = keras.callbacks.SwapEMAWeights(swap_on_epoch=True)
        # The last checkpoint holds the averaged weights in the model and the raw ones in the optimizer's
        # EMA slots (that is where the swap leaves them); the first epoch of a resumed stage swaps back.
        swap._ema_weights_in_model = resuming
        callbacks.append(swap)
    if _fit_verbose(config):
        # Ahead of the epoch line, so the bar ends its line first (Keras would append its bar after every callback).
        callbacks.append(keras.callbacks.ProgbarLogger())
    callbacks.append(EpochMonitor(ctx, stage, state))
    if config.runtime.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(ctx.folder.root / "tensorboard" / stage.name)))
    callbacks.extend(ctx.callbacks)
    started = time.time()
    if state.epoch < stage.epochs and not state.selector.should_stop:
        with keras_multi_worker_fixes(model, ctx.strategy, ctx.train_ds.element_spec):
            model.fit(
                ctx.train_ds,
                epochs=stage.epochs,
                initial_epoch=state.epoch,
                steps_per_epoch=ctx.steps,
                callbacks=callbacks,
                verbose=_fit_verbose(config),
                shuffle=False,
            )
    if config.early_stopping.restore_best and state.selector.best_epoch:
        checkpoints.restore_weights(model, best=True)
    state.stage_done = True
    checkpoints.save_last(model, state.to_dict())
    ran = [h for h in state.history if h["stage_index"] == state.stage_index]
    per_epoch = np.median([h["seconds"] for h in ran]) if ran else float("nan")
    ctx.echo(
        f"stage {stage.name} done: {len(ran)} epochs in {time.time() - started:.0f}s ({per_epoch:.1f}s/epoch), "
        f"{state.selector.describe()}{', early stop' if state.selector.should_stop else ''}; "
        f"keeps its {'best' if config.early_stopping.restore_best else 'last'} epoch's weights"
    )


def _out_of_fold(
    config: TrainConfig, manifest: SplitManifest, folder: RunFolder, echo: Callable[[str], None]
) -> OutOfFold:
    """Train the K fold models into RUN_DIR/folds/ (a finished fold is reused on resume) and pool their scores."""
    base = folder.root / "folds"
    base.mkdir(exist_ok=True)

    def train_fold(index: int, fold: SplitManifest) -> dict:
        sub = RunFolder(base / f"fold{index + 1}")
        if not sub.manifest.is_file():
            split_file = fold.save(base / f"fold{index + 1}.split.json")
            echo(
                f"== fold {index + 1}/{config.folds}: train {len(fold.splits['train'])}, "
                f"score {len(fold.splits['val'])} held-out images"
            )
            fold_config = config.model_copy(
                update={"folds": 0, "data": config.data.model_copy(update={"split": str(split_file), "cache": False})}
            )
            train(fold_config, sub.root, resume=sub.config.is_file())
        return json.loads(sub.predictions.read_text())

    return out_of_fold(manifest, config.folds, config.data.split_seed, train_fold)


def _compare_with_previous(
    ctx: RunContext, previous: Optional[PreviousRun], test: ImageSet, probs: np.ndarray, policy: DecisionPolicy
) -> Optional[dict]:
    if previous is None or not len(test):
        return None
    old_probs = predict_probs(load_previous_model(previous), test.images, ctx.batch_size)
    return compare(previous, old_probs, probs, policy, test.paths, test.labels != ctx.good_index, ctx.good_index)


def _finish(
    ctx: RunContext,
    model: keras.Model,
    manifest: SplitManifest,
    data: Dict[str, ImageSet],
    plan: ImbalancePlan,
    state: TrainState,
    chief: bool,
    oof: Optional[OutOfFold] = None,
    previous: Optional[PreviousRun] = None,
) -> RunResult:
    """Evaluate the final model on val and test at the run's operating point, judge it, write RUN_DIR."""
    from training.report import write_report

    config, folder, history = ctx.config, ctx.folder, state.history
    labels, good_class, good = list(manifest.classes), manifest.good_class, ctx.good_index
    probs = {name: predict_probs(model, data[name].images, ctx.batch_size) for name in ("val", "test")}
    operating_point = choose_run_policy(config, probs["val"], data["val"].labels, good, oof)
    policy = operating_point.policy
    evaluations = {
        name: classification_report(probs[name], data[name].labels, labels, good_class, policy.threshold)
        for name in ("val", "test")
    }
    for name, evaluation in evaluations.items():
        evaluation["decision"] = decision_counts(probs[name], data[name].labels, good, policy)
    judged = "test" if len(data["test"]) else "val"
    best_epoch = state.best_global_epoch()
    kept_epoch = state.kept_global_epoch(ctx.config.early_stopping.restore_best)
    verdict = assess(
        defect_score(probs[judged], good),
        data[judged].labels != good,
        policy,
        config.line,
        predicted=probs[judged].argmax(1),
        # A warm start begins from a trained model: its best epoch may rightly be the first.
        best_epoch=None if previous is not None else best_epoch,
        epochs=len(history),
        basis=f"{judged} split, float model, threshold {policy.threshold:.4f}",
        absent=absent_defect_classes(data[judged].labels, labels, good),
        chance=operating_point.chance,
    )
    metrics = {
        "labels": labels,
        "good_class": good_class,
        "threshold": policy.threshold,
        "operating_point": operating_point.model_dump(mode="json"),
        "deployability": verdict.to_dict(),
        **evaluations,
        "imbalance": plan.to_dict(),
        "warm_start": _compare_with_previous(ctx, previous, data["test"], probs["test"], policy),
        "training": {
            "epochs": len(history),
            "best_epoch": best_epoch,
            "kept_epoch": kept_epoch,
            "seconds_per_epoch": float(np.median([h["seconds"] for h in history])) if history else None,
            "stages": list(dict.fromkeys(h["stage"] for h in history)),
        },
    }
    if chief:
        model.save(folder.model)
        write_json(folder.history, history)
        write_json(folder.metrics, metrics)
        write_json(
            folder.predictions,
            {
                name: {
                    "paths": data[name].paths,
                    "labels": data[name].labels.tolist(),
                    "probabilities": probs[name].tolist(),
                }
                for name in ("val", "test")
            },
        )
        write_report(folder.root, config, metrics, history, data["test"], probs["test"], verdict, model=model)
        RunManifest(
            labels=labels,
            good_class=good_class,
            preprocess=config.preprocess_spec(),
            backbone=config.model.backbone.keras_name,
            input_size=config.model.input_size,
            weights=config.model.weights,
            dataset_root=str(Path(config.data.root or manifest.root).resolve()),
            dataset_fingerprint=manifest.fingerprint,
            split_sha256=manifest.sha256(),
            name=config.name,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            seed=config.seed,
            tool_version=__version__,
            epochs=len(history),
            best_epoch=best_epoch,
            kept_epoch=kept_epoch,
            operating_point=operating_point,
            deployability=verdict.to_dict(),
            init_from=str(previous.folder.root.resolve()) if previous is not None else None,
        ).save(folder)
    test = evaluations["test"]
    auc = test["pass_fail"]["roc_auc"]
    band = f", review band [{policy.review_low:.4f}, {policy.review_high:.4f})" if policy.review_low is not None else ""
    ctx.echo(
        f"operating point: threshold {policy.threshold:.4f}{band} for "
        f"{operating_point.target.describe(operating_point.target_rate)} on the {operating_point.chosen_on}"
    )
    if operating_point.note:
        ctx.echo(f"note: {operating_point.note}")
    d = test["decision"]
    review = f", review {share(d['review'], d['samples'])}" if policy.review_low is not None else ""
    ctx.echo(
        f"test: accuracy {test['accuracy']:.3f}, macro F1 {test['macro_f1']:.3f}, pass/fail ROC AUC "
        f"{'-' if auc is None else f'{auc:.4f}'}; at the operating point escapes {share(d['escapes'], d['defects'])}"
        f", false rejects {share(d['false_rejects'], d['goods'])}{review}"
    )
    if metrics["warm_start"]:
        ctx.echo(describe_comparison(metrics["warm_start"]))
    ctx.echo(verdict.summary())
    ctx.echo(f"run folder: {folder.root} (report.html, model.keras)")
    return RunResult(folder.root, folder.model, labels, good_class, metrics, history, verdict)
