#!/usr/bin/env bash
# Installs Earmark's cloud side on a Debian host (bookworm or trixie), run as root from a
# checkout of this repository:
#
#   sudo ./deploy/install-cloud.sh --host broker.example.org [--bind 0.0.0.0] [--port 8883] \
#        [--portal-url https://portal.example.org]
#
# What it sets up (each step is skipped when already done, so it can be run again):
# - apt packages: Mosquitto, Python venv, polkitd
# - a system user `earmark-cloud`, in Mosquitto's group (it writes the broker's login files)
# - /opt/earmark-cloud/venv with the project's cloud extra
# - /var/lib/earmark-cloud (0700): the store, with cloud.toml pointing at
# - /etc/earmark-cloud (0750): the master key and the erasure ledger, outside the data dir
#   (a backup of the data dir never holds the key that opens it)
# - /var/lib/earmark-broker (Mosquitto's, group-writable by earmark-cloud): TLS files, the
#   password and ACL files; deploy/mosquitto/earmark.conf in /etc/mosquitto/conf.d/, pointed at it
# - a polkit rule that lets earmark-cloud run exactly `systemctl reload mosquitto` (how login
#   changes reach the broker: broker.reload_command), from the CLI and from the portal's sandbox
# - the ingester unit, the owners' portal unit (loopback: put a TLS reverse proxy in front)
#   and the daily purge timer, enabled and started
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX=/opt/earmark-cloud
DATA=/var/lib/earmark-cloud
SECRETS=/etc/earmark-cloud
BROKER=/var/lib/earmark-broker
HOST="" BIND=0.0.0.0 PORT=8883 PORTAL_URL=""
while [ $# -gt 0 ]; do
  case "$1" in
    --host) HOST="$2"; shift 2 ;;
    --bind) BIND="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --portal-url) PORTAL_URL="$2"; shift 2 ;;
    *) echo "install-cloud.sh: unknown option $1 (--host NAME, --bind ADDR, --port N, --portal-url URL)" >&2; exit 2 ;;
  esac
done
[ -n "$HOST" ] || { echo "install-cloud.sh: --host NAME is required: the name devices use to reach the broker" >&2; exit 2; }
PORTAL_URL="${PORTAL_URL:-https://$HOST}"
[ "$(id -u)" -eq 0 ] || { echo "run as root: sudo $0 --host $HOST" >&2; exit 1; }
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "install-cloud.sh: Python 3.11 or newer is needed ($(python3 --version))" >&2; exit 2; }

say() { printf '==> %s\n' "$*"; }
as_cloud() { runuser -u earmark-cloud -- "$PREFIX/venv/bin/earmark-cloud" "$@" --data-dir "$DATA"; }

say "packages"
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q mosquitto python3-venv polkitd

say "user earmark-cloud"
id earmark-cloud >/dev/null 2>&1 || useradd --system --home-dir "$DATA" --shell /usr/sbin/nologin earmark-cloud
usermod -aG mosquitto earmark-cloud

say "venv in $PREFIX"
[ -x "$PREFIX/venv/bin/python" ] || python3 -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install -q --upgrade pip
"$PREFIX/venv/bin/pip" install -q "$ROOT[cloud]"

say "directories"
install -d -o earmark-cloud -g earmark-cloud -m 0700 "$DATA"
install -d -o root -g earmark-cloud -m 0770 "$SECRETS"
install -d -o mosquitto -g mosquitto -m 2770 "$BROKER"  # setgid: files made here stay Mosquitto's group
if [ ! -f "$DATA/cloud.toml" ]; then
  cat > "$DATA/cloud.toml" <<EOF
# Written by deploy/install-cloud.sh; every key: deploy/earmark-cloud.example.toml.
master_key_file = "$SECRETS/master.key"

[broker]
# The CLI and the portal run as earmark-cloud and Mosquitto as mosquitto: reload through
# systemd, which deploy/polkit/50-earmark-cloud.rules allows for exactly this.
reload_command = "systemctl reload mosquitto"

[portal]
# Where owners reach the portal (a TLS reverse proxy in front of 127.0.0.1:8080).
public_url = "$PORTAL_URL"

[metrics]
host = "127.0.0.1"
port = 9108
EOF
  chown earmark-cloud:earmark-cloud "$DATA/cloud.toml"
  chmod 0600 "$DATA/cloud.toml"
fi
install -m 0644 "$ROOT/deploy/polkit/50-earmark-cloud.rules" /etc/polkit-1/rules.d/50-earmark-cloud.rules

say "store and master key"
as_cloud init

say "broker: TLS, logins, ACL in $BROKER; Mosquitto's drop-in"
as_cloud broker config --out "$BROKER" --bind "$BIND" --port "$PORT" --host "$HOST" --run-as mosquitto
sed -e "s#/var/lib/earmark-cloud/broker#$BROKER#g" -e "s#^listener 8883 0.0.0.0#listener $PORT $BIND#" \
  "$ROOT/deploy/mosquitto/earmark.conf" > /etc/mosquitto/conf.d/earmark.conf
systemctl restart mosquitto
for _ in $(seq 30); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 1; done
as_cloud broker sync

say "units"
for unit in earmark-ingester.service earmark-portal.service earmark-purge.service earmark-purge.timer; do
  install -m 0644 "$ROOT/deploy/$unit" "/etc/systemd/system/$unit"
done
systemctl daemon-reload
systemctl enable --now earmark-ingester.service earmark-portal.service earmark-purge.timer

say "done"
as_cloud status || true
echo "Add an owner:  sudo -u earmark-cloud $PREFIX/venv/bin/earmark-cloud owner add --name NAME --data-dir $DATA"
echo "Invite them:   sudo -u earmark-cloud $PREFIX/venv/bin/earmark-cloud owner invite --owner ID --config $DATA/cloud.toml"
echo "Follow it:     journalctl -fu earmark-ingester   (warnings only: -p warning)"
echo "The portal listens on 127.0.0.1:8080 for $PORTAL_URL: put a TLS reverse proxy in front (README)"
