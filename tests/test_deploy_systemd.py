"""The systemd units: `systemd-analyze verify` (with ExecStart pointed at this checkout's console script,
since /opt/inspector does not exist here) and the settings the product relies on."""

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[1] / "deploy" / "systemd"
INSTALLED = "/opt/inspector/venv/bin/inspector"
SERVICES = sorted(UNITS.glob("*.service"))


def _parse(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read(path)
    return parser


def test_every_unit_runs_the_installed_console_script_as_the_dedicated_user():
    assert {p.name for p in SERVICES} >= {"inspector-station@.service", "inspector-controller.service"}
    for path in SERVICES:
        service = _parse(path)["Service"]
        assert service["ExecStart"].startswith(INSTALLED + " "), path.name
        assert (service["User"], service["Type"], service["Restart"]) == ("inspector", "notify", "always")
        assert int(service["WatchdogSec"]) > 0, path.name
    station = _parse(UNITS / "inspector-station@.service")["Service"]
    assert station["StateDirectory"] == "inspector/%i"
    assert station["WorkingDirectory"] == "/var/lib/inspector/%i"
    assert "--config /etc/inspector/%i.yaml" in station["ExecStart"]


def _doc_exit_codes_not_to_restart() -> set:
    """Exit codes whose row in docs/edge.md's exit-code table says the service manager must not restart."""
    doc = (UNITS.parents[1] / "docs" / "edge.md").read_text()
    rows = [line.split("|") for line in doc.splitlines() if line.startswith("| ") and "|" in line[2:]]
    return {int(r[1]) for r in rows if r[1].strip().isdigit() and r[3].strip().startswith("do not restart")}


def test_station_does_not_restart_on_exit_codes_a_restart_cannot_fix():
    from inspector.exitcodes import ExitCode

    station = _parse(UNITS / "inspector-station@.service")["Service"]
    prevented = {int(code) for code in station["RestartPreventExitStatus"].split()}
    assert prevented == _doc_exit_codes_not_to_restart() == {ExitCode.CONFIG, ExitCode.MODEL, ExitCode.REFUSED}


@pytest.mark.parametrize("unit", ["inspector-controller.service", "inspector-sparkplug.service"])
def test_controller_units_do_not_restart_on_a_configuration_error(unit, tmp_path, capsys):
    """The unit's own command, run on a config with a misspelled key, exits with the code the unit does not
    restart on: CONFIG, the station's code for the same thing (one enum). Anything else restarts."""
    from app.cli import main
    from inspector.exitcodes import ExitCode

    service = _parse(UNITS / unit)["Service"]
    prevented = {int(code) for code in service["RestartPreventExitStatus"].split()}
    assert prevented == {ExitCode.CONFIG}
    config = tmp_path / "line.yaml"
    config.write_text("line: line1\nresult_deadline: 2\n")  # result_deadline_s misspelled
    argv = service["ExecStart"].replace("/etc/inspector/line.yaml", str(config)).split()
    assert argv[0] == INSTALLED and str(config) in argv
    assert main(argv[1:]) in prevented
    assert "unknown key 'result_deadline'" in capsys.readouterr().err


def test_station_state_directory_is_its_default_state_dir():
    from edge.config import default_state_dir

    station = _parse(UNITS / "inspector-station@.service")["Service"]
    env = {"STATE_DIRECTORY": "/var/lib/" + station["StateDirectory"].replace("%i", "cam1")}  # what systemd sets
    assert default_state_dir("line1", "cam1", env) == Path("/var/lib/inspector/cam1")


@pytest.mark.parametrize("unit", ["inspector-controller.service", "inspector-sparkplug.service"])
def test_units_that_run_the_sparkplug_bridge_keep_its_bd_seq_in_their_state_directory(unit, monkeypatch):
    """ProtectSystem=strict leaves only the state directory writable: the bridge's default state file is in it."""
    from controller.sparkplug import default_state_file

    service = _parse(UNITS / unit)["Service"]
    assert service["ProtectSystem"] == "strict"
    state = Path("/var/lib") / service["StateDirectory"]
    monkeypatch.setenv("STATE_DIRECTORY", str(state))  # what systemd sets
    assert default_state_file("line1", "inspection", "line1").parent == state


@pytest.mark.parametrize("unit", [p.name for p in SERVICES])
def test_systemd_analyze_verify(unit, tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not available")
    console_script = Path(sys.executable).with_name("inspector")
    if not console_script.exists():
        pytest.skip("the inspector console script is not installed in this environment")
    name = unit.replace("@.", "@cam1.")  # a template is verified through an instance
    (tmp_path / name).write_text((UNITS / unit).read_text().replace(INSTALLED, str(console_script)))
    out = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / name)], capture_output=True, text=True, timeout=120
    )
    problems = [line for line in (out.stdout + out.stderr).splitlines() if name in line or "Unknown" in line]
    assert out.returncode == 0 and problems == [], out.stdout + out.stderr


def test_sysusers_creates_a_login_less_user():
    lines = [
        line.split()
        for line in (UNITS / "inspector.sysusers").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    user = next(line for line in lines if line[0] == "u")
    assert user[1] == "inspector" and user[-1] == "/usr/sbin/nologin"
