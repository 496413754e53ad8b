"""Labels written into the dataset folder: copy, provenance, undo, and what each class gained.

A label copies an archived image into ``DATA/<class>/`` and writes a provenance sidecar beside it,
``<image name>.label.json`` (who, when, from which station, result and model, what the model said). The
dataset scanner lists that sidecar as a skipped non-image and trains on the image. Nothing is ever
replaced: a taken name gets a ``-2``, ``-3`` suffix and both files are created with
:func:`inspector.fsutil.atomic_create_bytes`, so a reader sees a whole file or none and an existing file is
never overwritten. Undo removes exactly the two files the label created, and refuses if either changed.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

from pydantic import Field, ValidationError

from inspector.config import StrictModel
from inspector.dataset import SplitManifest
from inspector.fsutil import atomic_create_bytes, sha256_bytes, sha256_file
from inspector.imageio import is_image_name
from inspector.protocol.enums import Verdict
from inspector.runfolder import RunFolder
from review.frames import ArchivedFrame

SIDECAR_SUFFIX = ".label.json"
PROVENANCE_SCHEMA = 1
CLASS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MAX_NAME_TRIES = 10000


class LabelError(ValueError):
    """A label, class or undo the store refuses; the message is shown to the operator."""


class Provenance(StrictModel):
    """Where a labeled image came from and who decided its class."""

    schema_: int = Field(PROVENANCE_SCHEMA, alias="schema")
    label: str
    labeled_by: str
    labeled_at: str = Field(description="ISO 8601 UTC")
    image_sha256: str
    source_image: str = Field(description="The archived image this is a copy of")
    result_id: str
    line: str
    station: str
    captured_at: str
    part_id: Optional[str] = None
    bundle_name: str
    bundle_version: str
    bundle_sha256: str = Field(description="First 12 hex digits of the model's SHA-256")
    model_verdict: Verdict
    model_top_class: str
    defect_score: float
    threshold: float


@dataclass(frozen=True)
class LabelRecord:
    """The two files one label created, with their digests: what undo removes, and only if unchanged."""

    image: Path
    sidecar: Path
    image_sha256: str
    sidecar_sha256: str
    provenance: Provenance


@dataclass(frozen=True)
class Gains:
    """Images per class in DATA and how many of them are new since the last training."""

    total: Dict[str, int]
    gained: Dict[str, int]
    basis: str


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class LabelStore:
    """The dataset folder as the review page sees it. Thread-safe: the server may run handlers in threads."""

    def __init__(self, data: Path, good_class: str, run: Optional[Path] = None):
        self.data = Path(data)
        self.good_class = good_class
        self.run = run
        self._lock = threading.Lock()
        self._digests: Dict[Tuple[Path, int, int], str] = {}
        self._trained: Optional[Set[Tuple[str, str]]] = None
        self._run_labels: List[str] = []
        if run is not None:
            split = SplitManifest.load(RunFolder(run).split)
            self._trained = {(s.label, s.sha256) for samples in split.splits.values() for s in samples}
            self._run_labels = list(split.classes)

    # classes -----------------------------------------------------------------------------------------

    def classes(self) -> List[str]:
        """The good class first, then every class folder in DATA and every class the last run trained on."""
        found = set(self._run_labels)
        if self.data.is_dir():
            found |= {p.name for p in self.data.iterdir() if p.is_dir() and not p.name.startswith(".")}
        found.discard(self.good_class)
        return [self.good_class, *sorted(found)]

    def add_class(self, name: str) -> Path:
        """Create ``DATA/<name>/`` (a folder name the trainer reads as a class)."""
        name = name.strip()
        if not CLASS_NAME.match(name):
            raise LabelError(
                f"'{name}' is not a usable class name: letters, digits, '_', '-' and '.', starting with a "
                "letter or digit, at most 64 characters"
            )
        with self._lock:
            if name in self.classes():
                raise LabelError(f"class '{name}' exists already")
            folder = self.data / name
            folder.mkdir(parents=True)
            return folder

    # labels ------------------------------------------------------------------------------------------

    def label(self, frame: ArchivedFrame, label: str, user: str) -> LabelRecord:
        """Copy ``frame`` into ``DATA/<label>/`` with its provenance; refuses a second label of one result."""
        with self._lock:
            if label not in self.classes():
                raise LabelError(f"unknown class '{label}': add it first")
            already = self.labels().get(frame.result.id)
            if already is not None:
                raise LabelError(
                    f"{frame.image.name} is already labeled '{already.provenance.label}' "
                    f"({already.image.relative_to(self.data)}): undo that first"
                )
            try:
                data = frame.image.read_bytes()
            except OSError as exc:  # the archive's disk budget may delete it while the page shows it
                raise LabelError(f"cannot read {frame.image}: {exc.strerror or exc}") from None
            r = frame.result
            provenance = Provenance(
                label=label,
                labeled_by=user,
                labeled_at=_now(),
                image_sha256=sha256_bytes(data),
                source_image=str(frame.image),
                result_id=r.id,
                line=r.line,
                station=r.station,
                captured_at=r.captured_at,
                part_id=r.part_id,
                bundle_name=r.model.name,
                bundle_version=r.model.version,
                bundle_sha256=r.model.sha256,
                model_verdict=r.verdict,
                model_top_class=r.top_class,
                defect_score=r.defect_score,
                threshold=r.threshold,
            )
            side_bytes = (provenance.model_dump_json(by_alias=True, indent=1) + "\n").encode()
            folder = self.data / label
            folder.mkdir(parents=True, exist_ok=True)
            image, sidecar = self._create_pair(folder, frame.image.name, data, side_bytes)
            return LabelRecord(image, sidecar, provenance.image_sha256, sha256_bytes(side_bytes), provenance)

    @staticmethod
    def _create_pair(folder: Path, name: str, data: bytes, side_bytes: bytes) -> Tuple[Path, Path]:
        stem, suffix = Path(name).stem, Path(name).suffix
        for n in range(1, _MAX_NAME_TRIES):
            image = folder / (name if n == 1 else f"{stem}-{n}{suffix}")
            sidecar = image.with_name(image.name + SIDECAR_SUFFIX)
            if image.exists() or sidecar.exists():
                continue
            try:
                atomic_create_bytes(image, data)
            except FileExistsError:
                continue  # someone took the name since the check: next one
            try:
                atomic_create_bytes(sidecar, side_bytes)
            except FileExistsError:
                image.unlink()  # ours, just created: take the next name for both
                continue
            return image, sidecar
        raise LabelError(f"{folder}: no free name for {name}")

    def labels(self) -> Dict[str, LabelRecord]:
        """Every label made by this page in DATA, by station result id (a sidecar without its image is ignored)."""
        found: Dict[str, LabelRecord] = {}
        if not self.data.is_dir():
            return found
        for sidecar in sorted(self.data.glob(f"*/*{SIDECAR_SUFFIX}")):
            image = sidecar.with_name(sidecar.name[: -len(SIDECAR_SUFFIX)])
            if not image.is_file():
                continue
            try:
                raw = sidecar.read_bytes()
                provenance = Provenance.model_validate_json(raw)
            except (OSError, ValidationError):
                continue
            found[provenance.result_id] = LabelRecord(
                image, sidecar, provenance.image_sha256, sha256_bytes(raw), provenance
            )
        return found

    def undo(self, record: LabelRecord) -> None:
        """Remove the image and sidecar ``record`` created, only if both are still what the label wrote."""
        with self._lock:
            for path, digest in ((record.image, record.image_sha256), (record.sidecar, record.sidecar_sha256)):
                if not path.is_file():
                    raise LabelError(f"cannot undo: {path} is gone (moved or deleted since)")
                if sha256_file(path) != digest:
                    raise LabelError(f"cannot undo: {path} changed since it was labeled; nothing removed")
            record.image.unlink()
            record.sidecar.unlink()

    # gains -------------------------------------------------------------------------------------------

    def _digest(self, path: Path) -> str:
        st = path.stat()
        key = (path, st.st_mtime_ns, st.st_size)
        digest = self._digests.get(key)
        if digest is None:
            digest = self._digests[key] = sha256_file(path)
        return digest

    def gains(self) -> Gains:
        """Per class: images in DATA, and the ones new since the last training.

        With a run, new means not in its split manifest (by class and content hash: what it trained and was
        tested on). Without one, the labels this page made (their provenance sidecars) are the gain.
        """
        total: Counter[str] = Counter()
        gained: Counter[str] = Counter()
        for cls in self.classes():
            folder = self.data / cls
            if not folder.is_dir():
                continue
            for path in folder.rglob("*"):
                if path.name.startswith(".") or not path.is_file() or not is_image_name(path):
                    continue
                total[cls] += 1
                if self._trained is not None and (cls, self._digest(path)) not in self._trained:
                    gained[cls] += 1
        if self._trained is None:
            gained = Counter(r.provenance.label for r in self.labels().values())
            basis = "labels made here (no --run given)"
        else:
            basis = f"images not in {RunFolder(self.run or Path()).split}"
        classes = self.classes()
        return Gains({c: total[c] for c in classes}, {c: gained[c] for c in classes}, basis)
