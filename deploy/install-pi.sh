#!/usr/bin/env bash
# Installs the Earmark device on Raspberry Pi OS, 64-bit: Bookworm (Python 3.11) or Trixie
# (Python 3.13). Run as root from a checkout of this repository:   sudo ./deploy/install-pi.sh
#
# - checks the machine first: 64-bit ARM (aarch64) and Python 3.11-3.13
# - apt packages: a compiler, Python headers and PortAudio's (PyAudio and spidev build from
#   source on the Pi), lgpio for gpiozero, ALSA tools
# - a system user `earmark` in the audio, gpio and spi groups
# - /opt/earmark/venv with the project's device extra (onnxruntime; no tflite-runtime)
# - the wake-word models and the device key in /var/lib/earmark
# - deploy/earmark-device.service, enabled; logs go to journald
#
# `install-pi.sh --preflight` runs only the checks (as any user).
# Offline Pi: copy the openwakeword 0.4.0 wheel over and set MODEL_WHEEL=/path/to/it.whl
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX=/opt/earmark
DATA=/var/lib/earmark
PYTHON="${PYTHON:-python3}"

preflight() {
  local arch
  arch="$(uname -m)"
  case "$arch" in
    aarch64|arm64) ;;
    armv6l|armv7l|armhf)
      echo "install-pi.sh: this is 32-bit ARM ($arch). onnxruntime, which runs the wake-word models," \
           "has no 32-bit ARM wheels: install Raspberry Pi OS (64-bit) on a Pi 3, 4, 5 or Zero 2 W." >&2
      exit 2 ;;
    *) echo "install-pi.sh: $arch is not a Raspberry Pi; the device runs on 64-bit ARM (aarch64)." \
            "(Elsewhere, run it from a checkout: see the README.)" >&2
       exit 2 ;;
  esac
  local version
  version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" || {
    echo "install-pi.sh: $PYTHON is missing: apt-get install python3" >&2; exit 2; }
  case "$version" in
    3.11|3.12|3.13) ;;
    *) echo "install-pi.sh: Python $version; Earmark's device needs 3.11-3.13 (Raspberry Pi OS Bookworm" \
            "or Trixie, 64-bit)." >&2
       exit 2 ;;
  esac
  echo "preflight: $arch, Python $version: supported"
}

preflight
[ "${1:-}" = "--preflight" ] && exit 0
[ "$(id -u)" -eq 0 ] || { echo "run as root: sudo $0" >&2; exit 1; }

apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
  build-essential python3-venv python3-dev portaudio19-dev libportaudio2 \
  python3-lgpio alsa-utils

id earmark >/dev/null 2>&1 || useradd --system --home-dir "$DATA" --shell /usr/sbin/nologin earmark
for group in audio gpio spi; do
  getent group "$group" >/dev/null && usermod -aG "$group" earmark
done
install -d -o earmark -g earmark -m 0700 "$DATA"

"$PYTHON" -m venv --system-site-packages "$PREFIX/venv"  # system lgpio for gpiozero's pin factory
"$PREFIX/venv/bin/pip" install -q --upgrade pip
"$PREFIX/venv/bin/pip" install -q "$ROOT[device]"

FROM=()
[ -n "${MODEL_WHEEL:-}" ] && FROM=(--from "$MODEL_WHEEL")
sudo -u earmark "$PREFIX/venv/bin/earmark-device" models fetch --data-dir "$DATA" "${FROM[@]}"
sudo -u earmark "$PREFIX/venv/bin/earmark-device" keygen --data-dir "$DATA"

if [ ! -f "$DATA/device.toml" ]; then
  # The example sets nothing about identity: the pairing (earmark-device provision) does.
  install -o earmark -g earmark -m 0600 "$ROOT/deploy/earmark-device.example.toml" "$DATA/device.toml"
  echo "Edit $DATA/device.toml for your hardware ([mic], [gpio]); pair with: earmark-device provision BUNDLE"
fi
install -m 0644 "$ROOT/deploy/earmark-device.service" /etc/systemd/system/earmark-device.service
systemctl daemon-reload
systemctl enable earmark-device.service
echo "Installed. Start it with: systemctl start earmark-device; follow it with: journalctl -fu earmark-device"
echo "Inputs on this Pi:"; sudo -u earmark "$PREFIX/venv/bin/earmark-device" mics --data-dir "$DATA" || true
