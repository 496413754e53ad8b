"""Run a bundle on labelled images with the edge's own interpreter code and report what it decides.

``inspector evaluate`` and ``inspector calibrate`` report the same numbers from :func:`score`: accuracy,
per-class precision / recall / F1 (``inspector.metrics``), ROC AUC of the defect score, and the escape,
false-reject and review rates of the bundle's decision policy with their confidence intervals, plus per
class how many images were passed, sent to review or failed. Probabilities of a bundle always come from
``inspector.inference.Classifier``, the code a station runs, so a bundle checked here behaves the same on
the line.

Class folders that are not labels of the bundle are defect kinds it never saw: they are counted as
defects for pass/fail (``metrics["unseen_defects"]``: passed = escaped, review, failed per kind) and in
the verdict, not in accuracy. Every evaluation ends with the deployability verdict (:mod:`inspector.deployability`) at the bundle's
policy. Images that were in the training split of the bundle's run (found by content hash when the run
folder is still where the bundle says) make it NOT DEPLOYABLE: numbers on them say nothing about new
parts. When no image can be used, :class:`NothingToEvaluate` carries the verdict with the skip reasons.

Example:
    >>> result = evaluate_bundle("model.inspector", "new_images/")            # doctest: +SKIP
    >>> print(format_metrics(result.metrics))                                 # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from calibration.operating_point import IntervalMethod, rates_at
from calibration.representative import LabeledImages, load_labeled
from inspector.bundle import Bundle, FlipAveraging, InferenceSpec
from inspector.dataset import Skipped, SplitManifest, scan_folder
from inspector.decision import DecisionPolicy, defect_score
from inspector.deployability import DeployabilityVerdict, absent_defect_classes, assess, no_usable_images
from inspector.imageio import load_image
from inspector.inference import flip_views
from inspector.metrics import classification_report
from inspector.operating_point import outcomes
from inspector.preprocess import ChannelOrder, Preprocessor
from inspector.runfolder import RunFolder


class NothingToEvaluate(ValueError):
    """No image could be evaluated; ``verdict`` says why (the skip reasons, counted)."""

    def __init__(self, message: str, verdict: DeployabilityVerdict):
        super().__init__(message)
        self.verdict = verdict


def predict_keras(
    model, images: np.ndarray, batch_size: int = 32, tta: FlipAveraging = FlipAveraging.NONE
) -> np.ndarray:
    """Probabilities of the float Keras model for prepared uint8 images (fed as raw 0-255 float32),
    averaged over the flip views ``tta`` like the bundle's classifier averages them."""
    if len(images) == 0:
        return np.zeros((0, int(model.output_shape[-1])), np.float32)
    from keras import ops

    views = [
        np.concatenate(
            [
                ops.convert_to_numpy(model(view[i : i + batch_size].astype(np.float32), training=False))
                for i in range(0, len(view), batch_size)
            ]
        )
        for view in flip_views(images, tta)
    ]
    return np.mean(views, axis=0).astype(np.float32)


def predict_bundle(
    bundle: Bundle,
    images: LabeledImages,
    root: Optional[str | os.PathLike] = None,
    threads: Optional[int] = None,
    backend: str = "auto",
    inference: Optional[InferenceSpec] = None,
) -> np.ndarray:
    """Probabilities of a bundle's TFLite model through the edge Classifier (quantize, invoke, dequantize),
    with the bundle's inference (or ``inference``): flip-averaged prepared images, or for tiling the image
    files under ``root`` read again, since tiles are cut from the full-resolution picture."""
    from inspector.inference import Classifier

    clf = Classifier(bundle, backend=backend, threads=threads, inference=inference)
    if not clf.tiled:
        return clf.predict_batch(images.images)
    if root is None:
        raise ValueError("tiled inference needs the image files: give the dataset folder")
    return clf.predict_frames((load_image(Path(root) / path) for path in images.paths), ChannelOrder.RGB)


def score(
    probs: np.ndarray,
    labels: np.ndarray,
    label_names: Sequence[str],
    good_class: str,
    policy: DecisionPolicy,
    method: IntervalMethod | str = IntervalMethod.CLOPPER_PEARSON,
) -> dict:
    """The metrics of one model on one labelled set, JSON-ready."""
    report = classification_report(probs, labels, label_names, good_class, threshold=policy.threshold)
    good = list(label_names).index(good_class)
    scores = defect_score(np.asarray(probs, np.float64), good) if len(labels) else np.zeros(0)
    labels = np.asarray(labels, np.int64)
    escape, false_reject, review = rates_at(scores, labels != good, policy, method)
    report["decision"] = {
        "threshold": policy.threshold,
        "review_low": policy.review_low,
        "review_high": policy.review_high,
        "escape": asdict(escape),
        "false_reject": asdict(false_reject),
        "review": asdict(review),
        "interval": IntervalMethod(method).value,
    }
    low = policy.review_low if policy.review_low is not None else policy.threshold
    high = policy.review_high if policy.review_high is not None else policy.threshold
    for i, name in enumerate(label_names):
        s = scores[labels == i]
        report["per_class"][name].update(
            passed=int((s < low).sum()), review=int(((s >= low) & (s < high)).sum()), failed=int((s >= high).sum())
        )
    return report


def format_metrics(metrics: dict, title: str = "") -> str:
    """A terminal table of :func:`score` output."""
    d = metrics["decision"]
    pf = metrics["pass_fail"]
    auc = pf.get("roc_auc")
    band = f", review band [{d['review_low']:.4f}, {d['review_high']:.4f})" if d["review_low"] is not None else ""

    def rate(r: dict) -> str:
        return f"{100 * r['rate']:.2f}% ({r['count']}/{r['total']}, 95% CI {100 * r['low']:.2f}-{100 * r['high']:.2f}%)"

    lines = [title] if title else []
    lines += [
        f"images        {metrics['samples']}",
        f"accuracy      {100 * metrics['accuracy']:.2f}%   macro F1 {metrics['macro_f1']:.3f}   "
        f"ROC AUC {'n/a' if auc is None else f'{auc:.4f}'}",
        f"threshold     {d['threshold']:.4f} on defect score 1 - p(good){band}",
        f"escape        {rate(d['escape'])}  (defects passed)",
        f"false reject  {rate(d['false_reject'])}  (good parts failed)",
    ]
    if d["review_low"] is not None:
        lines.append(f"review        {rate(d['review'])}  (all parts)")
    width = max(8, *(len(c) + 2 for c in metrics["per_class"]))
    lines.append(
        f"{'class':<{width}}{'support':>8}{'prec':>7}{'recall':>7}{'F1':>7}{'pass':>6}{'review':>7}{'fail':>6}"
    )
    for name, row in metrics["per_class"].items():
        lines.append(
            f"{name:<{width}}{row['support']:>8}{row['precision']:>7.3f}{row['recall']:>7.3f}"
            f"{row['f1']:>7.3f}{row['passed']:>6}{row['review']:>7}{row['failed']:>6}"
        )
    for name, row in metrics.get("unseen_defects", {}).items():
        lines.append(
            f"{name + ' *':<{width}}{row['support']:>8}{'':>21}{row['passed']:>6}{row['review']:>7}{row['failed']:>6}"
        )
    if metrics.get("unseen_defects"):
        lines.append("* defect kind the bundle was not trained on: counted as a defect (passed = escaped)")
    return "\n".join(lines)


@dataclass
class EvaluationResult:
    """A bundle's metrics on a labelled folder, with the raw probabilities for plots."""

    bundle: str
    data_root: str
    split: Optional[str]
    metrics: dict
    probs: np.ndarray
    labels: np.ndarray
    paths: List[str]
    skipped: List[Skipped] = field(default_factory=list)
    verdict: Optional[DeployabilityVerdict] = None

    def to_dict(self) -> dict:
        return {
            "bundle": self.bundle,
            "data_root": self.data_root,
            "split": self.split,
            "deployability": self.verdict.to_dict() if self.verdict else None,
            "metrics": self.metrics,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
        }

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path


def _training_hashes(bundle: Bundle) -> Optional[set]:
    """SHA-256 of the images the bundle's model was trained on, when its run folder is still there."""
    run = bundle.manifest.provenance.training_run
    split = RunFolder(run).split if run else None
    if split is None or not split.is_file():
        return None
    return {s.sha256 for s in SplitManifest.load(split).splits["train"]}


def _folder_images(
    bundle: Bundle, data_root: Path, split_file, split: str, preprocessor: Preprocessor
) -> Tuple[LabeledImages, LabeledImages, List[str], Dict[str, str]]:
    """(images of the bundle's classes, images of other class folders = unseen defect kinds, their class
    names, SHA-256 by path)."""
    labels = bundle.manifest.labels
    if split_file:
        manifest = SplitManifest.load(split_file)
        samples, skipped = manifest.splits[split], []
    else:
        scan = scan_folder(data_root, good_class=bundle.manifest.good_class)
        samples, skipped = scan.samples, list(scan.skipped)
    unseen = sorted({s.label for s in samples} - set(labels))
    loaded = load_labeled([s for s in samples if s.label in labels], data_root, preprocessor, labels)
    loaded.skipped = skipped + loaded.skipped
    others = load_labeled([s for s in samples if s.label in unseen], data_root, preprocessor, unseen)
    loaded.skipped += others.skipped
    return loaded, others, unseen, {s.path: s.sha256 for s in samples}


def _unseen_counts(scores: np.ndarray, labels: np.ndarray, names: Sequence[str], policy: DecisionPolicy) -> dict:
    """Per unseen defect kind: how many passed (escaped), went to review or failed."""
    passed, failed = outcomes(scores, policy)
    return {
        name: {
            "support": int((labels == i).sum()),
            "passed": int((passed & (labels == i)).sum()),
            "review": int((~passed & ~failed & (labels == i)).sum()),
            "failed": int((failed & (labels == i)).sum()),
        }
        for i, name in enumerate(names)
    }


def _recorded_chance(metrics: dict) -> Optional[float]:
    """The operating point's estimated chance of meeting the line's budget, as calibration recorded it in the
    bundle (budget target only; None in bundles from before it, or for other targets)."""
    chance = (metrics.get("operating_point") or {}).get("chance")
    return float(chance) if isinstance(chance, (int, float)) else None


def evaluate_bundle(
    bundle_path: str | os.PathLike,
    data_root: str | os.PathLike,
    split_file: Optional[str | os.PathLike] = None,
    split: str = "test",
    threads: Optional[int] = None,
    backend: str = "auto",
    policy: Optional[DecisionPolicy] = None,
    method: IntervalMethod | str = IntervalMethod.CLOPPER_PEARSON,
) -> EvaluationResult:
    """Metrics of a bundle on ``data_root/<class>/*`` (or one split of a split manifest over that folder)."""
    bundle = Bundle.load(bundle_path)
    m = bundle.manifest
    root = Path(data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    images, others, unseen, hashes = _folder_images(bundle, root, split_file, split, Preprocessor(m.preprocess))
    if len(images.images) == 0:
        verdict = no_usable_images([s.reason for s in images.skipped], basis=f"evaluate {root}")
        raise NothingToEvaluate(f"{root}: no usable image to evaluate\n{verdict.summary()}", verdict)
    probs = predict_bundle(bundle, images, root, threads, backend)
    chance = _recorded_chance(m.metrics) if policy is None else None  # said of the bundle's own policy only
    policy = policy or m.decision
    metrics = score(probs, images.labels, m.labels, m.good_class, policy, method)
    scores, is_defect, predicted = defect_score(probs, m.good_index), images.labels != m.good_index, probs.argmax(1)
    if len(others.labels):
        other_probs = predict_bundle(bundle, others, root, threads, backend)
        other_scores = defect_score(other_probs, m.good_index)
        metrics["unseen_defects"] = _unseen_counts(other_scores, others.labels, unseen, policy)
        scores, is_defect = np.r_[scores, other_scores], np.r_[is_defect, np.ones(len(other_scores), bool)]
        predicted = np.r_[predicted, other_probs.argmax(1)]
    trained_on = _training_hashes(bundle)
    seen = sum(hashes[p] in trained_on for p in images.paths) if trained_on is not None else 0
    verdict = assess(
        scores,
        is_defect,
        policy,
        predicted=predicted,
        training_images=seen,
        basis=f"{len(scores)} images{f' ({len(others.labels)} of unseen defect kinds)' if len(others.labels) else ''}, "
        f"threshold {policy.threshold:.4f}",
        absent=absent_defect_classes(images.labels, m.labels, m.good_index),
        chance=chance,
    )
    if trained_on is None:
        verdict.notes.append("the training run folder is not here: cannot check for training images")
    return EvaluationResult(
        str(bundle_path),
        str(root),
        split if split_file else None,
        metrics,
        probs,
        images.labels,
        images.paths,
        images.skipped,
        verdict,
    )
