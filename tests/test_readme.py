"""The README's commands cannot rot: each `inspector ...` line parses with the real parser, the cheap ones run."""

import re
import shlex
from pathlib import Path

import pytest

from app.cli import build_parser, main

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands():
    text = README.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    commands = []
    for block in blocks:
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("inspector "):
                commands.append(line)
    return commands


def test_readme_has_the_two_setup_commands():
    text = README.read_text()
    assert "make demo" in text and "make test" in text


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_parses(command):
    parser = build_parser()
    try:
        parser.parse_args(shlex.split(command)[1:])
    except SystemExit as exc:  # argparse reports the bad option on stderr and exits 2
        pytest.fail(f"README command does not parse: {command} (exit {exc.code})")


def test_readme_dataset_command_runs(tmp_path, capsys):
    """The first step of 'training on your own folders', on a small synthetic folder named like the README's."""
    data = tmp_path / "data"
    assert main(["synth", str(data), "--per-class", "4", "--size", "32"]) == 0
    (data / "good").rename(data / "ok")
    command = next(c for c in readme_commands() if c.startswith("inspector dataset"))
    argv = [
        a.replace("runs/split.json", str(tmp_path / "split.json")) if a != "data" else str(data)
        for a in shlex.split(command)[1:]
    ]
    assert main(argv) == 0
    assert (tmp_path / "split.json").exists()


def help_examples():
    """Every ``inspector ...`` example line in the subcommands' --help texts (comments and redirects cut)."""
    import argparse

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    examples = []
    for cmd in sub.choices.values():
        for line in (cmd.description or "").splitlines():
            line = line.strip()
            if line.startswith("inspector "):
                examples.append(line.split("  #")[0].split(" > ")[0].rstrip(" \\"))
    return examples


def test_every_subcommand_help_has_examples_that_parse():
    examples = help_examples()
    assert any(e.startswith("inspector predict") for e in examples)
    parser = build_parser()
    for example in examples:
        try:
            parser.parse_args(shlex.split(example)[1:])
        except SystemExit as exc:
            pytest.fail(f"--help example does not parse: {example} (exit {exc.code})")
    assert not [e for e in examples if "../shared" in e], "examples must use paths a user has (e.g. demo-out/)"


def test_readme_bundle_and_predict_commands_run(int8_bundle, synth_root, tmp_path, capsys, monkeypatch):
    """The README's `bundle inspect` and `predict` lines, on a real bundle in place of models/r1.inspector."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "r1.inspector").symlink_to(int8_bundle)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ok").symlink_to(synth_root / "good")
    for prefix in ("inspector bundle inspect", "inspector predict"):
        command = next(c for c in readme_commands() if c.startswith(prefix))
        assert main(shlex.split(command)[1:]) == 0, command
    assert "; 0 skipped" in capsys.readouterr().out
    assert len(list((tmp_path / "predictions").glob("*.png"))) == len(list((synth_root / "good").iterdir()))
    assert (tmp_path / "predictions.csv").is_file()
