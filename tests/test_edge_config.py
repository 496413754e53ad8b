"""Station configuration: the example file, source plugins by type, command-line overrides, errors."""

from pathlib import Path

import pytest
import yaml

from edge.config import FolderSource, StationConfig, StreamSource, UsbSource, load_station_config, source_from_text
from inspector.config import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "deploy" / "station.example.yaml"


def test_example_config_is_valid_and_documents_every_section(monkeypatch):
    monkeypatch.setenv("CAMERA_PASSWORD", "pw")
    cfg = load_station_config(EXAMPLE)
    assert isinstance(cfg.source, StreamSource) and cfg.source.url.startswith("rtsp://admin:pw@")
    raw = yaml.safe_load(EXAMPLE.read_text())
    documented = set(raw) | {"decision"}  # decision is shown commented out: it overrides the bundle
    assert documented == set(StationConfig.model_fields)


def test_every_field_has_a_description():
    from edge import config as C

    models = [
        m
        for m in vars(C).values()
        if isinstance(m, type) and issubclass(m, C.StrictModel) and m.__module__ == C.__name__
    ]
    missing = [
        f"{m.__name__}.{name}"
        for m in models
        for name, field in m.model_fields.items()
        if not field.description
        and not (isinstance(field.annotation, type) and issubclass(field.annotation, C.StrictModel))
        and name != "type"
    ]
    assert missing == []


def test_overrides_reach_any_key_and_source_replaces_the_section(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMERA_PASSWORD", "pw")
    (tmp_path / "imgs").mkdir()
    cfg = load_station_config(
        EXAMPLE,
        {
            "mqtt.port": 1884,
            "source": source_from_text(str(tmp_path / "imgs")),
            "source.loop": True,
            "mode.type": "continuous",
        },
    )
    assert cfg.mqtt.port == 1884 and cfg.mode.type == "continuous"
    assert isinstance(cfg.source, FolderSource) and cfg.source.loop and cfg.source.path == tmp_path / "imgs"


def test_config_from_the_command_line_alone():
    cfg = load_station_config(None, {"bundle": "m.inspector", "source": source_from_text("0")})
    assert isinstance(cfg.source, UsbSource) and cfg.source.index == 0
    assert cfg.client_id == f"inspector-line1-{cfg.station}"
    assert cfg.allowed_models_dir == Path(".").resolve()


def _station(**extra):
    return StationConfig.model_validate(
        {"bundle": "m.inspector", "source": {"type": "usb"}, "station": "cam1", **extra}
    )


def test_station_files_go_to_the_systemd_state_directory(monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/inspector/cam1:/var/lib/other")
    cfg = _station()
    assert cfg.state_dir == Path("/var/lib/inspector/cam1")
    assert cfg.outbox.path == Path("/var/lib/inspector/cam1/outbox.sqlite")
    assert (cfg.archive.path, cfg.archive.snapshot_dir) == (
        Path("/var/lib/inspector/cam1/archive"),
        Path("/var/lib/inspector/cam1/snapshots"),
    )


def test_station_files_default_to_the_xdg_state_home_per_line_and_station(tmp_path, monkeypatch):
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert _station(line="l2").outbox.path == tmp_path / "xdg" / "inspector" / "l2" / "cam1" / "outbox.sqlite"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert (
        _station().archive.path == tmp_path / "home" / ".local" / "state" / "inspector" / "line1" / "cam1" / "archive"
    )


def test_state_dir_key_holds_relative_paths_and_absolute_ones_stay(tmp_path, monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", "/not/used")
    cfg = _station(
        state_dir=str(tmp_path / "s"),
        outbox={"path": "q/outbox.sqlite"},
        archive={"path": str(tmp_path / "big-disk" / "archive")},
    )
    assert cfg.outbox.path == tmp_path / "s" / "q" / "outbox.sqlite"
    assert cfg.archive.path == tmp_path / "big-disk" / "archive"
    assert cfg.archive.snapshot_dir == tmp_path / "s" / "snapshots"
    again = StationConfig.model_validate(cfg.model_dump(mode="json"))  # --print-config output loads the same
    assert (again.outbox.path, again.archive.path) == (cfg.outbox.path, cfg.archive.path)


def test_outbox_flag_is_relative_to_the_current_folder(tmp_path, monkeypatch):
    import argparse

    from edge import cli

    monkeypatch.chdir(tmp_path)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--bundle", "m.inspector", "--source", "0", "--outbox", "here.sqlite"])
    assert load_station_config(None, cli._overrides(args)).outbox.path == tmp_path / "here.sqlite"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2", {"type": "usb", "index": 2}),
        ("/dev/video1", {"type": "usb", "index": "/dev/video1"}),
        ("rtsp://cam/1", {"type": "stream", "url": "rtsp://cam/1"}),
        ("videotestsrc ! appsink", {"type": "gstreamer", "pipeline": "videotestsrc ! appsink"}),
        ("clip.mp4", {"type": "video", "path": "clip.mp4"}),
    ],
)
def test_quick_source_values(text, expected):
    assert source_from_text(text) == expected


@pytest.mark.parametrize(
    "data, message",
    [
        ({"source": {"type": "folder", "path": "x"}}, "missing required key 'bundle'"),
        (
            {"bundle": "b", "source": {"type": "folder", "path": "x", "url": "rtsp://x"}},
            "unknown key 'source.folder.url'",
        ),
        ({"bundle": "b", "source": {"type": "webcam"}}, "source"),
        ({"bundle": "b", "source": {"type": "folder", "path": "x"}, "mqtt": {"prot": 1}}, "unknown key 'mqtt.prot'"),
        ({"bundle": "b", "source": {"type": "folder", "path": "x"}, "station": "a/b"}, "cannot contain"),
        ({"bundle": "b", "source": {"type": "gstreamer"}}, "exactly one of 'pipeline' or 'preset'"),
        (
            {
                "bundle": "b",
                "source": {"type": "folder", "path": "x"},
                "mqtt": {"password_env": "A", "password_file": "f"},
            },
            "only one of password_env or password_file",
        ),
    ],
)
def test_mistakes_are_errors_that_name_the_key(tmp_path, data, message):
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_station_config(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_password_comes_from_environment_or_file_never_the_config(tmp_path, monkeypatch):
    base = {"bundle": "b", "source": {"type": "folder", "path": "x"}}
    monkeypatch.setenv("STATION_PW", "s3cret")
    cfg = StationConfig.model_validate({**base, "mqtt": {"username": "cam1", "password_env": "STATION_PW"}})
    assert cfg.mqtt.password() == "s3cret"
    (tmp_path / "pw").write_text("fromfile\n")
    cfg = StationConfig.model_validate({**base, "mqtt": {"password_file": str(tmp_path / "pw")}})
    assert cfg.mqtt.password() == "fromfile"
    monkeypatch.delenv("STATION_PW")
    cfg = StationConfig.model_validate({**base, "mqtt": {"password_env": "STATION_PW"}})
    with pytest.raises(ConfigError, match="STATION_PW is not set"):
        cfg.mqtt.password()
    assert "password" not in StationConfig.model_fields["mqtt"].annotation.model_fields
