"""The run folder contract: the files ``inspector train`` writes, and run.json as one typed model.

Training writes RUN_DIR through :class:`RunFolder` and :class:`RunManifest`; calibration and the demo
read it through the same two, so a file name or a field is spelled once. ``run.json`` is written last:
its presence means the run is complete.

RUN_DIR: ``model.keras`` (best model, float32), ``run.json`` (this manifest), ``split.json`` (the split
manifest), ``config.json`` (the TrainConfig), ``metrics.json``, ``predictions.json`` (the val/test
probabilities the metrics come from), ``history.json``, ``report.html`` + PNGs, ``checkpoints/``, ``cache/``.

Example:
    >>> RunFolder("runs/r1").manifest.as_posix()
    'runs/r1/run.json'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from pydantic import Field, ValidationError

from inspector.config import StrictModel
from inspector.decision import DecisionPolicy
from inspector.deployability import DeployabilityVerdict
from inspector.fsutil import atomic_write_json
from inspector.operating_point import Target
from inspector.preprocess import PreprocessSpec


class RunFolderError(ValueError):
    """The folder is not a complete training run, or its run.json cannot be read."""


@dataclass(frozen=True)
class RunFolder:
    """Paths of one run folder."""

    root: Path

    def __init__(self, root: str | os.PathLike[str]):
        object.__setattr__(self, "root", Path(root))

    @property
    def model(self) -> Path:
        return self.root / "model.keras"

    @property
    def manifest(self) -> Path:
        return self.root / "run.json"

    @property
    def split(self) -> Path:
        return self.root / "split.json"

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions.json"

    @property
    def history(self) -> Path:
        return self.root / "history.json"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def check_complete(self) -> None:
        """Raise :class:`RunFolderError` naming the first missing file of a finished run."""
        for path in (self.model, self.manifest, self.split):
            if not path.is_file():
                raise RunFolderError(
                    f"{self.root}: not a training run (missing {path.name}); give the folder `inspector train` wrote"
                )


def write_json(path: Path, data: object) -> None:
    """Strict JSON (no NaN) written atomically, so a reader never sees half a file."""
    atomic_write_json(path, data, allow_nan=False)


class OperatingPointRecord(StrictModel):
    """The decision policy the run chose, and on what (calibrate carries it into the bundle)."""

    policy: DecisionPolicy
    target: Target
    target_rate: float
    chosen_on: str = Field(description="e.g. 'validation split (59 defects, 400 good)'")
    note: str = ""
    chance: Optional[float] = Field(
        None, description="budget target: estimated chance that the policy meets the line's budget"
    )


class RunManifest(StrictModel):
    """run.json: what a finished run is, where it came from, and what it decided."""

    labels: List[str]
    good_class: str
    preprocess: PreprocessSpec
    backbone: str
    input_size: Tuple[int, int]
    weights: str
    dataset_root: str
    dataset_fingerprint: str
    split_sha256: str
    name: str
    created: str
    seed: int
    tool_version: str
    epochs: Optional[int] = Field(None, description="Epochs trained over all stages")
    best_epoch: Optional[int] = Field(None, description="Global epoch with the best validation pass/fail score")
    kept_epoch: Optional[int] = Field(
        None, description="Global epoch whose weights the model holds (the last, or the best with restore_best)"
    )
    operating_point: Optional[OperatingPointRecord] = None
    deployability: Optional[Dict[str, Any]] = Field(
        None, description="DeployabilityVerdict.to_dict() on the test split"
    )
    init_from: Optional[str] = Field(None, description="Run folder this run warm-started from (--init-from)")

    def save(self, folder: RunFolder) -> Path:
        write_json(folder.manifest, self.model_dump(mode="json"))
        return folder.manifest

    @classmethod
    def load(cls, folder: RunFolder) -> RunManifest:
        try:
            return cls.model_validate_json(folder.manifest.read_text())
        except OSError as exc:
            raise RunFolderError(f"{folder.manifest}: cannot read ({exc.strerror or exc})") from None
        except ValidationError as exc:
            raise RunFolderError(f"{folder.manifest}: not a run manifest of this version: {exc}") from None

    @property
    def good_index(self) -> int:
        return self.labels.index(self.good_class)

    def verdict(self) -> Optional[DeployabilityVerdict]:
        return DeployabilityVerdict.from_dict(self.deployability) if self.deployability else None
