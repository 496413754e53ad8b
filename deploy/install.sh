#!/usr/bin/env bash
# Install the defect inspector on a bare Raspberry Pi OS (64- or 32-bit) or JetPack device, or any Debian /
# Ubuntu machine: system packages, a dedicated user, a venv in /opt/inspector, the systemd units and
# /etc/inspector. Run as root from a checkout (or unpacked source) of the project:
#   sudo deploy/install.sh                       # station and/or controller on this device
#   sudo deploy/install.sh --with-broker         # also Mosquitto with the production config
#   sudo deploy/install.sh --with-sparkplug      # also the Sparkplug B bridge's library
#   deploy/install.sh --dry-run                  # print what would be done, change nothing
# Which TFLite runtime (docs/deployment.md, "Runtimes"):
#   64-bit (aarch64, x86_64): ai-edge-litert from PyPI (the `edge` extra);
#   32-bit Raspberry Pi OS (armv7l): tflite-runtime, which is built against numpy 1.x: numpy<2 is pinned.
# OpenCV: PyPI's opencv wheels have no GStreamer, so CSI cameras (libcamerasrc, nvarguscamerasrc) need the
# system python3-opencv; the venv sees it through --system-site-packages (use --pypi-opencv for USB-only
# stations on a system without python3-opencv).
set -euo pipefail

PREFIX=/opt/inspector
ETC=/etc/inspector
WITH_BROKER=0
WITH_SPARKPLUG=0
PYPI_OPENCV=0
DRY_RUN=0
PLATFORM=""
ARCH=$(uname -m)
SRC=$(cd "$(dirname "$0")/.." && pwd)

usage() { sed -n '2,16p' "$0"; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) PREFIX=$2; shift ;;
    --with-broker) WITH_BROKER=1 ;;
    --with-sparkplug) WITH_SPARKPLUG=1 ;;
    --pypi-opencv) PYPI_OPENCV=1 ;;
    --dry-run) DRY_RUN=1 ;;
    --platform) PLATFORM=$2; shift ;;   # rpi, jetson or generic (default: detected)
    --arch) ARCH=$2; shift ;;           # default: uname -m
    -h|--help) usage 0 ;;
    *) echo "unknown option $1" >&2; usage 2 ;;
  esac
  shift
done

run() {
  if [ "$DRY_RUN" = 1 ]; then printf '+ %s\n' "$*"; else "$@"; fi
}
say() { printf '\n== %s\n' "$*"; }

if [ -z "$PLATFORM" ]; then
  if [ -e /etc/nv_tegra_release ]; then
    PLATFORM=jetson
  elif grep -qs "Raspberry Pi" /proc/device-tree/model; then
    PLATFORM=rpi
  else
    PLATFORM=generic
  fi
fi
case $ARCH in
  aarch64|arm64|x86_64) RUNTIME=ai-edge-litert ;;
  armv7l|armv6l) RUNTIME=tflite-runtime ;;
  *) echo "unsupported architecture $ARCH" >&2; exit 1 ;;
esac
if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
  echo "run as root (sudo), or with --dry-run" >&2
  exit 1
fi
[ -f "$SRC/pyproject.toml" ] || { echo "$SRC is not the project source" >&2; exit 1; }
echo "platform: $PLATFORM, architecture: $ARCH, TFLite runtime: $RUNTIME, source: $SRC, prefix: $PREFIX"

say "system packages"
packages=(python3 python3-venv python3-pip mosquitto-clients v4l-utils
          gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good)
[ "$PYPI_OPENCV" = 1 ] || packages+=(python3-opencv python3-numpy)
[ "$PLATFORM" = rpi ] && packages+=(gstreamer1.0-libcamera)   # CSI cameras through libcamerasrc
[ "$WITH_BROKER" = 1 ] && packages+=(mosquitto)
run apt-get update
run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}"

say "user inspector"
run install -D -m 0644 "$SRC/deploy/systemd/inspector.sysusers" /usr/lib/sysusers.d/inspector.conf
run systemd-sysusers /usr/lib/sysusers.d/inspector.conf
for group in video gpio i2c; do   # cameras, GPIO reject gate (gpio exists on Raspberry Pi OS and JetPack)
  if getent group "$group" >/dev/null; then run usermod -aG "$group" inspector; fi
done

say "python environment in $PREFIX/venv"
venv_args=()
[ "$PYPI_OPENCV" = 1 ] || venv_args+=(--system-site-packages)
run python3 -m venv "${venv_args[@]}" "$PREFIX/venv"
pip=("$PREFIX/venv/bin/pip" install --disable-pip-version-check)
run "${pip[@]}" --upgrade pip
constraints=()
if [ "$PYPI_OPENCV" = 0 ] || [ "$RUNTIME" = tflite-runtime ]; then
  # the system OpenCV and tflite-runtime are both built against numpy 1.x
  constraints=(--constraint "$SRC/deploy/docker/constraints.txt")
fi
run "${pip[@]}" "${constraints[@]}" "${SRC}[edge]"
if [ "$RUNTIME" = tflite-runtime ]; then
  run "${pip[@]}" "${constraints[@]}" tflite-runtime
fi
if [ "$PYPI_OPENCV" = 0 ]; then
  # the package depends on the PyPI wheel; remove it so the GStreamer-enabled system cv2 is imported
  run "$PREFIX/venv/bin/pip" uninstall -y opencv-python-headless
fi
if [ "$WITH_SPARKPLUG" = 1 ]; then
  run "${pip[@]}" "${constraints[@]}" "${SRC}[sparkplug]"
  # pysparkplug declares paho-mqtt<2; the bridge only uses its payload classes, which work with paho 2
  run "${pip[@]}" --no-deps "pysparkplug>=0.6.1,<0.7"
fi

say "configuration in $ETC, models in /var/lib/inspector/models"
run install -d -m 0755 "$ETC"
# bundles the stations load (station.example.yaml: bundle, models_dir); the state directories next to it
# are created by systemd (StateDirectory=)
run install -d -m 0755 /var/lib/inspector /var/lib/inspector/models
for example in line.example.yaml station.example.yaml; do
  if [ -f "$SRC/deploy/$example" ]; then run install -m 0644 "$SRC/deploy/$example" "$ETC/$example"; fi
done
# secrets (MQTT_PASSWORD=...) live in root-only env files read by the units (EnvironmentFile=)
[ -e "$ETC/controller.env" ] || run install -m 0600 /dev/null "$ETC/controller.env"

say "systemd units"
for unit in "$SRC"/deploy/systemd/*.service; do
  run install -m 0644 "$unit" "/etc/systemd/system/$(basename "$unit")"
done
if [ "$PREFIX" != /opt/inspector ]; then
  run sed -i "s#/opt/inspector/venv#$PREFIX/venv#g" /etc/systemd/system/inspector-*.service
fi
run systemctl daemon-reload

if [ "$WITH_BROKER" = 1 ]; then
  say "mosquitto"
  if [ -f /etc/mosquitto/mosquitto.conf ] && [ ! -f /etc/mosquitto/mosquitto.conf.dist ]; then
    run cp /etc/mosquitto/mosquitto.conf /etc/mosquitto/mosquitto.conf.dist
  fi
  run install -m 0644 "$SRC/deploy/mosquitto/mosquitto.conf" /etc/mosquitto/mosquitto.conf
  [ -f /etc/mosquitto/acl ] || run install -m 0640 -g mosquitto "$SRC/deploy/mosquitto/acl" /etc/mosquitto/acl
  [ -f /etc/mosquitto/passwd ] || run install -m 0640 -g mosquitto /dev/null /etc/mosquitto/passwd
  if [ -f /etc/mosquitto/certs/server.crt ]; then
    run install -m 0644 "$SRC/deploy/mosquitto/conf.d/tls.conf" /etc/mosquitto/conf.d/tls.conf
  else
    echo "no /etc/mosquitto/certs/server.crt: the TLS listener is not enabled (docs/deployment.md, Broker)"
  fi
  run install -m 0755 "$SRC/deploy/mosquitto/add-station.sh" /usr/local/sbin/inspector-add-station
  run systemctl restart mosquitto
fi

say "check"
run "$PREFIX/venv/bin/inspector" --version
run "$PREFIX/venv/bin/python" -c "import cv2, re; print('OpenCV', cv2.__version__, 'GStreamer:', \
'yes' if re.search(r'GStreamer:\s+YES', cv2.getBuildInformation()) else 'no')"
if [ "$RUNTIME" = tflite-runtime ]; then
  run "$PREFIX/venv/bin/python" -c "import tflite_runtime.interpreter; print('tflite-runtime ok')"
else
  run "$PREFIX/venv/bin/python" -c "import ai_edge_litert.interpreter; print('ai-edge-litert ok')"
fi

cat <<EOF

Installed. Next (docs/deployment.md):
  1. broker accounts: inspector-add-station <line> <station> (on the broker host), and a controller user
  2. $ETC/<station>.yaml from station.example.yaml; MQTT_PASSWORD=... in $ETC/<station>.env (mode 0600)
  3. systemctl enable --now inspector-station@<station>
  4. on the controller machine: $ETC/line.yaml from line.example.yaml, MQTT_PASSWORD in $ETC/controller.env,
     systemctl enable --now inspector-controller
  5. inspector monitor --config $ETC/line.yaml
EOF
