"""docs/deployment.md: the files, commands and config keys it tells a technician to use exist; the README's topic
table names fields of the payload models."""

import re
from pathlib import Path

from app.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "docs" / "deployment.md").read_text()


def test_links_to_the_topic_reference_written_with_the_edge():
    assert "](edge.md)" in TEXT


def test_every_repository_path_it_names_exists():
    paths = set(re.findall(r"`((?:deploy|docs|controller|inspector|edge)/[\w./@-]+)`", TEXT))
    assert "deploy/install.sh" in paths
    for path in paths:
        if path in ("deploy/station.example.yaml",) and not (ROOT / path).exists():
            continue  # written by the station side; the guide points to it
        assert (ROOT / path).exists(), path


def test_every_inspector_subcommand_it_uses_is_registered():
    registered = {name for name, _, _ in COMMANDS}
    used = set(re.findall(r"(?<![\w./-])inspector ([a-z]+)", TEXT))
    assert {"run", "controller", "monitor", "calibrate"} <= used
    assert used <= registered, used - registered


def test_every_station_command_it_shows_is_valid():
    from inspector.protocol.commands import CommandChannel, CommandError, parse_command

    commands = re.findall(r'`(\{"cmd": [^`]+\})`', TEXT)
    assert len(commands) >= 4
    for command in commands:
        if "..." in command or "<" in command:
            continue  # a pattern, not a literal
        valid_on = []
        for channel in CommandChannel:  # operational on cmd, engineering on engineering
            try:
                parse_command(command, channel)
                valid_on.append(channel)
            except CommandError:
                pass
        assert len(valid_on) == 1, command


def test_readme_topic_table_names_only_fields_of_the_payload_models():
    """The README's MQTT topic table is what integrators read first: every field it names must exist."""
    from inspector.protocol.payloads import ControllerState, Decision, Result, Stats, Where

    models = {"result": (Result, Where), "stats": (Stats,), "state": (ControllerState,), "decision": (Decision,)}
    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `inspector/<line>/[^/]+/(\w+)` \| \d \| \w+ \| (.*) \|$", readme, re.MULTILINE)
    assert {leaf for leaf, _ in rows} >= set(models)
    for leaf, payload in rows:
        if leaf not in models:
            continue
        fields = {f.alias or n for model in models[leaf] for n, f in model.model_fields.items()}
        named = set(re.findall(r"`(\w+)`", payload))
        assert named and named <= fields, (leaf, named - fields)
