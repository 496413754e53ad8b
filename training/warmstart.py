"""Warm start from an earlier run (``inspector train --init-from RUN_DIR``) and what it changed.

The review loop adds a few hundred relabeled frames, sometimes a new defect class. Retraining from random
weights costs the full schedule and yields a model that differs for reasons unrelated to the new labels;
starting from the last model keeps what it learned and needs one short stage. Three rules keep that honest:

- the new run sees the images exactly as the old one did (input size, grayscale, ROI and architecture are
  taken from the previous run, and a conflicting explicit setting is an error naming the key);
- images keep their split (:func:`inspector.dataset.extend_split`), so the new test split holds no image
  the old model trained on;
- the report compares old and new model on the same test images: which parts changed verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import keras
import numpy as np

from inspector.dataset import DatasetError, SplitManifest
from inspector.decision import DecisionPolicy, defect_score
from inspector.protocol.enums import Verdict
from inspector.runfolder import RunFolder, RunFolderError, RunManifest
from training.config import DataConfig, ModelConfig, TrainConfig
from training.model import BACKBONE

# Layers whose weights carry over unchanged; the classifier ("logits") is matched class by class.
_KEPT_LAYERS = (BACKBONE, "se_attention")
_ARCHITECTURE = ("backbone", "alpha", "minimalistic", "se_ratio")


class WarmStartError(ValueError):
    """The previous run cannot be continued as asked; the message names the setting."""


@dataclass
class PreviousRun:
    """The run a warm start continues: its config, manifest, split and model file."""

    folder: RunFolder
    config: TrainConfig
    manifest: RunManifest
    split: SplitManifest

    @classmethod
    def load(cls, path: str | Path) -> PreviousRun:
        folder = RunFolder(path)
        if not folder.model.is_file():
            raise WarmStartError(f"--init-from {path}: no {folder.model.name} there; is it a finished training run?")
        try:
            manifest = RunManifest.load(folder)
            config = TrainConfig.model_validate_json(folder.config.read_text())
            split = SplitManifest.load(folder.split)
        except (OSError, RunFolderError, DatasetError, ValueError) as exc:
            raise WarmStartError(f"--init-from {path}: {exc}") from None
        return cls(folder, config, manifest, split)

    @property
    def policy(self) -> Optional[DecisionPolicy]:
        record = self.manifest.operating_point
        return record.policy if record is not None else None


def adopt(config: TrainConfig, previous: PreviousRun, echo: Callable[[str], None]) -> TrainConfig:
    """``config`` with the previous run's view of the images and architecture; a conflicting setting is an error."""
    old_model, old_data = previous.config.model, previous.config.data
    model_updates: Dict[str, object] = {}
    defaults = ModelConfig()
    for key in _ARCHITECTURE:
        mine, theirs = getattr(config.model, key), getattr(old_model, key)
        if mine != theirs and mine != getattr(defaults, key):
            raise WarmStartError(f"model.{key} is {mine!r} but the run to continue has {theirs!r}; drop the setting")
        model_updates[key] = theirs
    if config.model.input_size not in ("auto", old_model.input_size, tuple(old_model.input_size)):
        raise WarmStartError(
            f"model.input_size {config.model.input_size} differs from the previous run's {old_model.input_size}; "
            "a warm start keeps the input size (train from scratch to change it)"
        )
    model_updates["input_size"] = tuple(old_model.input_size)
    model_updates["weights"] = old_model.weights  # provenance only: the weights come from the previous model
    data_updates: Dict[str, object] = {}
    for key in ("grayscale", "roi", "interpolation"):
        mine, theirs = getattr(config.data, key), getattr(old_data, key)
        if mine is not None and mine != theirs and mine != DataConfig.model_fields[key].default:
            raise WarmStartError(f"data.{key} is {mine!r} but the run to continue has {theirs!r}; drop the setting")
        data_updates[key] = theirs
    if config.data.good_class != previous.manifest.good_class:
        if config.data.good_class != DataConfig.model_fields["good_class"].default:
            raise WarmStartError(
                f"data.good_class is '{config.data.good_class}' but the run to continue has "
                f"'{previous.manifest.good_class}'"
            )
        data_updates["good_class"] = previous.manifest.good_class
    width, height = old_model.input_size
    echo(
        f"warm start from {previous.folder.root}: {old_model.backbone.value} backbone at {width}x{height}"
        f"{', grayscale' if old_data.grayscale else ''}, classes {previous.manifest.labels}"
    )
    return config.model_copy(
        update={
            "model": config.model.model_copy(update=model_updates),
            "data": config.data.model_copy(update=data_updates),
        }
    )


def transfer_weights(model: keras.Model, previous: keras.Model, labels: List[str], old_labels: List[str]) -> List[str]:
    """Copy the backbone, SE head and the known classes' classifier columns; return the classes that start fresh."""
    for name in _KEPT_LAYERS:
        model.get_layer(name).set_weights(previous.get_layer(name).get_weights())
    kernel, bias = model.get_layer("logits").get_weights()
    old_kernel, old_bias = previous.get_layer("logits").get_weights()
    new_classes = []
    for i, label in enumerate(labels):
        if label in old_labels:
            j = old_labels.index(label)
            kernel[:, i], bias[i] = old_kernel[:, j], old_bias[j]
        else:
            new_classes.append(label)
    model.get_layer("logits").set_weights([kernel, bias])
    return new_classes


def load_previous_model(previous: PreviousRun) -> keras.Model:
    import training.se  # noqa: F401  (registers SqueezeExcite for load_model)

    return keras.models.load_model(previous.folder.model, compile=False)


def _change(old: Verdict, new: Verdict, is_defect: bool) -> str:
    """better / worse / same outcome: a defect must not pass, a good part must pass (review counts as not passed)."""
    old_right, new_right = (old is Verdict.PASS) != is_defect, (new is Verdict.PASS) != is_defect
    return "better" if new_right > old_right else "worse" if new_right < old_right else "same outcome"


def compare(
    previous: PreviousRun,
    old_probs: np.ndarray,
    new_probs: np.ndarray,
    new_policy: DecisionPolicy,
    paths: List[str],
    truth_is_defect: np.ndarray,
    new_good_index: int,
) -> dict:
    """Old and new model on the same images, each at its own operating point: counts and the parts that changed."""
    old_policy = previous.policy or DecisionPolicy()
    old_scores = defect_score(old_probs, previous.manifest.good_index)
    new_scores = defect_score(new_probs, new_good_index)
    old_verdicts = [old_policy.decide(float(s)) for s in old_scores]
    new_verdicts = [new_policy.decide(float(s)) for s in new_scores]

    def counts(verdicts: List[Verdict]) -> dict:
        fail = np.array([v is not Verdict.PASS for v in verdicts])
        return {
            "escapes": int(np.sum(truth_is_defect & ~fail)),
            "false_rejects": int(np.sum(~truth_is_defect & fail)),
            "review": int(sum(v is Verdict.REVIEW for v in verdicts)),
        }

    changed = [
        {
            "path": path,
            "truth": "defect" if is_defect else "good",
            "old": old.value,
            "new": new.value,
            "old_score": round(float(o), 4),
            "new_score": round(float(n), 4),
            "change": _change(old, new, bool(is_defect)),
        }
        for path, is_defect, old, new, o, n in zip(
            paths, truth_is_defect, old_verdicts, new_verdicts, old_scores, new_scores
        )
        if old is not new
    ]
    return {
        "from": str(previous.folder.root),
        "images": len(paths),
        "old": {"threshold": old_policy.threshold, **counts(old_verdicts)},
        "new": {"threshold": new_policy.threshold, **counts(new_verdicts)},
        "changed": changed,
    }


def describe_comparison(comparison: dict) -> str:
    """One line for the terminal: old vs new on the same test images, and how many parts changed verdict."""
    old, new, changed = comparison["old"], comparison["new"], comparison["changed"]
    better = sum(c["change"] == "better" for c in changed)
    worse = sum(c["change"] == "worse" for c in changed)
    return (
        f"previous model on the same {comparison['images']} test images: escapes {old['escapes']} -> {new['escapes']}, "
        f"false rejects {old['false_rejects']} -> {new['false_rejects']}, review {old['review']} -> {new['review']}; "
        f"{len(changed)} changed verdict ({better} better, {worse} worse; listed in the report)"
    )
