"""Training run -> deployable bundle: convert, guard accuracy, choose the operating point, commission.

Steps (each reported in the bundle's metrics and in the calibration report):

1. Load the run (``model.keras``, ``run.json``, ``split.json``) and prepare the validation and test images
   with the run's :class:`~inspector.preprocess.PreprocessSpec`, as the edge will.
2. Draw the representative sample from the training split (INT8) and convert. ``--precision auto``
   (the default) keeps INT8 only when it moves none of class accuracy, pass/fail accuracy and escapes
   over the defects at the threshold by more than the budget on validation, and deploys float16 otherwise: how much a trained
   model loses in INT8 varies between training runs of one recipe (docs/training.md).
3. Run the float Keras model and the converted model (edge interpreter) on validation; take the training
   run's operating point (the threshold its report used), or choose one for an explicitly given target on
   the converted model's scores; compare.
4. Accuracy guard: if the drop exceeds the budget, apply the remedy if one was asked for (float fallback
   of the most error-prone layers), measure again, and stop with the list of things to try if it still
   fails. The report is written either way so the failure can be looked at.
5. Judge the converted model (test split, else validation) with the deployability verdict; an unfit
   model gets no bundle unless ``force`` (then the bundle records the verdict).
6. Measure the camera reference frame, if given, and write the bundle and the report.

Example:
    >>> result = calibrate("runs/tiles", "tiles.inspector", CalibrationOptions())   # doctest: +SKIP
    >>> result.bundle.manifest.decision.threshold                                 # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Callable, Dict, List, Literal, Optional

import numpy as np
from pydantic import Field

from calibration.commissioning import CameraOptions, Commissioning
from calibration.convert import (
    Conversion,
    FallbackQuantizer,
    LayerError,
    convert,
    export_for_conversion,
    load_keras_model,
)
from calibration.evaluate import predict_bundle, predict_keras, score
from calibration.guard import GuardError, GuardMeasure, ParityCheck, check_parity, failure_message
from calibration.inference_choice import (
    FlipChoice,
    InferenceTrial,
    TilingChoice,
    candidates,
    choose,
    default_spec,
    measure,
)
from calibration.operating_point import IntervalMethod, OperatingPoint, Target, choose_threshold, operating_point
from calibration.representative import (
    DEFAULT_SIZE,
    RECOMMENDED_MIN,
    LabeledImages,
    RepresentativeSample,
    draw_representative,
    load_labeled,
    resolve_root,
)
from inspector.bundle import BUNDLE_SUFFIX, Bundle, FlipAveraging, InferenceSpec, Manifest, Precision, Provenance
from inspector.config import StrictModel
from inspector.dataset import SplitManifest
from inspector.decision import DecisionPolicy, defect_score
from inspector.deployability import DeployabilityVerdict, LineBudget, absent_defect_classes, assess
from inspector.plausibility import PlausibilityReference
from inspector.preprocess import Preprocessor, PreprocessSpec
from inspector.runfolder import RunFolder, RunManifest

log = logging.getLogger(__name__)


class NotDeployableError(RuntimeError):
    """The converted model is NOT DEPLOYABLE and ``force`` was not given; ``result`` holds what was measured."""

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result


class Remedy(str, Enum):
    NONE = "none"
    FLOAT_FALLBACK = "float-fallback"  # always build and deploy the mixed model
    AUTO = "auto"  # full integer if it passes the guard, else the mixed model


class PrecisionChoice(str, Enum):
    """What ``--precision`` asks for: one bundle precision, or auto (INT8 when it holds, else float16)."""

    AUTO = "auto"
    INT8 = "int8"
    FLOAT16 = "float16"
    FLOAT32 = "float32"

    @property
    def tries_int8(self) -> bool:
        return self in (PrecisionChoice.AUTO, PrecisionChoice.INT8)


class CalibrationOptions(StrictModel):
    """Everything ``inspector calibrate`` can be told."""

    precision: PrecisionChoice = Field(
        PrecisionChoice.AUTO,
        description="auto: int8 when it holds on validation (class and pass/fail accuracy, escapes), else float16; "
        "int8 (full integer, refused by the guard when it loses too much), float16 or float32",
    )
    io_dtype: Literal["uint8", "int8"] = Field("uint8", description="INT8 model input/output type")
    representative_size: int = Field(DEFAULT_SIZE, ge=1, description="Images in the representative sample")
    representative_seed: int = Field(0, description="Seed of the stratified representative draw")
    representative_min: int = Field(
        RECOMMENDED_MIN, ge=0, description="Warn when the representative sample has fewer images"
    )
    accuracy_budget: float = Field(
        1.0, description="Largest allowed validation accuracy drop, percentage points (negative = must gain)"
    )
    guard_on: GuardMeasure = Field(
        GuardMeasure.EITHER,
        description="either: refuse when both pass/fail accuracy at the threshold and top-1 class accuracy "
        "drop by more than the budget; decision or classes: that drop alone",
    )
    remedy: Remedy = Field(Remedy.NONE, description="none, float-fallback or auto (see docs/calibration.md)")
    fallback_layers: int = Field(5, ge=0, description="Float fallback: layers with the largest INT8 error kept float")
    fallback_ops: List[str] = Field(default_factory=list, description="Float fallback: TFLite op types kept float")
    target: Optional[Target] = Field(
        None,
        description="budget (the point most likely to meet the line's budget), escape or false_reject (that "
        "rate at target_rate); none of target, target_rate and review_margin given = the training run's "
        "operating point (same threshold as its report)",
    )
    target_rate: Optional[float] = Field(
        None, ge=0, lt=1, description="Target rate on the validation split (0.005 = 0.5 %); default 0.005"
    )
    review_margin: Optional[float] = Field(
        None, ge=0, lt=1, description="Review band threshold +- margin on the defect score; default 0"
    )
    line: LineBudget = Field(default_factory=LineBudget, description="What the line accepts (deployability verdict)")
    tta: FlipChoice = Field(
        FlipChoice.AUTO,
        description="Flip averaging the bundle runs: none, hflip, vflip, hvflip, or auto (the default: on only "
        "when it helps on validation); the threshold is chosen on the scores it gives",
    )
    tiles: TilingChoice = Field(
        TilingChoice.OFF, description="Tiled inference: off, on, or auto (on only when it helps on validation)"
    )
    tile_overlap: float = Field(0.25, ge=0.0, le=0.75, description="Overlap of neighbouring tiles (fraction)")
    force: bool = Field(False, description="Write the bundle even when the model is NOT DEPLOYABLE (it records why)")
    interval: IntervalMethod = Field(IntervalMethod.CLOPPER_PEARSON, description="Confidence interval method")
    data_root: Optional[str] = Field(None, description="Dataset folder if it moved since training")
    name: Optional[str] = Field(None, description="Bundle name; default: the run's name")
    version: Optional[str] = Field(None, description="Bundle version; default: run date and precision")
    threads: Optional[int] = Field(None, ge=1, description="TFLite interpreter threads")
    evaluate_test: bool = Field(True, description="Also report float and converted metrics on the test split")
    camera: Optional[CameraOptions] = Field(None, description="Camera commissioning")
    report: bool = Field(True, description="Write the HTML + PNG calibration report")


@dataclass
class RunInfo:
    """A training run as ``inspector train`` leaves it (read through :mod:`inspector.runfolder`)."""

    folder: RunFolder
    manifest: RunManifest
    split: SplitManifest
    spec: PreprocessSpec

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> RunInfo:
        folder = RunFolder(run_dir)
        folder.check_complete()
        manifest = RunManifest.load(folder)
        split = SplitManifest.load(folder.split)
        if list(manifest.labels) != list(split.classes):
            raise ValueError(
                f"{folder.root}: run.json labels {manifest.labels} differ from the split's classes {split.classes}"
            )
        return cls(folder, manifest, split, manifest.preprocess)

    @property
    def path(self) -> Path:
        return self.folder.root

    @property
    def labels(self) -> List[str]:
        return list(self.manifest.labels)

    @property
    def good_class(self) -> str:
        return self.manifest.good_class


@dataclass
class Candidate:
    """One converted model and how it does on validation."""

    conversion: Conversion
    bundle: Bundle
    val_probs: np.ndarray  # with the bundle's inference (flip averaging, tiles)
    operating_point: OperatingPoint
    parity: ParityCheck
    trials: List[InferenceTrial] = field(default_factory=list)  # inference variants measured on validation
    float_val_probs: Optional[np.ndarray] = None  # the float model with the bundle's flip averaging


@dataclass
class CalibrationResult:
    run: RunInfo
    options: CalibrationOptions
    val: LabeledImages
    float_val_probs: np.ndarray
    candidates: List[Candidate]
    chosen: Optional[Candidate]
    representative: Optional[RepresentativeSample] = None
    sensitivity: List[LayerError] = field(default_factory=list)
    test: Optional[LabeledImages] = None
    float_test_probs: Optional[np.ndarray] = None
    test_probs: Optional[np.ndarray] = None
    commissioning: Optional[Commissioning] = None
    bundle: Optional[Bundle] = None
    bundle_path: Optional[Path] = None
    report_html: Optional[Path] = None
    report_png: Optional[Path] = None
    message: str = ""
    verdict: Optional[DeployabilityVerdict] = None
    precision_note: Optional[str] = None  # why --precision auto did not deploy INT8
    root: Optional[Path] = None  # the dataset folder (tiled inference reads the image files again)
    float_scores: Optional[FloatScores] = None

    @property
    def passed(self) -> bool:
        return self.chosen is not None

    @property
    def good_index(self) -> int:
        return self.run.labels.index(self.run.good_class)

    @property
    def keras_bytes(self) -> int:
        return self.run.folder.model.stat().st_size

    def metrics(self, policy: DecisionPolicy) -> dict:
        """Validation (and test) metrics of float and converted model at ``policy``, JSON-ready."""
        labels, good = self.run.labels, self.run.good_class
        method = self.options.interval
        out = {"validation_float": score(self.float_val_probs, self.val.labels, labels, good, policy, method)}
        if self.chosen is not None:
            out["validation"] = score(self.chosen.val_probs, self.val.labels, labels, good, policy, method)
        if self.test is not None and len(self.test.labels):
            out["test_float"] = score(self.float_test_probs, self.test.labels, labels, good, policy, method)
            if self.test_probs is not None:
                out["test"] = score(self.test_probs, self.test.labels, labels, good, policy, method)
        return out


def report_dir_for(out: str | os.PathLike) -> Path:
    """``tiles.inspector`` -> ``tiles_report/`` beside it."""
    out = Path(out)
    stem = out.name[: -len(BUNDLE_SUFFIX)] if out.name.endswith(BUNDLE_SUFFIX) else out.stem
    return out.parent / f"{stem}_report"


def _version(run: RunInfo, precision: Precision) -> str:
    created = run.manifest.created
    try:
        stamp = datetime.fromisoformat(created).strftime("%Y%m%d-%H%M")
    except ValueError:
        stamp = "run"
    return f"{stamp}-{precision.value}"


def _manifest(
    run: RunInfo,
    conversion: Conversion,
    spec: PreprocessSpec,
    options: CalibrationOptions,
    decision: Optional[DecisionPolicy] = None,
    camera=None,
    metrics: Optional[dict] = None,
    inference: Optional[InferenceSpec] = None,
) -> Manifest:
    info = run.manifest
    return conversion.manifest(
        name=options.name or info.name or run.path.name,
        version=options.version or _version(run, conversion.precision),
        labels=run.labels,
        good_class=run.good_class,
        preprocess=spec,
        decision=decision,
        inference=inference,
        camera=camera,
        metrics=metrics,
        provenance=Provenance(
            dataset_fingerprint=info.dataset_fingerprint,
            split_sha256=info.split_sha256,
            dataset_root=info.dataset_root,
            training_run=str(run.path.resolve()),
        ),
    )


class FloatScores:
    """The float Keras model's validation probabilities per flip-averaging mode, computed once each."""

    def __init__(self, model, images: np.ndarray, plain: np.ndarray):
        self._model, self._images = model, images
        self._cache: Dict[FlipAveraging, np.ndarray] = {FlipAveraging.NONE: plain}

    def __call__(self, tta: FlipAveraging) -> np.ndarray:
        if tta not in self._cache:
            self._cache[tta] = predict_keras(self._model, self._images, tta=tta)
        return self._cache[tta]


def _candidate(
    conversion: Conversion,
    run: RunInfo,
    val: LabeledImages,
    float_val: Callable[[FlipAveraging], np.ndarray],
    options: CalibrationOptions,
    root: Optional[Path] = None,
) -> Candidate:
    """The converted model with the inference it will run (measured on validation when there is a choice),
    its operating point on the scores that inference gives, and the guard (float and converted model with
    the same flip averaging, on the whole frame: the float model is not tiled)."""
    plain = Bundle.create(_manifest(run, conversion, run.spec, options), conversion.model)
    good = run.labels.index(run.good_class)
    is_defect = val.labels != good

    def pick(scores: np.ndarray, spec: InferenceSpec) -> OperatingPoint:
        return _operating_point(run, options, scores, is_defect, spec)

    default = default_spec(options.tta, options.tiles, options.tile_overlap)
    specs = candidates(options.tta, options.tiles, options.tile_overlap)
    trials = (
        measure(plain, val, root, specs, pick, options.line.max_false_reject_rate, options.threads)
        if len(specs) > 1
        else []
    )
    auto = options.tta == FlipChoice.AUTO or options.tiles == TilingChoice.AUTO
    if trials:
        # auto's pick first; should it fail the guard where the default passes, the default is kept
        picks = list({id(t): t for t in (choose(trials, default, auto), choose(trials, default, False))}.values())
        tried = [(t.inference, t.probs, t.operating_point) for t in picks]
    else:
        probs = predict_bundle(plain, val, root, options.threads, inference=default)
        tried = [(default, probs, pick(defect_score(probs, good), default))]
    for spec, probs, op in tried:
        float_probs = float_val(spec.tta)
        whole = (
            probs
            if spec.tiling is None
            else predict_bundle(plain, val, threads=options.threads, inference=InferenceSpec(tta=spec.tta))
        )
        parity = check_parity(
            float_probs,
            whole,
            val.labels,
            good,
            op.policy(),
            options.accuracy_budget,
            conversion.kind,
            options.interval,
            options.guard_on,
        )
        log.debug("%s", parity.summary())
        if parity.passed:
            break
        if spec != tried[-1][0]:
            log.warning("%s fails the accuracy guard; keeping %s", spec.describe(), tried[-1][0].describe())
    bundle = Bundle.create(_manifest(run, conversion, run.spec, options, inference=spec), conversion.model)
    return Candidate(conversion, bundle, probs, op, parity, trials, float_probs)


def _operating_point(
    run: RunInfo,
    options: CalibrationOptions,
    scores: np.ndarray,
    is_defect: np.ndarray,
    inference: Optional[InferenceSpec] = None,
) -> OperatingPoint:
    """The training run's policy (so every report and the bundle share one threshold), unless the options
    ask for another target; then it is chosen here on the converted model's validation scores. A bundle
    that flip-averages or tiles scores differently from the single-view float model the training run
    chose on, so its threshold is chosen again on its own validation scores, for the run's target."""
    recorded = run.manifest.operating_point
    explicit = (options.target, options.target_rate, options.review_margin) != (None, None, None)
    plain = inference is None or inference == InferenceSpec()
    if recorded is not None and not explicit and plain:
        note = f"threshold from the training run, chosen on its {recorded.chosen_on}"
        note += f"; {recorded.note}" if recorded.note else ""
        return operating_point(
            scores,
            is_defect,
            recorded.policy,
            recorded.target,
            recorded.target_rate,
            options.interval,
            note=note,
            chance=recorded.chance,
        )
    # a rate or margin given alone asks for the escape rule of old; nothing given and no run policy: budget
    fallback = Target.ESCAPE if explicit else Target.BUDGET
    target = options.target or (recorded.target if recorded is not None and not explicit else fallback)
    rate = options.target_rate
    if rate is None:
        rate = recorded.target_rate if recorded is not None and not explicit else 0.005
    op = choose_threshold(
        scores,
        is_defect,
        target,
        rate,
        options.review_margin or 0.0,
        options.interval,
        max_false_reject_rate=options.line.max_false_reject_rate,
        max_review_rate=options.line.max_review_rate,
        max_escape_rate=options.line.max_escape_rate,
    )
    if recorded is not None and not explicit and inference is not None:
        why = (
            f"threshold chosen on the bundle's validation scores with {inference.describe()}, for the "
            f"training run's target ({target.describe(rate)}); the training report's threshold "
            f"{recorded.policy.threshold:.4f} is for single-view whole-frame scores"
        )
        op = replace(op, note=f"{why}; {op.note}" if op.note else why)
    return op


def judge(result: CalibrationResult) -> DeployabilityVerdict:
    """The verdict on the chosen converted model at its policy: on test when it was evaluated, else on
    validation (where the threshold was chosen, so optimistic; the basis says so). An unfit quantized model
    gets a note on the float model at the same policy and images: whether quantization is what fails."""
    chosen, run = result.chosen, result.run
    good = result.good_index
    if result.test_probs is not None and len(result.test.labels):
        probs, labels, basis = result.test_probs, result.test.labels, "test split"
        float_probs = result.float_test_probs
    else:
        probs, labels, basis = chosen.val_probs, result.val.labels, "validation split (threshold chosen there)"
        float_probs = result.float_val_probs
    policy = chosen.operating_point.policy()
    best_epoch = None if run.manifest.init_from else run.manifest.best_epoch  # a warm start may peak at once
    verdict = assess(
        defect_score(probs, good),
        labels != good,
        policy,
        result.options.line,
        predicted=probs.argmax(1),
        best_epoch=best_epoch,
        epochs=run.manifest.epochs,
        basis=f"{basis}, {chosen.conversion.kind}, threshold {policy.threshold:.4f}",
        absent=absent_defect_classes(labels, run.manifest.labels, good),
        chance=chosen.operating_point.chance,
    )
    if not verdict.deployable and chosen.conversion.precision == Precision.INT8 and float_probs is not None:
        float_verdict = assess(
            defect_score(float_probs, good),
            labels != good,
            policy,
            result.options.line,
            predicted=float_probs.argmax(1),
        )
        verdict.notes.append(quantization_note(float_verdict))
    return verdict


def quantization_note(float_verdict: DeployabilityVerdict) -> str:
    """What the float model's verdict at the same policy and images says about an unfit INT8 model."""
    if float_verdict.deployable:
        return (
            "the float model is DEPLOYABLE at this threshold on the same images, so INT8 quantization is what "
            "fails: --precision float16 deploys it without that loss (CPU and GPU; no integer-only accelerator), "
            "or train again with another --set seed=N (how well a model survives INT8 varies between training runs)"
        )
    why = "; ".join(r.message for r in float_verdict.reasons)
    return f"the float model is NOT DEPLOYABLE here either ({why}): the model falls short, not only its INT8 form"


def _bundle_metrics(result: CalibrationResult) -> dict:
    chosen = result.chosen
    op = chosen.operating_point
    detail = result.metrics(op.policy())
    val, p = detail["validation"], chosen.parity
    metrics = {
        "model_kind": chosen.conversion.kind,
        "val_images": int(len(result.val.labels)),
        "val_accuracy": round(val["accuracy"], 4),
        "val_float_accuracy": round(p.float_accuracy, 4),
        "val_accuracy_drop_pp": round(p.class_drop_pp, 3),
        "val_decision_accuracy": round(p.quant_decision_accuracy, 4),
        "val_float_decision_accuracy": round(p.float_decision_accuracy, 4),
        "val_decision_drop_pp": round(p.decision_drop_pp, 3),
        "guard_on": p.measure.value,
        "val_top1_agreement": round(p.agreement, 4),
        "val_escape_rate": round(op.escape.rate, 4),
        "val_escape_rate_ci95_high": round(op.escape.high, 4),
        "val_false_reject_rate": round(op.false_reject.rate, 4),
        "val_false_reject_rate_ci95_high": round(op.false_reject.high, 4),
        "val_review_rate": round(op.review.rate, 4),
        "precision_choice": {
            "asked": result.options.precision.value,
            "deployed": chosen.conversion.precision.value,
            "why": result.precision_note,
        },
    }
    if "test" in detail:
        t, tf = detail["test"], detail["test_float"]
        metrics.update(
            {
                "test_images": int(t["samples"]),
                "test_accuracy": round(t["accuracy"], 4),
                "test_float_accuracy": round(tf["accuracy"], 4),
                "test_escape_rate": round(t["decision"]["escape"]["rate"], 4),
                "test_false_reject_rate": round(t["decision"]["false_reject"]["rate"], 4),
            }
        )
    metrics.update(
        {
            "model_bytes_keras": result.keras_bytes,
            "operating_point": op.to_dict(),
            "inference": {
                "chosen": chosen.bundle.manifest.inference.model_dump(mode="json"),
                "trials": [t.to_dict() for t in chosen.trials],
            },
            "parity": [c.parity.to_dict() for c in result.candidates],
            "conversion": chosen.conversion.describe(),
            "representative": result.representative.to_dict() if result.representative else None,
            "sensitivity": [asdict(e) for e in result.sensitivity[:15]],
            "deployability": result.verdict.to_dict() if result.verdict else None,
            **detail,
        }
    )
    return metrics


def calibrate(
    run_dir: str | os.PathLike, out: Optional[str | os.PathLike], options: Optional[CalibrationOptions] = None
) -> CalibrationResult:
    """Build the bundle ``out`` from a training run; raises :class:`GuardError` when the guard fails and
    :class:`NotDeployableError` for an unfit model without ``options.force`` (no bundle written either way).

    With ``out=None`` nothing is written (the result still holds the bundle in memory).
    """
    options = options or CalibrationOptions()
    if options.remedy != Remedy.NONE and not options.precision.tries_int8:
        raise ValueError(f"--remedy {options.remedy.value} applies to --precision int8 or auto only")
    run = RunInfo.load(run_dir)
    root = resolve_root(run.split, options.data_root)
    preprocessor = Preprocessor(run.spec)
    commissioning, bundle_spec = _commission(options.camera, run.spec)

    val = load_labeled(run.split.splits["val"], root, preprocessor, run.labels)
    if len(val.labels) == 0:
        raise ValueError(f"{run.path}: the validation split has no usable image")
    for item in val.skipped:
        log.warning("validation: skipped %s: %s", item.path, item.reason)
    keras_model = load_keras_model(run.path / "model.keras")
    plain_float = predict_keras(keras_model, val.images)
    result = CalibrationResult(run, options, val, plain_float, [], None, commissioning=commissioning, root=root)
    result.float_scores = FloatScores(keras_model, val.images, plain_float)
    if options.precision.tries_int8:
        result.representative = draw_representative(
            run.split,
            root,
            preprocessor,
            options.representative_size,
            options.representative_seed,
            recommended_min=options.representative_min,
        )
    _convert_and_guard(result, export_for_conversion(keras_model))
    tta = FlipAveraging.NONE
    if result.chosen is not None and result.chosen.float_val_probs is not None:
        result.float_val_probs = result.chosen.float_val_probs  # with the bundle's flip averaging
        tta = result.chosen.bundle.manifest.inference.tta

    if options.evaluate_test and run.split.splits["test"]:
        result.test = load_labeled(run.split.splits["test"], root, preprocessor, run.labels)
        result.float_test_probs = predict_keras(keras_model, result.test.images, tta=tta)
        if result.chosen is not None:
            result.test_probs = predict_bundle(result.chosen.bundle, result.test, root, options.threads)

    report_dir = report_dir_for(out) if out is not None else None
    if result.chosen is None:
        result.message = failure_message(
            [c.parity for c in result.candidates],
            len(result.representative.images) if result.representative else 0,
            options.remedy != Remedy.NONE,
            options.fallback_layers,
        )
        if report_dir is not None and options.report:
            _write_report(result, report_dir)
            result.message += f"\nreport: {result.report_html}"
        raise GuardError(result.message, result)

    result.verdict = judge(result)
    if not result.verdict.deployable and not options.force:
        result.message = (
            f"{result.verdict.summary()}\nno bundle written; fix the model (see the reasons) or "
            f"pass --force to write it anyway (the bundle then records this verdict)"
        )
        if report_dir is not None and options.report:
            _write_report(result, report_dir)
            result.message += f"\nreport: {result.report_html}"
        raise NotDeployableError(result.message, result)
    chosen = result.chosen
    op = chosen.operating_point
    manifest = _manifest(
        run,
        chosen.conversion,
        bundle_spec,
        options,
        op.policy(),
        commissioning.reference if commissioning else None,
        _bundle_metrics(result),
        chosen.bundle.manifest.inference,
    )
    # The station's plausibility gate compares every frame with these (training-split) model inputs.
    manifest.plausibility = PlausibilityReference.fit(
        result.representative.images if result.representative is not None else result.val.images
    )
    result.bundle = Bundle.create(manifest, chosen.conversion.model)
    if out is not None:
        result.bundle_path = result.bundle.save(out)
        result.bundle = Bundle.load(result.bundle_path)  # what a device will read, checksum verified
        if options.report:
            _write_report(result, report_dir)
    return result


def _commission(camera: Optional[CameraOptions], spec: PreprocessSpec):
    """(camera commissioning or None, the bundle's preprocessing: the run's, cropped to the ROI on request)."""
    if camera is None:
        return None, spec
    commissioning = camera.commission()
    for warning in commissioning.warnings:
        log.warning("camera reference: %s", warning)
    if not camera.crop_model_input:
        return commissioning, spec
    if commissioning.reference.roi is None:
        raise ValueError("--crop-model-input needs a region of interest (--roi or --auto-roi)")
    return commissioning, spec.model_copy(update={"roi": commissioning.reference.roi})


def _has_hard_swish(fixed) -> bool:
    from training.export_graph import split_hard_swish

    return split_hard_swish(fixed) is not fixed


def int8_shortfall(chosen: Optional[Candidate]) -> Optional[str]:
    """Why ``--precision auto`` does not deploy this INT8 candidate (None: it holds). Stricter than the guard's
    default ``either``: every measure must stay in budget, escapes counted over the defects alone, since
    INT8 models that kept pass/fail accuracy over all images were measured to let more defects pass
    (docs/training.md, "Why one model survives INT8 and another does not")."""
    if chosen is None:
        return "INT8 failed the accuracy guard"
    p = chosen.parity
    over = []
    if p.class_drop_pp > p.allowed_pp + 1e-9:
        over.append(f"class accuracy {-p.class_drop_pp:+.2f} pp (budget {p.allowed_pp:.2f})")
    if p.decision_drop_pp > p.allowed_pp + 1e-9:
        over.append(f"pass/fail accuracy {-p.decision_drop_pp:+.2f} pp (budget {p.allowed_pp:.2f})")
    if p.escape_rise_pp > p.allowed_escape_pp + 1e-9:
        over.append(
            f"escapes {p.quant_escape.count} of {p.quant_escape.total} defects against float's "
            f"{p.float_escape.count} ({p.escape_rise_pp:+.2f} pp, budget {p.allowed_escape_pp:.2f})"
        )
    if not over:
        return None
    return f"INT8 against float on validation at threshold {p.threshold:.4f}: {'; '.join(over)}"


def _convert_and_guard(result: CalibrationResult, fixed) -> None:
    """Convert at the asked precision (auto: INT8, then float16 when INT8 does not hold); sets
    ``result.chosen`` (None = the guard failed)."""
    asked = result.options.precision
    if asked != PrecisionChoice.AUTO:
        _convert_at(result, fixed, Precision(asked.value))
        return
    _convert_at(result, fixed, Precision.INT8)
    result.precision_note = int8_shortfall(result.chosen)
    if result.precision_note is None:
        return
    options = result.options
    # info, not warning: the CLI prints the choice, the report and the bundle metrics record it
    log.info("%s: deploying float16 (--precision int8 insists on INT8)", result.precision_note)
    half = _candidate(
        convert(fixed, Precision.FLOAT16, None, options.io_dtype),
        result.run,
        result.val,
        _float_val(result),
        options,
        result.root,
    )
    result.candidates.append(half)
    result.chosen = half if half.parity.passed else None


def _float_val(result: CalibrationResult) -> Callable[[FlipAveraging], np.ndarray]:
    """The float model's validation probabilities per flip-averaging mode (plain ones without a model)."""
    return result.float_scores or (lambda tta: result.float_val_probs)


def _convert_at(result: CalibrationResult, fixed, precision: Precision) -> None:
    """Convert, measure, and apply the remedy as the options say; sets ``result.chosen`` (None = failed)."""
    options, run = result.options, result.run
    dataset = result.representative.dataset() if result.representative is not None else None
    float_val = _float_val(result)
    first = _candidate(
        convert(fixed, precision, dataset, options.io_dtype), run, result.val, float_val, options, result.root
    )
    result.candidates.append(first)
    if not first.parity.passed and precision == Precision.INT8 and _has_hard_swish(fixed):
        # The one-partition hard-swish quantizes three intermediate tensors more than the fused op does: when
        # that costs the guard, the fused op (exact, but cut into XNNPACK partitions: slower) is still full integer.
        fused = _candidate(
            convert(fixed, precision, dataset, options.io_dtype, split_hard_swish=False),
            run,
            result.val,
            float_val,
            options,
            result.root,
        )
        result.candidates.append(fused)
        if fused.parity.passed:
            log.warning(
                "the one-partition INT8 model failed the accuracy guard and the one with fused hard-swish "
                "passed: deploying that (the same math, in several XNNPACK partitions, so slower on the CPU)"
            )
            first = fused
    if options.remedy != Remedy.FLOAT_FALLBACK and first.parity.passed:
        result.chosen = first
        return
    if options.remedy == Remedy.NONE:
        return
    quantizer = FallbackQuantizer(fixed, dataset, options.io_dtype)
    result.sensitivity = quantizer.sensitivity()
    nodes = [e.tensor for e in result.sensitivity[: options.fallback_layers]]
    second = _candidate(
        quantizer.convert(nodes, options.fallback_ops), run, result.val, float_val, options, result.root
    )
    result.candidates.append(second)
    # The mixed model when it passes; full integer if only that passes (the fallback made it worse).
    result.chosen = next((c for c in (second, first) if c.parity.passed), None)
    if result.chosen is first:
        log.warning("float fallback failed the accuracy guard while full integer passed; deploying full integer")


def _write_report(result: CalibrationResult, report_dir: Path) -> None:
    from calibration.report import write_calibration_report

    result.report_html, result.report_png = write_calibration_report(result, report_dir)
