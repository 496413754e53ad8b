"""The inspector command: synth and dataset end to end, and errors as messages not tracebacks."""

import json
import subprocess
import sys

from app.cli import main


def test_synth_then_dataset(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["synth", str(data), "--per-class", "6", "--size", "32x24", "--seed", "2"]) == 0
    (data / "good" / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    out = tmp_path / "split.json"
    assert main(["dataset", str(data), "--out", str(out), "--ratios", "0.5,0.25,0.25"]) == 0
    text = capsys.readouterr().out
    assert "good*" in text and "skipped 1 file(s)" in text and "good/broken.jpg" in text
    manifest = json.loads(out.read_text())
    assert sum(len(v) for v in manifest["splits"].values()) == 30


def test_errors_are_one_line_messages(tmp_path, capsys):
    assert main(["dataset", str(tmp_path), "--good-class", "ok"]) == 1
    err = capsys.readouterr().err
    assert "inspector dataset: error:" in err and "Traceback" not in err


def test_help_runs_as_a_program():
    done = subprocess.run([sys.executable, "-m", "app.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "dataset" in done.stdout and "synth" in done.stdout


def test_bundle_inspect_and_verify_a_real_bundle(int8_bundle, capsys):
    assert main(["bundle", "inspect", str(int8_bundle)]) == 0
    assert "int8" in capsys.readouterr().out
    assert main(["bundle", "verify", str(int8_bundle)]) == 0
    out = capsys.readouterr().out
    assert "verified: checksum ok" in out


def test_bundle_verify_rejects_a_tampered_copy(int8_bundle, tmp_path, capsys):
    import zipfile

    bad = tmp_path / "bad.inspector"
    with zipfile.ZipFile(int8_bundle) as src, zipfile.ZipFile(bad, "w") as dst:
        dst.writestr("manifest.json", src.read("manifest.json"))
        model = bytearray(src.read("model.tflite"))
        model[len(model) // 2] ^= 0xFF
        dst.writestr("model.tflite", bytes(model))
    assert main(["bundle", "verify", str(bad)]) == 1
    assert "checksum mismatch" in capsys.readouterr().err


def _options(parser):
    """{subcommand: [(visible option strings, dest)]} of the inspector parser (hidden aliases left out)."""
    import argparse

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {
        name: [
            (tuple(a.option_strings), a.dest)
            for a in cmd._actions
            if a.option_strings and a.help != argparse.SUPPRESS and a.dest != "help"
        ]
        for name, cmd in sub.choices.items()
    }


# One meaning, one spelling: every subcommand that offers these spells them so (issue 12 found
# --split vs --split-file, dataset --seed vs train --split-seed, --broker vs --host/--port, -c on run only).
SAME_MEANING = {
    "--split-file": {"train", "evaluate"},
    "--split-seed": {"train", "dataset"},
    "--broker": {"run", "monitor", "controller"},
    "-c": {"run", "train", "controller", "monitor"},
}


def test_subcommands_spell_each_option_one_way():
    from app.cli import build_parser

    options = _options(build_parser())
    spelling, meaning = {}, {}
    for name, opts in options.items():
        for strings, dest in opts:
            spelling.setdefault(dest, {}).setdefault(strings, []).append(name)
            for s in strings:
                meaning.setdefault(s, {}).setdefault(dest, []).append(name)
    differently = {dest: v for dest, v in spelling.items() if len(v) > 1}
    assert not differently, f"the same option spelled differently: {differently}"
    ambiguous = {s: v for s, v in meaning.items() if len(v) > 1}
    assert not ambiguous, f"one spelling, several meanings: {ambiguous}"
    for option, commands in SAME_MEANING.items():
        lacking = sorted(c for c in commands if not any(option in strings for strings, _ in options[c]))
        assert not lacking, f"{option} is missing on {lacking}"
    assert all(any("-v" in strings for strings, _ in opts) for opts in options.values())


def test_old_spellings_still_work_and_v_goes_anywhere():
    from app.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["train", "d", "--out", "r", "--split", "s.json"]).split_file == "s.json"
    assert parser.parse_args(["dataset", "d", "--seed", "4"]).split_seed == 4
    assert parser.parse_args(["dataset", "d"]).split_seed == 0
    assert parser.parse_args(["monitor", "--host", "h", "--port", "2"]).host == "h"
    assert parser.parse_args(["dataset", "d", "-v"]).verbose and parser.parse_args(["-v", "dataset", "d"]).verbose
    assert not parser.parse_args(["dataset", "d"]).verbose


def test_a_misspelled_option_shows_the_subcommands_usage(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["dataset", "d", "--sede", "1"])
    err = capsys.readouterr().err
    assert "usage: inspector dataset" in err and "unrecognized arguments: --sede 1" in err


def test_bundle_verify_json_prints_only_json(int8_bundle, capsys):
    assert main(["bundle", "verify", str(int8_bundle), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and doc["manifest"]["labels"]


def test_a_closed_pipe_ends_quietly(int8_bundle):
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "bundle", "inspect", "--json", str(int8_bundle)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # like `| head` that has read enough
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 141 and "Broken pipe" not in err and "Traceback" not in err, err
