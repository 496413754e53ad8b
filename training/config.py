"""The training run's configuration: every knob of the recipe as a typed, documented field.

A run is fully described by one :class:`TrainConfig`. It is written to ``RUN_DIR/config.json`` verbatim,
read back by ``--resume``, and can be given as YAML (``--config``) with ``--set key.path=value`` overrides,
so a result can always be reproduced from its run folder.

Example:
    >>> cfg = TrainConfig(data=DataConfig(root="data"), model=ModelConfig(input_size=(64, 64)))
    >>> cfg.model.backbone.keras_name, cfg.optim.optimizer.value
    ('MobileNetV3Small', 'adamw')
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, List, Literal, Optional, Tuple, Union

from pydantic import Field, model_validator

from inspector import __version__
from inspector.config import StrictModel
from inspector.deployability import LineBudget
from inspector.operating_point import OperatingPointConfig
from inspector.preprocess import Interpolation, PreprocessSpec, Roi


class Backbone(str, Enum):
    SMALL = "small"
    LARGE = "large"

    @property
    def keras_name(self) -> str:
        return "MobileNetV3Small" if self is Backbone.SMALL else "MobileNetV3Large"


class Optimizer(str, Enum):
    ADAMW = "adamw"
    ADAM = "adam"
    SGD = "sgd"


class Schedule(str, Enum):
    COSINE = "cosine"
    CONSTANT = "constant"


class Imbalance(str, Enum):
    CLASS_WEIGHTS = "class_weights"
    OVERSAMPLE = "oversample"
    NONE = "none"


class Monitor(str, Enum):
    VAL_LOSS = "val_loss"
    VAL_AUC = "val_auc"


class Strategy(str, Enum):
    DEFAULT = "default"
    MIRRORED = "mirrored"
    MULTI_WORKER = "multi_worker"


class MixedPrecision(str, Enum):
    OFF = "off"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"


class Progress(str, Enum):
    AUTO = "auto"
    BAR = "bar"
    LINES = "lines"
    QUIET = "quiet"


class DataConfig(StrictModel):
    """Where the images come from and how they become model inputs (the same way as on the edge)."""

    root: str = Field(description="Dataset folder root/<class>/<image> (also where a reused split's files are read)")
    good_class: str = Field("good", description="Name of the good/pass class folder")
    split: Optional[str] = Field(None, description="Existing split manifest JSON to reuse; none = make one")
    split_seed: int = Field(0, description="Seed of a newly made split")
    split_ratios: Tuple[float, float, float] = Field((0.7, 0.15, 0.15), description="train, val, test ratios")
    interpolation: Interpolation = Field(Interpolation.AREA, description="Resize interpolation (edge uses the same)")
    grayscale: Optional[bool] = Field(
        None,
        description="Collapse colour to luminance (monochrome lines); none = yes when the training images are gray",
    )
    roi: Optional[Roi] = Field(None, description="Crop applied before resizing, in source pixels")
    cache: bool = Field(
        False,
        description="Also keep the decoded, resized images in RUN_DIR/cache (uint8 .npz) so --resume "
        "skips decoding; worth it for large datasets, costs W*H*3 bytes per image",
    )


class ModelConfig(StrictModel):
    """MobileNetV3 backbone + squeeze-and-excitation head."""

    backbone: Backbone = Field(Backbone.SMALL, description="MobileNetV3 variant: small or large")
    alpha: float = Field(1.0, gt=0, le=2.0, description="Width multiplier (ImageNet weights: 0.75 or 1.0)")
    minimalistic: bool = Field(False, description="MobileNetV3 minimalistic variant (no SE, 3x3, ReLU)")
    input_size: Union[Tuple[int, int], Literal["auto"]] = Field(
        "auto",
        description="Model input width, height in pixels (>= 32); auto = from the images' native size (training.auto)",
    )
    weights: str = Field(
        "imagenet", description="Backbone init: 'imagenet' (download), 'none' (random) or a Keras weights file"
    )
    se_ratio: int = Field(16, ge=1, description="Channel reduction ratio of the squeeze-and-excitation head")
    dropout: float = Field(0.2, ge=0.0, lt=1.0, description="Dropout before the classifier")
    bn_momentum: Optional[float] = Field(
        0.9,
        gt=0.0,
        lt=1.0,
        description="Override the backbone's BatchNorm momentum (Keras uses 0.999, which lags badly on "
        "short runs from random init); none keeps Keras' value",
    )

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.input_size != "auto" and min(self.input_size) < 32:
            raise ValueError(f"input_size {self.input_size}: MobileNetV3 needs at least 32x32")
        if self.weights == "imagenet":
            allowed = (1.0,) if self.minimalistic else (0.75, 1.0)
            if self.alpha not in allowed:
                raise ValueError(
                    f"ImageNet weights exist for alpha {allowed} only "
                    f"({'minimalistic' if self.minimalistic else 'standard'} backbone)"
                )
        return self

    @property
    def pretrained(self) -> bool:
        return self.weights != "none"


class OptimConfig(StrictModel):
    """Optimizer, loss and learning-rate schedule."""

    optimizer: Optimizer = Field(Optimizer.ADAMW, description="adamw, adam or sgd (Nesterov momentum)")
    learning_rate: float = Field(2e-3, gt=0, description="Peak learning rate of single-stage (random init) training")
    weight_decay: float = Field(0.05, ge=0, description="Decoupled weight decay (adamw, sgd); not on BN/bias")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    schedule: Schedule = Field(Schedule.COSINE, description="cosine decay to min_lr_ratio, or constant")
    warmup_epochs: float = Field(2.0, ge=0, description="Linear warm-up from 0 to the peak, in epochs")
    min_lr_ratio: float = Field(0.01, ge=0, le=1, description="Cosine floor as a fraction of the peak")
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="Label smoothing of the cross-entropy")
    ema: Optional[float] = Field(
        None,
        gt=0,
        lt=1,
        description="Momentum of an exponential moving average of the weights, used for "
        "validation, selection and the saved model; none = off",
    )
    batch_size: int = Field(32, ge=1, description="Batch size per replica (global = this x replicas)")
    epochs: Union[Annotated[int, Field(ge=1)], Literal["auto"]] = Field(
        "auto",
        description="Epochs of single-stage (random init) training; auto: about 85,000 images seen "
        "(90 epochs of 940 images), within 20-90 epochs (training.auto)",
    )
    steps_per_epoch: Optional[int] = Field(None, ge=1, description="Steps per epoch; none = one pass over train")


class FineTuneConfig(StrictModel):
    """Two-stage schedule used when the backbone is pretrained."""

    head_epochs: int = Field(5, ge=0, description="Stage 1: epochs training the head on the frozen backbone")
    head_learning_rate: float = Field(1e-3, gt=0, description="Stage 1 peak learning rate")
    unfreeze_layers: int = Field(40, ge=0, description="Stage 2: how many top backbone layers to train")
    train_batchnorm: bool = Field(
        False, description="Stage 2: also train unfrozen BatchNorm layers (default keeps them in inference mode)"
    )
    epochs: int = Field(20, ge=0, description="Stage 2 epochs")
    learning_rate: float = Field(1e-4, gt=0, description="Stage 2 peak learning rate (much lower than stage 1)")


class EarlyStoppingConfig(StrictModel):
    """Which epoch's weights a stage ends with, and whether it stops early.

    By default a stage runs its whole schedule and keeps its last epoch: the cosine schedule's end, where
    the learning rate is 1 % of its peak. The best validation epoch is still found (reported; a best epoch
    of 1 makes a run NOT DEPLOYABLE), but selecting on a validation split of a few dozen defects picked
    noisy mid-run peaks (docs/training.md, "Which epoch to keep")."""

    monitor: Monitor = Field(
        Monitor.VAL_AUC,
        description="val_auc: pass/fail ROC AUC, then escapes at the false-reject budget, then "
        "loss (training.selection); val_loss: lowest plain validation loss",
    )
    patience: Optional[Annotated[int, Field(ge=1)]] = Field(
        None,
        description="Epochs without a better validation epoch before the stage stops; null = never (the "
        "default: a run stopped mid-schedule ends at a high learning rate)",
    )
    min_delta: float = Field(0.0, ge=0, description="Smallest change that counts as an improvement")
    restore_best: bool = Field(
        False, description="End each stage with its best validation epoch's weights instead of its last epoch's"
    )


class AugmentConfig(StrictModel):
    """Training-only augmentation suited to inspection images (parts may appear flipped or slightly shifted,
    light varies); validation and test images are never augmented."""

    enabled: bool = Field(True, description="Master switch")
    hflip: bool = Field(True, description="Random horizontal flip")
    vflip: bool = Field(True, description="Random vertical flip")
    rotation_degrees: float = Field(0.0, ge=0, le=180, description="Max random rotation (reflect fill); 0 = off")
    shift: float = Field(
        0.1,
        ge=0,
        lt=0.5,
        description="Max random shift as a fraction of the size; 0 = off (with zoom, the measured cure for a "
        "from-scratch model memorising a small training set: docs/training.md)",
    )
    zoom: float = Field(0.15, ge=0, lt=0.5, description="Max random zoom in/out as a fraction; 0 = off")
    brightness: float = Field(0.08, ge=0, le=1, description="Max brightness change as a fraction of 255; 0 = off")
    contrast: float = Field(0.25, ge=0, lt=1, description="Contrast factor range 1 +- this; 0 = off")
    blur_probability: float = Field(0.0, ge=0, le=1, description="Chance of a Gaussian blur per image; 0 = off")
    blur_sigma: float = Field(1.0, gt=0, description="Gaussian blur sigma in pixels")
    noise_std: float = Field(0.0, ge=0, description="Max std of added Gaussian noise, in 0-255 units; 0 = off")


class ImbalanceConfig(StrictModel):
    """How training compensates for having far more good parts than defects."""

    method: Imbalance = Field(Imbalance.OVERSAMPLE, description="oversample, class_weights or none")
    good_fraction: Optional[float] = Field(
        0.5,
        gt=0,
        lt=1,
        description="oversample: share of good images per batch (defects keep their mutual proportions); "
        "none = every class equally often",
    )


class RuntimeConfig(StrictModel):
    """Devices, precision and logging; none of these change what the model learns in principle."""

    strategy: Strategy = Field(
        Strategy.DEFAULT, description="default, mirrored (local GPUs) or multi_worker (TF_CONFIG)"
    )
    devices: Optional[List[str]] = Field(
        None, description="mirrored: the local devices to use, e.g. ['/gpu:0', '/gpu:1']; none = all GPUs"
    )
    mixed_precision: MixedPrecision = Field(MixedPrecision.OFF, description="off, float16 (GPU) or bfloat16 (CPU/TPU)")
    tensorboard: bool = Field(False, description="Write TensorBoard logs to RUN_DIR/tensorboard")
    progress: Progress = Field(
        Progress.AUTO, description="auto (epoch lines; with -v on a terminal also Keras' bar), bar, lines or quiet"
    )
    deterministic: bool = Field(False, description="Enable TensorFlow op determinism (slower)")
    run_eagerly: bool = Field(
        False,
        description="Run steps eagerly: skips graph tracing (~10-30 s on CPU) at a higher cost per "
        "step; for debugging and very short runs (tests)",
    )
    jit_compile: Optional[bool] = Field(
        None, description="XLA-compile the train step; none = Keras' choice (on for TensorFlow when supported)"
    )


class ReportConfig(StrictModel):
    threshold: Optional[float] = Field(
        None,
        ge=0,
        le=1,
        description="Fixed defect-score threshold for the report; none = the operating point "
        "chosen on validation (the one calibrate puts into the bundle)",
    )
    max_misclassified: int = Field(36, ge=0, description="Misclassified test images shown in the report grid")


class WarmStartConfig(StrictModel):
    """Continue from an earlier run's model (``--init-from RUN_DIR``), the retraining step of the review loop.

    The backbone and the SE head keep their weights; the classifier keeps the columns of the classes both
    runs know and starts new classes fresh. One short stage at a lower rate refits it to the grown data.
    """

    run: Optional[str] = Field(None, description="Run folder whose model.keras the new run starts from")
    epochs: int = Field(15, ge=1, description="Epochs of the one warm-start stage")
    learning_rate: float = Field(5e-4, gt=0, description="Peak learning rate of the warm-start stage")


class TrainConfig(StrictModel):
    """One training run."""

    name: str = Field("inspector", description="Model name carried into run.json and the bundle")
    seed: int = Field(0, description="Seed of weights init, shuffling and augmentation")
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    finetune: FineTuneConfig = Field(default_factory=FineTuneConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    imbalance: ImbalanceConfig = Field(default_factory=ImbalanceConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    operating_point: OperatingPointConfig = Field(default_factory=OperatingPointConfig)
    line: LineBudget = Field(default_factory=LineBudget)
    folds: int = Field(
        0,
        ge=0,
        description="K >= 2: also train K fold models on train+val and choose the operating point on "
        "their out-of-fold scores (training.folds; K extra trainings); 0 = on validation",
    )
    warm_start: WarmStartConfig = Field(default_factory=WarmStartConfig)
    tool_version: str = Field(__version__, description="Version of this software that ran the training")

    @model_validator(mode="after")
    def _check_warm_start(self) -> TrainConfig:
        if self.warm_start.run and self.folds >= 2:
            raise ValueError(
                "folds with warm_start.run (--init-from): each fold model would start from a model that has "
                "seen that fold's held-out images, so its out-of-fold scores would flatter it; use one or the other"
            )
        return self

    @property
    def resolved(self) -> bool:
        """False while epochs, input size or grayscale is still ``auto`` (training.auto resolves them)."""
        return self.optim.epochs != "auto" and self.model.input_size != "auto" and self.data.grayscale is not None

    def preprocess_spec(self) -> PreprocessSpec:
        if not self.resolved:
            raise ValueError("input size / grayscale are still auto: resolve them from the images first")
        width, height = self.model.input_size
        return PreprocessSpec(
            width=width,
            height=height,
            interpolation=self.data.interpolation,
            grayscale=self.data.grayscale,
            roi=self.data.roi,
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.model_dump_json(indent=2))
        return path
