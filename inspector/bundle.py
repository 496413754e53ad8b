"""The model bundle: one file that tells a device everything about a model.

A bundle is a zip file (``*.inspector``) or a directory holding ``model.tflite`` and ``manifest.json``.
The manifest carries the labels in output order, the good class, the preprocessing, the tensors'
quantization, the pass/fail policy, metrics and provenance, and the SHA-256 of the model, which is checked
on every load so that a corrupt copy or an edited file never runs on a line.

Example:
    >>> bundle = Bundle.load("model.inspector")                  # doctest: +SKIP
    >>> bundle.manifest.labels, bundle.manifest.decision.threshold  # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Optional

from pydantic import Field, ValidationError, model_validator

from inspector import __version__
from inspector.camera import CameraReference
from inspector.config import StrictModel, format_validation_error
from inspector.decision import DecisionPolicy
from inspector.fsutil import atomic_path, sha256_bytes
from inspector.plausibility import PlausibilityReference
from inspector.preprocess import PreprocessSpec

SCHEMA_VERSION = 2
MANIFEST_NAME = "manifest.json"
MODEL_NAME = "model.tflite"
BUNDLE_SUFFIX = ".inspector"


class BundleError(ValueError):
    """A bundle that cannot be used: corrupt, truncated, tampered or of an unknown schema."""


class Precision(str, Enum):
    INT8 = "int8"
    FLOAT16 = "float16"
    FLOAT32 = "float32"


class TensorSpec(StrictModel):
    """A model input or output tensor; scale/zero_point are 0 for float tensors."""

    dtype: str = Field(description="numpy dtype name: uint8, int8 or float32")
    shape: List[int] = Field(description="Tensor shape, batch first")
    scale: float = Field(0.0, description="Quantization scale (real = scale * (q - zero_point))")
    zero_point: int = Field(0, description="Quantization zero point")

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0


class FlipAveraging(str, Enum):
    """Test-time flip averaging: the views whose probabilities are averaged into one decision."""

    NONE = "none"  # the frame as it is
    HFLIP = "hflip"  # and mirrored left-right
    VFLIP = "vflip"  # and mirrored top-bottom
    HVFLIP = "hvflip"  # all four: as is, left-right, top-bottom, both (180 degrees)


class TilingSpec(StrictModel):
    """Tiled inference: the region of interest cut into overlapping tiles of the model's input size."""

    overlap: float = Field(0.25, ge=0.0, le=0.75, description="Fraction of a tile its neighbour overlaps")


class InferenceSpec(StrictModel):
    """How the station turns a frame into probabilities (the decision then applies ``decision``)."""

    tta: FlipAveraging = Field(FlipAveraging.NONE, description="Average the probabilities over flipped views")
    tiling: Optional[TilingSpec] = Field(
        None, description="Score tiles at native resolution, the worst tile decides (None = the whole frame)"
    )

    def describe(self) -> str:
        tiles = f", tiles (overlap {self.tiling.overlap:g})" if self.tiling is not None else ""
        return f"flip averaging {self.tta.value}{tiles}"


class Provenance(StrictModel):
    """Where the model came from, so a result on the line can be traced to its data."""

    dataset_fingerprint: str = Field("", description="SHA-256 over the dataset's paths, labels and bytes")
    split_sha256: str = Field("", description="SHA-256 of the split manifest JSON")
    dataset_root: str = Field("", description="Dataset folder at training time")
    training_run: str = Field("", description="Training run folder")
    tool_version: str = Field(__version__, description="Version of this software that wrote the bundle")
    created: str = Field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"),
        description="UTC time the bundle was written",
    )


class Manifest(StrictModel):
    """``manifest.json`` of a bundle."""

    schema_version: int = Field(SCHEMA_VERSION, description="Bundle schema version")
    name: str = Field(description="Model name, e.g. the product or station it inspects")
    version: str = Field(description="Model version, shown in results and stats")
    labels: List[str] = Field(min_length=2, description="Class names in model output order")
    good_class: str = Field(description="The pass class")
    precision: Precision = Field(description="Weights/activations precision of model.tflite")
    preprocess: PreprocessSpec
    input: TensorSpec
    output: TensorSpec
    class_map: Optional[TensorSpec] = Field(
        None,
        description="Second model output: per-cell class logits (1, cells_y, cells_x, classes) whose spatial "
        "mean is the logits, for where the defect is (None: a model without it)",
    )
    decision: DecisionPolicy = Field(default_factory=DecisionPolicy)
    inference: InferenceSpec = Field(
        default_factory=InferenceSpec, description="Flip averaging and tiling (schema 1: neither)"
    )
    camera: Optional[CameraReference] = Field(None, description="Commissioning reference of the camera")
    plausibility: Optional[PlausibilityReference] = Field(
        None,
        description="What the calibration images look like, for the station's plausibility gate "
        "(absent in bundles written before it existed)",
    )
    metrics: Dict[str, Any] = Field(default_factory=dict, description="Calibration and test metrics")
    provenance: Provenance = Field(default_factory=Provenance)
    model_sha256: str = Field("", description="SHA-256 of model.tflite")
    model_bytes: int = Field(0, ge=0, description="Size of model.tflite")

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if self.good_class not in self.labels:
            raise ValueError(f"good_class '{self.good_class}' is not one of the labels {self.labels}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        return self

    @property
    def good_index(self) -> int:
        return self.labels.index(self.good_class)


def _from_v1(raw: Dict[str, Any]) -> Dict[str, Any]:
    """Schema 1 had no ``inference`` section: the whole frame, one view."""
    return {**raw, "schema_version": 2, "inference": InferenceSpec().model_dump(mode="json")}


# Each entry turns a manifest of that version into the next version; the model bytes never change.
_MIGRATIONS = {1: _from_v1}


def migrate(raw: Dict[str, Any]) -> Dict[str, Any]:
    """A raw manifest of any readable schema version as the current version."""
    while raw.get("schema_version") in _MIGRATIONS:
        raw = _MIGRATIONS[raw["schema_version"]](raw)
    return raw


def _too_new(source: str, raw: Dict[str, Any], what: str) -> BundleError:
    """A bundle this version cannot read because newer software wrote it: ``what`` it does not know, the version
    that wrote the bundle (``provenance.tool_version``) and so the version the station needs."""
    provenance = raw.get("provenance")
    writer = provenance.get("tool_version") if isinstance(provenance, dict) else None
    if writer == __version__:
        hint = "the manifest says this same version wrote it, so it was edited or is corrupt"
    elif writer:
        hint = f"it was written by inspector {writer}: update the station to inspector {writer} or newer"
    else:
        hint = "the manifest does not say which version wrote it: update the station to the version that calibrated it"
    return BundleError(
        f"{source}: {what} (inspector {__version__}, bundle schema {SCHEMA_VERSION}); {hint}, "
        "or calibrate the model again with this version"
    )


class Bundle:
    """A manifest plus the TFLite model bytes, verified against each other."""

    def __init__(self, manifest: Manifest, model: bytes, source: str = "<memory>"):
        self.manifest = manifest
        self.model = model
        self.source = source

    @classmethod
    def create(cls, manifest: Manifest, model: bytes) -> Bundle:
        """Stamp the model's checksum and size into the manifest."""
        manifest = manifest.model_copy(update={"model_sha256": sha256_bytes(model), "model_bytes": len(model)})
        return cls(manifest, model)

    def verify(self) -> None:
        digest = sha256_bytes(self.model)
        if digest != self.manifest.model_sha256:
            raise BundleError(
                f"{self.source}: model.tflite checksum mismatch (manifest {self.manifest.model_sha256[:12]}..., "
                f"file {digest[:12]}...): the bundle is corrupt or was modified"
            )
        if len(self.model) != self.manifest.model_bytes:
            raise BundleError(
                f"{self.source}: model.tflite is {len(self.model)} bytes, manifest says {self.manifest.model_bytes}"
            )

    def manifest_json(self) -> str:
        return json.dumps(self.manifest.model_dump(mode="json"), indent=2)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a zip (any name not ending in ``/``) or, for an existing directory, the two files inside.

        The zip is written to a temporary name and renamed, so a device never loads half a file.
        """
        self.verify()
        path = Path(path)
        if path.is_dir():
            (path / MODEL_NAME).write_bytes(self.model)
            (path / MANIFEST_NAME).write_text(self.manifest_json())
            return path
        with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(MANIFEST_NAME, self.manifest_json())
            zf.writestr(MODEL_NAME, self.model)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Bundle:
        """Read and verify a bundle; every failure is a :class:`BundleError` that says what is wrong."""
        path = Path(path)
        source = str(path)
        if path.is_dir():
            try:
                manifest_text = (path / MANIFEST_NAME).read_text()
                model = (path / MODEL_NAME).read_bytes()
            except OSError as exc:
                raise BundleError(f"{source}: bundle directory is missing {Path(exc.filename).name}") from None
        else:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise BundleError(f"{source}: cannot read bundle: {exc.strerror or exc}") from None
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as zf:
                    names = set(zf.namelist())
                    missing = {MANIFEST_NAME, MODEL_NAME} - names
                    if missing:
                        raise BundleError(f"{source}: bundle is missing {', '.join(sorted(missing))}")
                    manifest_text = zf.read(MANIFEST_NAME).decode("utf-8")
                    model = zf.read(MODEL_NAME)
            except (zipfile.BadZipFile, EOFError, zlib.error, UnicodeDecodeError) as exc:
                raise BundleError(f"{source}: not a valid bundle file (corrupt or truncated zip: {exc})") from None
        try:
            raw = json.loads(manifest_text)
        except ValueError as exc:
            raise BundleError(f"{source}: manifest.json is not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise BundleError(f"{source}: manifest.json must hold an object")
        version = raw.get("schema_version")
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise _too_new(source, raw, f"bundle schema version {version} is newer than this software reads")
        if version not in _MIGRATIONS and version != SCHEMA_VERSION:
            raise BundleError(
                f"{source}: bundle schema version {version!r} is not supported "
                f"(this software reads versions 1 to {SCHEMA_VERSION})"
            )
        raw = migrate(raw)
        try:
            manifest = Manifest.model_validate(raw)
        except ValidationError as exc:
            unknown = [".".join(map(str, e["loc"])) for e in exc.errors() if e["type"] == "extra_forbidden"]
            if unknown:
                what = f"manifest key {', '.join(map(repr, unknown))} unknown to this software"
                raise _too_new(source, raw, what) from None
            raise BundleError(f"invalid manifest:\n{format_validation_error(exc, source)}") from None
        bundle = cls(manifest, model, source)
        bundle.verify()
        return bundle

    def summary(self) -> str:
        m = self.manifest
        d = m.decision
        band = f", review {d.review_low:.3f}-{d.review_high:.3f}" if d.review_low is not None else ""
        lines = [
            f"bundle      {self.source}",
            f"model       {m.name} {m.version} ({m.precision.value}, {m.model_bytes / 1024:.0f} KiB)",
            f"labels      {', '.join(m.labels)} (good: {m.good_class})",
            f"input       {m.input.dtype} {m.input.shape} scale={m.input.scale:g} zp={m.input.zero_point}",
            f"output      {m.output.dtype} {m.output.shape} scale={m.output.scale:g} zp={m.output.zero_point}",
            f"class map   {m.class_map.dtype} {m.class_map.shape} scale={m.class_map.scale:g} zp={m.class_map.zero_point}"
            if m.class_map
            else "class map   none (no where-the-defect-is output)",
            f"preprocess  {m.preprocess.width}x{m.preprocess.height} {m.preprocess.channel_order.value} "
            f"{m.preprocess.interpolation.value} roi={m.preprocess.roi.model_dump() if m.preprocess.roi else None}",
            f"decision    defect score = 1 - p({m.good_class}) >= {d.threshold:.4f} fails{band}",
            f"inference   {m.inference.describe()}",
            f"camera      {'reference set' if m.camera else 'no reference'}",
            f"gate        {f'reference of {m.plausibility.images} images' if m.plausibility else 'no reference'}",
            f"provenance  dataset {m.provenance.dataset_fingerprint[:12] or '-'} split "
            f"{m.provenance.split_sha256[:12] or '-'} tool {m.provenance.tool_version} created {m.provenance.created}",
            f"sha256      {m.model_sha256}",
        ]
        for key, value in m.metrics.items():
            if isinstance(value, (int, float, str)):
                lines.append(f"metric      {key} = {value}")
        return "\n".join(lines)
