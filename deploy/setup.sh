#!/usr/bin/env bash
# Installs what a fresh Debian / Raspberry Pi OS machine lacks to run and test Earmark:
# apt packages, a .venv with the project and its extras, and the wake-word model wheel.
# Idempotent and quiet when everything is already there. Sourced by quickstart.sh and
# run-tests.sh; run it on its own to set up only.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

APT_PACKAGES=(espeak-ng sox libsox-fmt-all portaudio19-dev mosquitto python3-venv)
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}" >/dev/null
fi
# The test suite starts its own brokers; the packaged service is not needed for that.

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "Earmark needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version)" >&2; exit 1; }

stamp=".venv/.earmark-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing Python packages into .venv"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[device,cloud,dev]'
  echo "$want" > "$stamp"
fi

# openwakeword 0.6 downloads its models at run time from a host we cannot assume; the
# 0.4.0 wheel on PyPI carries the same v0.1 ONNX models. Keep one copy for tests and demos.
WHEEL_DIR="$ROOT/.cache/wheels"
if ! ls "$WHEEL_DIR"/openwakeword-0.4.0-*.whl >/dev/null 2>&1; then
  say "downloading the wake-word model wheel (openwakeword 0.4.0)"
  mkdir -p "$WHEEL_DIR"
  .venv/bin/python -m pip download -q --no-deps -d "$WHEEL_DIR" openwakeword==0.4.0
fi
EARMARK_MODEL_WHEEL="$(ls "$WHEEL_DIR"/openwakeword-0.4.0-*.whl | head -n1)"
export EARMARK_MODEL_WHEEL
