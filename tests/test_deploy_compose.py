"""The compose file and the device Dockerfiles (docker cannot run here): they parse, and every file they
reference exists or is one the operator creates on the device (listed in the compose file's header)."""

import re
import shlex
from pathlib import Path

import pytest
import yaml

from app.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILES = sorted(p for p in (DEPLOY / "docker").glob("Dockerfile.*") if p.suffix != ".dockerignore")
DEVICE_CREATED = {"station.yaml", "mosquitto/passwd", "models", ".env"}


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE.read_text())


def _binds(service):
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            yield source, target


def test_compose_starts_mosquitto_a_station_and_the_controller(compose):
    services = compose["services"]
    assert {"mosquitto", "station", "controller"} <= set(services)
    subcommands = {name for name, _, _ in COMMANDS}
    for name in ("station", "station-jetson", "controller"):
        assert services[name]["command"][0] in subcommands, name
        assert services[name]["depends_on"] == ["mosquitto"]
    assert services["controller"]["command"][:2] == ["controller", "--config"]
    assert "jetson" in services["station-jetson"]["profiles"]


def test_every_referenced_file_exists_or_is_created_on_the_device(compose):
    header = COMPOSE.read_text().split("\nname:")[0]
    for name in DEVICE_CREATED:
        assert name in header, f"{name} must be explained in the compose header"
    for service_name, service in compose["services"].items():
        build = service.get("build")
        if build:
            context = (DEPLOY / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), service_name
        for source, _ in _binds(service):
            if source.startswith("/"):
                continue  # a host device path such as /tmp/argus_socket
            relative = source[2:] if source.startswith("./") else source
            if relative in DEVICE_CREATED:
                continue
            assert (DEPLOY / relative).exists(), f"{service_name}: {source} does not exist"
        for variable in re.findall(r"\$\{(\w+):\?", yaml.safe_dump(service)):
            assert variable in header, f"{variable} must be explained in the compose header"


def test_mosquitto_container_gets_every_path_the_shipped_config_names(compose):
    config = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    targets = {target for _, target in _binds(compose["services"]["mosquitto"])}
    targets |= {v.split(":")[1] for v in compose["services"]["mosquitto"]["volumes"]}
    for key in ("password_file", "acl_file", "persistence_location", "include_dir"):
        path = re.search(rf"^{key} (\S+)", config, re.M).group(1).rstrip("/")
        assert path in targets, f"{key} {path} is not mounted"
    assert "1883 127.0.0.1" in config and compose["services"]["mosquitto"]["network_mode"] == "host"


def _instructions(path: Path):
    text = re.sub(r"\\\n", " ", path.read_text())
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            yield keyword.upper(), rest.strip()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copies_existing_files_that_the_dockerignore_lets_through(dockerfile):
    instructions = list(_instructions(dockerfile))
    keywords = [k for k, _ in instructions]
    assert "FROM" in keywords and keywords[-2:] == ["ENTRYPOINT", "CMD"]
    ignore = [
        line
        for line in (dockerfile.parent / f"{dockerfile.name}.dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert ignore[0] == "*"  # everything else (.venv, data, runs) stays out of the build context
    for keyword, rest in instructions:
        if keyword != "COPY":
            continue
        *sources, _ = shlex.split(rest)
        for source in sources:
            assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source} does not exist"
            assert source.rstrip("/") in allowed, f"{dockerfile.name}: {source} is excluded by the dockerignore"
    entrypoint = dict(instructions)["ENTRYPOINT"]
    assert "/opt/inspector/venv/bin/inspector" in entrypoint  # the same path the systemd units use
    run = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    assert "pip uninstall -y opencv-python-headless" in run and "--system-site-packages" in run
    assert (DEPLOY / "docker" / "constraints.txt").read_text().count("numpy<2") == 1


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_station_state_dir_is_the_volume(dockerfile):
    """Outbox and archive must land on the volume, not in the container's home (lost on re-creation)."""
    from edge.config import default_state_dir

    instructions = list(_instructions(dockerfile))
    volume = dict(instructions)["VOLUME"]
    env = dict(rest.split("=", 1) for keyword, rest in instructions if keyword == "ENV" and "=" in rest)
    assert default_state_dir("line1", "cam1", env) == Path("/var/lib/inspector") and "/var/lib/inspector" in volume


def test_every_package_directory_the_product_needs_on_a_device_is_copied():
    assert [p.name for p in DOCKERFILES] == ["Dockerfile.jetson", "Dockerfile.rpi"]
    copied = set()
    for dockerfile in DOCKERFILES:
        copied |= {rest.split()[0] for keyword, rest in _instructions(dockerfile) if keyword == "COPY"}
    assert {"inspector", "edge", "controller"} <= copied
