"""Command validation: every malformed command is refused with a reason, valid ones parse to typed objects."""

import pytest

from inspector.protocol.commands import (
    CommandChannel,
    CommandError,
    ReloadCommand,
    SetThresholdCommand,
    TriggerCommand,
    parse_command,
    resolve_bundle_path,
)


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"trigger"', "must be a JSON object"),
        (b"{}", "unknown command None"),
        (b'{"cmd": "selfdestruct"}', "unknown command 'selfdestruct'"),
        (b'{"cmd": "trigger", "part_id": 42}', "part_id: Input should be a valid string"),
        (b'{"cmd": "trigger", "part_id": ""}', "part_id"),
        (b'{"cmd": "pause", "now": true}', "now: unknown field"),
        (b'{"cmd": "set_threshold"}', "threshold: Field required"),
        (b'{"cmd": "set_threshold", "threshold": "0.4"}', "threshold: Input should be a valid number"),
        (b'{"cmd": "set_threshold", "threshold": true}', "threshold"),
        (b'{"cmd": "set_threshold", "threshold": 1.5}', "less than or equal to 1"),
        (b'{"cmd": "reload"}', "bundle: Field required"),
        (b'{"cmd": "reload", "bundle": "a.inspector", "sha256": "abc"}', "sha256"),
        (b'{"cmd": "snapshot", "request_id": 7}', "request_id"),
        (b'{"cmd": "pause", "x": "' + b"a" * 20000 + b'"}', "larger than"),
    ],
)
def test_malformed_commands_are_refused_with_a_reason(payload, reason):
    with pytest.raises(CommandError) as info:
        parse_command(payload)
    assert reason in str(info.value)


def test_valid_commands_parse_to_their_types():
    assert parse_command('{"cmd": "trigger", "part_id": "A-7", "request_id": "r1"}') == TriggerCommand(
        cmd="trigger", part_id="A-7", request_id="r1"
    )
    assert parse_command(b'{"cmd": "trigger"}').part_id is None
    cmd = parse_command(
        b'{"cmd": "set_threshold", "threshold": 1, "review_low": 0.5, "review_high": 1.0}', CommandChannel.ENGINEERING
    )
    assert isinstance(cmd, SetThresholdCommand) and cmd.threshold == 1.0
    digest = "ab" * 32
    assert parse_command(
        f'{{"cmd": "reload", "bundle": "v2.inspector", "sha256": "{digest}"}}', CommandChannel.ENGINEERING
    ) == ReloadCommand(cmd="reload", bundle="v2.inspector", sha256=digest)
    assert {parse_command(f'{{"cmd": "{name}"}}').cmd for name in ("pause", "resume", "snapshot")} == {
        "pause",
        "resume",
        "snapshot",
    }


def test_reload_paths_must_stay_inside_the_models_directory(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "v2.inspector").write_bytes(b"x")
    (tmp_path / "outside.inspector").write_bytes(b"x")
    (models / "link.inspector").symlink_to(tmp_path / "outside.inspector")
    assert resolve_bundle_path("v2.inspector", models) == (models / "v2.inspector").resolve()
    assert resolve_bundle_path(str(models / "v2.inspector"), models) == (models / "v2.inspector").resolve()
    for bad in ("../outside.inspector", str(tmp_path / "outside.inspector"), "link.inspector", "/etc/passwd"):
        with pytest.raises(CommandError, match="outside the models directory"):
            resolve_bundle_path(bad, models)
    with pytest.raises(CommandError, match="does not exist"):
        resolve_bundle_path("v3.inspector", models)
