#!/usr/bin/env bash
# Installs the Earmark device on Raspberry Pi OS Bookworm (64-bit), run as root from a
# checkout of this repository:   sudo ./deploy/install-pi.sh
#
# - apt packages (PortAudio for PyAudio, Python venv, lgpio for gpiozero)
# - a system user `earmark` in the audio and gpio groups
# - /opt/earmark/venv with the project's device extra
# - the wake-word models and the device key in /var/lib/earmark
# - deploy/earmark-device.service, enabled; logs go to journald
#
# Offline Pi: copy the openwakeword 0.4.0 wheel over and set MODEL_WHEEL=/path/to/it.whl
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "run as root: sudo $0" >&2; exit 1; }
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX=/opt/earmark
DATA=/var/lib/earmark

apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
  python3-venv python3-dev portaudio19-dev libportaudio2 python3-lgpio alsa-utils

id earmark >/dev/null 2>&1 || useradd --system --home-dir "$DATA" --shell /usr/sbin/nologin earmark
for group in audio gpio spi; do
  getent group "$group" >/dev/null && usermod -aG "$group" earmark
done
install -d -o earmark -g earmark -m 0700 "$DATA"

python3 -m venv --system-site-packages "$PREFIX/venv"  # system lgpio for gpiozero's pin factory
"$PREFIX/venv/bin/pip" install -q --upgrade pip
"$PREFIX/venv/bin/pip" install -q "$ROOT[device]"

FROM=()
[ -n "${MODEL_WHEEL:-}" ] && FROM=(--from "$MODEL_WHEEL")
sudo -u earmark "$PREFIX/venv/bin/earmark-device" models fetch --data-dir "$DATA" "${FROM[@]}"
sudo -u earmark "$PREFIX/venv/bin/earmark-device" keygen --data-dir "$DATA"

if [ ! -f "$DATA/device.toml" ]; then
  install -o earmark -g earmark -m 0600 "$ROOT/deploy/earmark-device.example.toml" "$DATA/device.toml"
  echo "Edit $DATA/device.toml: set device_id, owner_id, [mic] and [gpio] for your hardware."
fi
install -m 0644 "$ROOT/deploy/earmark-device.service" /etc/systemd/system/earmark-device.service
systemctl daemon-reload
systemctl enable earmark-device.service
echo "Installed. Start it with: systemctl start earmark-device; follow it with: journalctl -fu earmark-device"
echo "Inputs on this Pi:"; sudo -u earmark "$PREFIX/venv/bin/earmark-device" mics --data-dir "$DATA" || true
