"""Every command the README and the ``--help`` examples show runs as written, on stand-ins for the demo's outputs.

test_readme.py checks that they parse; here each one is executed through :func:`app.cli.main` (a
subprocess for the long-running ones, stopped once it is up) in a folder laid out like a user's after
``make demo``, and must exit with the code its docs give. Three explicit tables make the stand-ins visible:
PATHS (a path a command names -> the session fixture that plays it), PLAN (per command: what is added
to keep it small, or its expected exit code, or why it is started and stopped) and SKIP (what cannot run
here, with the reason). A documented command in neither PLAN nor SKIP fails
test_every_documented_command_is_run_or_skipped, so the docs cannot drift away from what is tested.
Paths a command writes (--out, --save, --csv) go to a fresh working folder per command; the inputs it
names are linked there from the session's workspace, which no command changes.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
import pytest

from app.cli import main
from tests.fixtures_edge import write_video
from tests.test_readme import help_examples, readme_commands

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

# A tiny 1-epoch recipe (tests/fixtures_model.py small_config) for every `inspector train` a doc shows.
TINY_TRAIN = [
    "--epochs", "1", "--input-size", "64", "--alpha", "0.75", "--batch-size", "16",
    "--set", "model.minimalistic=true", "--set", "optim.steps_per_epoch=2", "--set", "optim.warmup_epochs=0.5",
    "--set", "runtime.run_eagerly=true", "--progress", "lines",
]  # fmt: skip
# The fixture model is near chance by design, so calibrate exits 4 NOT DEPLOYABLE without --force
# (tests/test_calibration_deployability.py tests the refusal); a 32-image representative sample keeps it fast.
SMALL_CALIBRATE = ["--force", "--representative-size", "32", "--min-representative", "0"]
# A warm start trains one stage of warm_start.epochs (15; --epochs does not change it) in the earlier run's
# architecture, so the model options of TINY_TRAIN would conflict.
TINY_WARM_START = [
    "--set", "warm_start.epochs=1", "--set", "optim.steps_per_epoch=2", "--set", "runtime.run_eagerly=true",
    "--progress", "lines",
]  # fmt: skip

# Paths the docs name -> what plays them in the workspace (paths not listed exist there under their own name).
PATHS: Dict[str, str] = {
    "data/tiles": "tiles",  # a labeled folder whose good class is `free`, as the magnetic-tile data
    "line_images/": "demo-out/data",
    "images/": "demo-out/data/good",
    "runs/tiles": "runs/tile",
    "runs/tiles/split.json": "runs/tile/split.json",
    "/var/lib/inspector/archive": "cam1/archive",
    "~/.local/state/inspector/line1/cam1/archive": "cam1/archive",  # the local station's (default state_dir)
    "deploy/station.local.yaml": str(ROOT / "deploy/station.local.yaml"),
    "deploy/line.local.yaml": str(ROOT / "deploy/line.local.yaml"),
}
BROKER_TOKENS = ("localhost", "localhost:1883", "localhost:1884")  # -> the test broker's host:port


@dataclass
class Plan:
    """How one documented command is run here."""

    add: List[str] = field(default_factory=list)  # arguments appended (a smaller run, the test broker)
    broker_first: bool = False  # `--broker` of the test broker, before send's COMMAND (its default is localhost)
    replace: Dict[str, str] = field(default_factory=dict)  # command-specific token replacements
    exit_code: int = 0
    started_then_stopped: bool = False  # long-running: a subprocess, SIGINT once it is up, must exit 0
    ready: str = ""  # with started_then_stopped: text its output shows once it is up
    copy: Tuple[str, ...] = ()  # workspace entries this command writes into (copied, not linked)
    station: Optional[str] = None  # a station (line/name) must be running for this command (send)
    inputs: Tuple[str, ...] = ()  # workspace paths a config file names (linked into the working folder)


REVIEW_PORT = ["--port", "{free_port}"]  # the default 8765 may be taken on a shared machine
BROKER = "{broker}"  # the test broker's host:port (a session Mosquitto on a free port)
PLAN: Dict[str, Plan] = {
    # training on your own folders (README)
    "inspector train data --good-class ok --split-file runs/split.json --out runs/r1 --weights none": Plan(
        add=TINY_TRAIN
    ),
    "inspector calibrate runs/r1 --out models/r1.inspector": Plan(add=SMALL_CALIBRATE),
    "inspector calibrate runs/r1 --out models/r1.inspector --overwrite --reference-image ref.png "
    "--roi 400,120,640,640 --crop-model-input": Plan(add=SMALL_CALIBRATE),
    "inspector train data --out runs/r2 --init-from runs/r1": Plan(add=TINY_WARM_START),
    "inspector calibrate runs/r2 --out demo-out/r2.inspector": Plan(
        add=SMALL_CALIBRATE,
        replace={"runs/r2": "runs/r1"},  # the retrained run: the fixture run plays it
    ),
    # stations, controller, monitor, review (README)
    "inspector run --bundle demo-out/demo.inspector --source demo-out/line.avi --broker localhost -v": Plan(),
    "inspector run --config deploy/station.local.yaml": Plan(
        add=["--broker", BROKER],
        started_then_stopped=True,
        ready="station started",
        inputs=("demo-out/demo.inspector", "demo-out/line.avi"),
    ),
    "inspector controller --config deploy/line.local.yaml": Plan(
        add=["--broker", BROKER], started_then_stopped=True, ready="controller for line"
    ),
    "inspector monitor --broker localhost": Plan(started_then_stopped=True, ready="inspector monitor"),
    "inspector review data --archive ~/.local/state/inspector/line1/cam1/archive --run runs/r1 "
    "--bundle models/r1.inspector": Plan(add=REVIEW_PORT, started_then_stopped=True, ready="http://"),
    "inspector send --broker localhost --line line1 --station cam1 reload r2.inspector": Plan(station="line1/cam1"),
    # --help examples
    "inspector train data/tiles --good-class free --out runs/tile --weights none": Plan(add=TINY_TRAIN),
    "inspector train --out runs/tile --resume": Plan(copy=("runs/tile",)),
    "inspector train data/tiles --out runs/tile2 --init-from runs/tile": Plan(
        add=TINY_WARM_START,
        replace={"data/tiles": "data"},  # runs/tile's stand-in learned `good`, not `free`
    ),
    "inspector calibrate runs/tiles --out tiles.inspector": Plan(add=SMALL_CALIBRATE),
    "inspector calibrate runs/tiles --out tiles.inspector --target-rate 0.5% --review-margin 0.05 --remedy auto": Plan(
        add=SMALL_CALIBRATE
    ),
    "inspector calibrate runs/tiles --out tiles-fp16.inspector --precision float16": Plan(add=SMALL_CALIBRATE),
    "inspector calibrate runs/tiles --out tiles-fast.inspector --tta none": Plan(add=SMALL_CALIBRATE),
    "inspector calibrate runs/tiles --out tiles.inspector --reference-image ref.png --auto-roi": Plan(
        add=SMALL_CALIBRATE
    ),
    "inspector run --config station.yaml": Plan(started_then_stopped=True, ready="station started"),
    "inspector run --config station.yaml --set mqtt.port=1884 --set mode.type=triggered": Plan(
        replace={"mqtt.port=1884": "mqtt.port={port}"}, started_then_stopped=True, ready="station started"
    ),
    "inspector controller --config line.yaml --trigger-rate 2 --count 20 --until-done": Plan(),
    "inspector controller --config line.yaml --set mqtt.port=1884 --duration 60": Plan(
        replace={"mqtt.port=1884": "mqtt.port={port}", "60": "2"}  # the test broker; 2 s, not a minute
    ),
    "inspector monitor --config line.yaml --line line1": Plan(started_then_stopped=True, ready="inspector monitor"),
    "inspector monitor --duration 30 --interval 2": Plan(
        add=["--broker", BROKER],
        replace={"30": "2"},  # the test broker, not localhost:1883; 2 s, not 30
    ),
    "inspector send --broker localhost:1883 --line demo --station cam1 reload tiles-v7.inspector": Plan(
        station="demo/cam1"
    ),
    # Exit 1, refused: the near-chance fixture bundle's calibrated threshold range is one point (about 0.73),
    # and the station refuses a threshold outside it without --override (send's docstring: 1 = refused).
    "inspector send --station cam1 set_threshold 0.42 --review 0.35 0.5": Plan(
        broker_first=True, station="line1/cam1", exit_code=1
    ),
    "inspector send --station cam1 trigger --part-id A-1042": Plan(broker_first=True, station="line1/cam1"),
    "inspector send --station cam1 pause": Plan(broker_first=True, station="line1/cam1"),
    "inspector review data --archive /var/lib/inspector/archive --run runs/r1 --bundle models/r1.inspector": Plan(
        add=REVIEW_PORT, started_then_stopped=True, ready="http://"
    ),
    'inspector review data --archive cam1/archive --archive cam2/archive --host 0.0.0.0 --port 8765 --token "$TOKEN"': Plan(
        replace={"8765": "{free_port}", "$TOKEN": "a-token-of-24-characters"},  # the shell expands $TOKEN
        started_then_stopped=True,
        ready="http://",
    ),
}

PLAN["inspector predict runs/r1 data/good"] = Plan(replace={"runs/r1": "runs/r1-calibrated"})  # a run holding a bundle

SKIP: Dict[str, str] = {
    "inspector train data --out runs/r1 --weights ~/mobilenet_v3_small_no_top.h5 --unfreeze-layers 40": (
        "needs a downloaded ImageNet weights file; this machine has no internet"
    ),
    "inspector predict model.inspector 0 --frames 5": "camera index 0: no camera here",
    "inspector monitor --broker 10.0.0.5": "a broker on another host",
    "inspector demo --quick": "the whole pipeline (minutes); tests/test_demo.py runs it end to end",
    "inspector demo --data data/tiles --good-class free --out demo-tiles": "trains a full-size model (minutes)",
}


def documented_commands() -> List[str]:
    seen: Dict[str, None] = {}
    for command in readme_commands() + help_examples():
        seen.setdefault(command, None)
    return list(seen)


def test_every_documented_command_is_run_or_skipped():
    """A new README line or --help example must be added to PLAN (or SKIP, with the reason) here."""
    commands = documented_commands()
    unplanned = [c for c in commands if c not in PLAN and c not in SKIP]
    assert not unplanned, f"documented commands neither run nor skipped here: {unplanned}"
    stale = sorted((set(PLAN) | set(SKIP)) - set(commands))
    assert not stale, f"PLAN/SKIP entries no doc shows any more: {stale}"
    assert not set(PLAN) & set(SKIP)
    assert all(reason for reason in SKIP.values())


for _command in (
    "inspector dataset data --good-class ok --out runs/split.json",
    "inspector evaluate models/r1.inspector data --split-file runs/split.json --split test",
    "inspector bundle inspect models/r1.inspector",
    "inspector predict models/r1.inspector data/ok --save predictions/ --csv predictions.csv",
    "inspector synth data/synth --per-class 60 --size 128x128 --seed 0",
    "inspector synth data/small --size 320 --defect-scale 0.5 --defect-contrast 0.7",
    "inspector synth data/cast --surface cast",
    "inspector dataset demo-out/data --good-class good --out runs/split.json",
    "inspector bundle inspect model.inspector",
    "inspector bundle verify model.inspector",
    "inspector calibrate --camera-only --reference-image ref.png --roi 120,40,400,400 --station-yaml camera.yaml",
    "inspector evaluate tiles.inspector line_images/",
    "inspector evaluate tiles.inspector data/tiles --split-file runs/tiles/split.json",
    "inspector predict demo-out/demo.inspector demo-out/reference.png",
    "inspector predict demo-out/demo.inspector demo-out/line.avi --frames 20 --save predictions/ --csv predictions.csv",
    "inspector predict demo-out/demo.inspector demo-out/line.avi --frames 5 --json",
    "inspector monitor --broker localhost:1884 --once",
    "inspector run --bundle model.inspector --source 0 --print-config",  # prints the config, opens no camera
    "inspector predict demo-out/demo.inspector demo-out/line.avi --frames 20 --save predictions/ --overlay",
    "inspector run --bundle model.inspector --source images/ --broker localhost:1883 --station cam1",
):
    PLAN.setdefault(_command, Plan())
# The README's own folders call the good class `ok`; the fixture data's is `good`.
for _command, _plan in PLAN.items():
    if " ok " in f"{_command} " or "data/ok" in _command:
        _plan.replace.update({"ok": "good", "data/ok": "data/good"})


def _part_image(size=(1280, 800), box=(400, 120, 640, 640)) -> np.ndarray:
    """A camera-sized reference frame: a textured part inside ``box`` on a dark belt."""
    rng = np.random.default_rng(0)
    image = np.full((size[1], size[0], 3), 30, np.uint8)
    x, y, w, h = box
    image[y : y + h, x : x + w] = 150 + rng.integers(0, 60, (h, w, 1), dtype=np.uint8)
    return image


def _bundle_copy(src: Path, dest: Path, version: str) -> Path:
    from inspector.bundle import Bundle

    bundle = Bundle.load(src)
    return Bundle.create(bundle.manifest.model_copy(update={"version": version}), bundle.model).save(dest)


@pytest.fixture(scope="session")
def workspace(tmp_path_factory, synth_root, trained_run, int8_bundle) -> Path:
    """A folder laid out like a user's after `make demo` and the README's training steps (read-only)."""
    ws = tmp_path_factory.mktemp("workspace")
    shutil.copytree(synth_root, ws / "data")
    shutil.copytree(synth_root, ws / "tiles")
    (ws / "tiles" / "good").rename(ws / "tiles" / "free")
    (ws / "runs").mkdir()
    (ws / "runs" / "r1").symlink_to(trained_run)
    (ws / "runs" / "tile").symlink_to(trained_run)
    shutil.copy(trained_run / "split.json", ws / "runs" / "split.json")
    (ws / "runs" / "r1-calibrated").mkdir()
    for item in trained_run.iterdir():
        (ws / "runs" / "r1-calibrated" / item.name).symlink_to(item)
    (ws / "runs" / "r1-calibrated" / "r1.inspector").symlink_to(int8_bundle)
    for name in ("models/r1.inspector", "model.inspector", "tiles.inspector", "demo-out/demo.inspector"):
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).symlink_to(int8_bundle)
    _bundle_copy(int8_bundle, ws / "r2.inspector", "r2")
    _bundle_copy(int8_bundle, ws / "tiles-v7.inspector", "v7")
    write_video(ws / "demo-out" / "line.avi", 12)
    (ws / "demo-out" / "data").symlink_to(synth_root)
    cv2.imwrite(str(ws / "demo-out" / "reference.png"), cv2.imread(str(next((synth_root / "good").iterdir()))))
    cv2.imwrite(str(ws / "ref.png"), _part_image())
    for archive in ("cam1/archive", "cam2/archive"):
        (ws / archive).mkdir(parents=True)
    return ws


def _configs(cwd: Path, ws: Path, broker) -> None:
    """station.yaml and line.yaml of the --help examples: the demo's station and a line, on the test broker."""
    (cwd / "station.yaml").write_text(
        f"line: line1\nstation: cam1\nbundle: {ws / 'demo-out/demo.inspector'}\n"
        f"source: {{type: video, path: {ws / 'demo-out/line.avi'}, fps: 10, loop: true}}\n"
        f"mqtt: {{host: {broker.host}, port: {broker.port}}}\n"
    )
    (cwd / "line.yaml").write_text(
        f"line: line1\nstations: [cam1]\nmqtt: {{host: {broker.host}, port: {broker.port}}}\n"
        "actuator: {type: log}\ntrigger: {rate_hz: 5}\nresult_deadline_s: 1.0\n"
    )


def _argv(command: str, plan: Plan, broker, cwd: Path, ws: Path) -> List[str]:
    from tests.fixtures_mqtt import free_port

    values = {"broker": f"{broker.host}:{broker.port}", "port": str(broker.port), "free_port": str(free_port())}
    argv = []
    tokens = shlex.split(command)[1:] + plan.add
    if plan.broker_first:
        tokens[1:1] = ["--broker", BROKER]
    for token in tokens:
        token = plan.replace.get(token, token)
        if token in BROKER_TOKENS:
            token = BROKER
        token = PATHS.get(token, token).format(**values)
        argv.append(token)
    outputs = {argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--out", "--save", "--csv", "--station-yaml")}
    for token in argv + list(
        plan.inputs
    ):  # inputs: the exact workspace path, linked (or copied when the command writes into it)
        path = token.rstrip("/")
        if not path or path.startswith("-") or os.path.isabs(path) or not (ws / path).exists():
            continue
        if path in outputs and path not in plan.copy:
            continue
        (cwd / path).parent.mkdir(parents=True, exist_ok=True)
        if (cwd / path).exists():
            continue
        if path in plan.copy:
            shutil.copytree(ws / path, cwd / path, symlinks=False)
        else:
            (cwd / path).symlink_to(ws / path)
    return argv


def _start_station(broker, ws: Path, tmp: Path, line_station: str):
    from tests.fixtures_edge import StationThread, station_config

    line, name = line_station.split("/")
    models = tmp / "station-models"
    models.mkdir()
    bundle = _bundle_copy(ws / "model.inspector", models / "current.inspector", "r1")
    for other in ("r2.inspector", "tiles-v7.inspector"):
        shutil.copy(ws / other, models / other)
    source = {"type": "video", "path": str(ws / "demo-out/line.avi"), "loop": True, "fps": 10}
    cfg = station_config(broker, tmp / "station", bundle, source, name, {"line": line, "mode.type": "triggered"})
    rec = broker.subscriber([f"inspector/{line}/{name}/#"])
    station = StationThread(cfg).start()
    rec.wait_for(lambda r: r.events("started"), what="station started")  # status is retained from earlier ones
    rec.close()
    return station


def _ctrl_c_stops() -> None:
    """SIGINT as in a terminal (a background shell starts pytest with it ignored, and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _run_subprocess(argv: List[str], cwd: Path, ready: str) -> Tuple[int, str]:
    """Start the long-running command, wait until its output shows ``ready``, stop it with SIGINT."""
    log = cwd / "command.log"
    code = "import sys; from app.cli import main; sys.exit(main(sys.argv[1:]))"
    env = dict(os.environ, PYTHONPATH=str(ROOT), XDG_STATE_HOME=str(cwd / "state"), PYTHONUNBUFFERED="1")
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, *argv],
            cwd=cwd,
            stdout=out,
            stderr=out,
            env=env,
            preexec_fn=_ctrl_c_stops,
        )
        try:
            deadline = time.monotonic() + 120
            while ready not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            rc = proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return rc, log.read_text()


@pytest.mark.parametrize("command", documented_commands())
def test_documented_command_runs(command, workspace, shared_broker, tmp_path, monkeypatch, capsys):
    if command in SKIP:
        pytest.skip(SKIP[command])
    plan = PLAN[command]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    _configs(cwd, workspace, shared_broker)
    argv = _argv(command, plan, shared_broker, cwd, workspace)
    if plan.started_then_stopped:
        rc, output = _run_subprocess(argv, cwd, plan.ready)
        assert plan.ready in output, f"{command}: never showed {plan.ready!r}\n{output[-3000:]}"
    else:
        station = _start_station(shared_broker, workspace, tmp_path, plan.station) if plan.station else None
        try:
            rc = main(argv)
        finally:
            if station is not None:
                station.stop()
        captured = capsys.readouterr()
        output = captured.out + captured.err
    assert rc == plan.exit_code, f"{command}\nran as: inspector {shlex.join(argv)}\n{output[-3000:]}"
