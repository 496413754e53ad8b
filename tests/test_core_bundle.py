"""The bundle format: round trip, and every way a file on a device can be broken."""

import json
import zipfile

import pytest

from inspector import __version__
from inspector.bundle import SCHEMA_VERSION, Bundle, BundleError, Manifest, TensorSpec
from inspector.decision import DecisionPolicy
from inspector.preprocess import PreprocessSpec

MODEL = b"TFL3" + bytes(range(256)) * 8


def make_bundle() -> Bundle:
    manifest = Manifest(
        name="tiles",
        version="2026.11.22-1",
        labels=["crack", "good", "spot"],
        good_class="good",
        precision="int8",
        preprocess=PreprocessSpec(width=64, height=64),
        input=TensorSpec(dtype="uint8", shape=[1, 64, 64, 3], scale=1.0, zero_point=0),
        output=TensorSpec(dtype="uint8", shape=[1, 3], scale=1 / 256, zero_point=0),
        decision=DecisionPolicy(threshold=0.3, review_low=0.2, review_high=0.4),
        metrics={"val_accuracy": 0.93},
    )
    return Bundle.create(manifest, MODEL)


@pytest.mark.parametrize("as_dir", [False, True])
def test_round_trip(tmp_path, as_dir):
    target = tmp_path / ("b" if as_dir else "m.inspector")
    if as_dir:
        target.mkdir()
    make_bundle().save(target)
    loaded = Bundle.load(target)
    assert loaded.model == MODEL
    assert loaded.manifest == make_bundle().manifest.model_copy(update={"provenance": loaded.manifest.provenance})
    assert loaded.manifest.good_index == 1
    assert "review 0.200-0.400" in loaded.summary()


def _rewrite(path, manifest=None, model=None):
    with zipfile.ZipFile(path) as zf:
        m, data = zf.read("manifest.json"), zf.read("model.tflite")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.json", manifest if manifest is not None else m)
        zf.writestr("model.tflite", model if model is not None else data)


def test_tampered_model_is_rejected(tmp_path):
    path = make_bundle().save(tmp_path / "m.inspector")
    _rewrite(path, model=MODEL[:-1] + b"\x00")
    with pytest.raises(BundleError, match="checksum mismatch"):
        Bundle.load(path)


def test_invalid_manifest_value_is_named(tmp_path):
    # The checksum protects the model; the manifest is validated key by key.
    path = make_bundle().save(tmp_path / "m.inspector")
    raw = json.loads(zipfile.ZipFile(path).read("manifest.json"))
    raw["decision"]["threshold"] = 7
    _rewrite(path, manifest=json.dumps(raw))
    with pytest.raises(BundleError, match="decision.threshold"):
        Bundle.load(path)


def test_truncated_and_garbage_files(tmp_path):
    path = make_bundle().save(tmp_path / "m.inspector")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="corrupt or truncated"):
        Bundle.load(path)
    path.write_bytes(b"")
    with pytest.raises(BundleError):
        Bundle.load(path)
    with pytest.raises(BundleError, match="cannot read"):
        Bundle.load(tmp_path / "missing.inspector")


def test_unknown_schema_and_missing_files(tmp_path):
    path = make_bundle().save(tmp_path / "m.inspector")
    raw = json.loads(zipfile.ZipFile(path).read("manifest.json"))
    raw["schema_version"] = 99
    _rewrite(path, manifest=json.dumps(raw))
    with pytest.raises(BundleError, match="schema version 99"):
        Bundle.load(path)
    with zipfile.ZipFile(tmp_path / "half.inspector", "w") as zf:
        zf.writestr("manifest.json", "{}")
    with pytest.raises(BundleError, match="missing model.tflite"):
        Bundle.load(tmp_path / "half.inspector")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"colour_map": {"dtype": "uint8"}}, "manifest key 'colour_map'"),
        ({"inference": {"tta": "hflip", "rotate": 90}}, "manifest key 'inference.rotate'"),
        ({"schema_version": SCHEMA_VERSION + 1}, f"bundle schema version {SCHEMA_VERSION + 1} is newer"),
    ],
    ids=["top-level-key", "nested-key", "schema"],
)
def test_bundle_of_a_newer_version_names_what_it_does_not_know_and_the_version_it_needs(tmp_path, change, named):
    """Forward compatibility: a bundle written by a newer inspector (an optional key this version lacks, or
    a newer schema) is refused with one sentence naming the key and the version that wrote it."""
    path = make_bundle().save(tmp_path / "m.inspector")
    raw = json.loads(zipfile.ZipFile(path).read("manifest.json"))
    raw["provenance"]["tool_version"] = "9.4.0"
    _rewrite(path, manifest=json.dumps({**raw, **change}))
    with pytest.raises(BundleError) as err:
        Bundle.load(path)
    message = str(err.value)
    assert named in message and "update the station to inspector 9.4.0 or newer" in message
    assert f"inspector {__version__}" in message and "\n" not in message  # one line, not a validation dump
    raw["provenance"]["tool_version"] = __version__  # this version wrote it: edited by hand, not newer
    _rewrite(path, manifest=json.dumps({**raw, **change}))
    with pytest.raises(BundleError, match="edited or is corrupt"):
        Bundle.load(path)


def test_manifest_rejects_unknown_good_class():
    with pytest.raises(ValueError, match="good_class"):
        make_bundle().manifest.model_validate({**make_bundle().manifest.model_dump(), "good_class": "ok"})
