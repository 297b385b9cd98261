#!/usr/bin/env bash
# Installs the Earmark device on 64-bit Raspberry Pi OS 12 "Bookworm" or 13 "Trixie", or on
# plain Debian 12/13 arm64 (Python 3.11-3.13). From a checkout of this repository:
#
#   sudo ./deploy/install-pi.sh                 on the Pi itself
#   sudo ./deploy/install-pi.sh --image ROOT    into an SD-card image's root filesystem, mounted
#                                               at ROOT (run in a chroot: no running systemd needed;
#                                               on a PC, with qemu-user-static; see hardware.md)
#   ./deploy/install-pi.sh --preflight          only the checks, as any user
#
# - checks the machine first: 64-bit ARM (aarch64), Python 3.11-3.13, and every other
#   prerequisite, one line each
# - apt packages: a compiler, Python headers and PortAudio's (PyAudio and spidev build from
#   source on the Pi), ALSA tools, and lgpio for gpiozero where the apt sources carry it (the
#   Raspberry Pi archive does, plain Debian does not: gpiozero then uses another pin factory)
# - a system user `earmark` in the audio, gpio and spi groups (made if the system has none)
# - /opt/earmark/venv with the project's device extra (onnxruntime; no tflite-runtime)
# - the wake-word models and the device key in /var/lib/earmark
# - deploy/earmark-device.service, enabled (it starts at boot); started only where systemd runs
#
# Offline Pi: copy the openwakeword 0.4.0 wheel over and set MODEL_WHEEL=/path/to/it.whl
set -euo pipefail
PATH="$PATH:/usr/sbin:/sbin"  # runuser, useradd and the like, also for --preflight as a user
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
# Where it installs (tests point these into a scratch root; nobody else needs to).
PREFIX="${EARMARK_PREFIX:-/opt/earmark}"
DATA="${EARMARK_DATA:-/var/lib/earmark}"
UNITS="${EARMARK_UNITS:-/etc/systemd/system}"
SYSTEMD_RUNNING="${EARMARK_SYSTEMD_RUNNING:-/run/systemd/system}"  # exists only where systemd is init

say() { echo "install-pi.sh: $*"; }
fail() { echo "install-pi.sh: $*" >&2; exit 2; }

preflight() {
  local arch version missing=()
  arch="$(uname -m)"
  case "$arch" in
    aarch64|arm64) ;;
    armv6l|armv7l|armhf)
      fail "this is 32-bit ARM ($arch). onnxruntime, which runs the wake-word models, has no 32-bit ARM" \
           "wheels: install Raspberry Pi OS (64-bit) on a Pi 3, 4, 5 or Zero 2 W." ;;
    *) fail "$arch is not a Raspberry Pi; the device runs on 64-bit ARM (aarch64). (Elsewhere, run it from a" \
            "checkout: see the README; to build a Pi image here, use --image ROOT.)" ;;
  esac
  version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" ||
    fail "$PYTHON is missing: apt-get install python3"
  case "$version" in
    3.11|3.12|3.13) ;;
    *) fail "Python $version; Earmark's device needs 3.11-3.13 (Raspberry Pi OS Bookworm or Trixie, Debian" \
            "12 or 13, 64-bit)." ;;
  esac
  # What this script cannot install itself, one line each.
  command -v apt-get >/dev/null || missing+=("apt-get is missing: this script is for Debian and Raspberry Pi OS")
  command -v runuser >/dev/null || missing+=("runuser is missing: apt-get install util-linux")
  command -v systemctl >/dev/null || missing+=("systemctl is missing: apt-get install systemd")
  if [ "${#missing[@]}" -gt 0 ]; then
    printf 'install-pi.sh: %s\n' "${missing[@]}" >&2
    exit 2
  fi
  # What it installs, said so a person running --preflight knows.
  "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 || say "python3-venv is missing: this script installs it"
  echo "preflight: $arch, Python $version: supported"
}

MOUNTED=()  # what --image mounted, unmounted at exit
RESOLV=""  # the image's own resolv.conf while the host's stands in for it

leave_image() {
  local m
  for m in "${MOUNTED[@]}"; do umount -l "$m" || true; done
  if [ -n "$RESOLV" ]; then rm -f "$RESOLV"; mv "$RESOLV.earmark-saved" "$RESOLV" 2>/dev/null || true; fi
}

into_image() {  # --image ROOT: this script again, inside the image's root filesystem
  local image="$1" src="/opt/earmark/src" point
  [ -x "$image/usr/bin/python3" ] || fail "$image holds no /usr/bin/python3: is it an image's root filesystem?"
  [ "$(id -u)" -eq 0 ] || fail "building an image needs root: sudo $0 --image $image"
  mkdir -p "$image$src"
  tar -C "$ROOT" --exclude=.git --exclude=.venv --exclude=build -cf - . | tar -C "$image$src" -xf -
  if [ -n "${MODEL_WHEEL:-}" ]; then cp "$MODEL_WHEEL" "$image$src/"; fi
  trap leave_image EXIT
  for point in proc sys dev; do
    if ! mountpoint -q "$image/$point"; then
      mount --bind "/$point" "$image/$point"
      MOUNTED+=("$image/$point")
    fi
  done
  RESOLV="$image/etc/resolv.conf"  # apt and pip in the chroot resolve names as the host does
  mv "$RESOLV" "$RESOLV.earmark-saved" 2>/dev/null || true
  cp -L /etc/resolv.conf "$RESOLV"
  chroot "$image" env ${MODEL_WHEEL:+MODEL_WHEEL="$src/$(basename "$MODEL_WHEEL")"} \
    bash "$src/deploy/install-pi.sh"
  say "installed into the image at $image: the device starts at its first boot"
}

case "${1:-}" in
  --image) into_image "${2:?--image needs the directory holding the image root filesystem}"; exit 0 ;;
  --preflight) preflight; exit 0 ;;
  "") ;;
  *) fail "unknown option $1 (--image ROOT, --preflight)" ;;
esac
preflight
[ "$(id -u)" -eq 0 ] || fail "run as root: sudo $0"

apt-get update -q
packages=(build-essential python3-venv python3-dev portaudio19-dev libportaudio2 alsa-utils)
if apt-cache show python3-lgpio >/dev/null 2>&1; then
  packages+=(python3-lgpio)  # gpiozero's pin factory on Bookworm and Trixie, the only one on a Pi 5
else
  say "note: python3-lgpio is not in this system's apt sources (it comes from the Raspberry Pi archive):" \
      "gpiozero falls back to another pin factory (not on a Pi 5); for lgpio add archive.raspberrypi.com"
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}"

for group in audio gpio spi; do  # the unit's SupplementaryGroups: each must exist
  getent group "$group" >/dev/null || groupadd --system "$group"
done
id earmark >/dev/null 2>&1 || useradd --system --home-dir "$DATA" --shell /usr/sbin/nologin earmark
usermod -aG audio,gpio,spi earmark
install -d -o earmark -g earmark -m 0700 "$DATA"

"$PYTHON" -m venv --system-site-packages "$PREFIX/venv"  # the system lgpio, where there is one
"$PREFIX/venv/bin/pip" install -q --upgrade pip
"$PREFIX/venv/bin/pip" install -q "$ROOT[device]"

FROM=()
[ -n "${MODEL_WHEEL:-}" ] && FROM=(--from "$MODEL_WHEEL")
runuser -u earmark -- "$PREFIX/venv/bin/earmark-device" models fetch --data-dir "$DATA" "${FROM[@]}"
runuser -u earmark -- "$PREFIX/venv/bin/earmark-device" keygen --data-dir "$DATA"

if [ ! -f "$DATA/device.toml" ]; then
  # The example sets nothing about identity: the pairing (earmark-device provision) does.
  install -o earmark -g earmark -m 0600 "$ROOT/deploy/earmark-device.example.toml" "$DATA/device.toml"
  say "edit $DATA/device.toml for your hardware ([mic], [gpio]); pair with: earmark-device provision BUNDLE"
fi
install -D -m 0644 "$ROOT/deploy/earmark-device.service" "$UNITS/earmark-device.service"
systemctl enable earmark-device.service  # a symlink: works without a running systemd
if [ -d "$SYSTEMD_RUNNING" ]; then
  systemctl daemon-reload
  say "installed. Start it with: systemctl start earmark-device; follow it with: journalctl -fu earmark-device"
  echo "Inputs on this machine:"
  runuser -u earmark -- "$PREFIX/venv/bin/earmark-device" mics --data-dir "$DATA" || true
else
  say "installed; systemd is not running here (an image being built?): earmark-device starts at the next boot"
fi
