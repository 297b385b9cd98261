#!/usr/bin/env bash
# Earmark under load and faults on this host: devices, the generated Mosquitto, the ingester
# and the portal, with an ingester outage, a full disk and concurrent portal clients; it
# prints the figures and checks every clip stored exactly once (deploy/SCALING.md, "Load and
# faults"). Needs root (a tmpfs for the full disk) and the README's set-up.
#   ./deploy/soak/run.sh                                   24 devices x 1000 clips, 2 min outage
#   ./deploy/soak/run.sh --devices 4 --clips 50 --outage 10 --disk-full 5 --portal-seconds 5
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
if [[ $EUID -ne 0 ]]; then
    echo "deploy/soak/run.sh mounts a tmpfs to fill: run it as root" >&2
    exit 2
fi
if [[ ! -x "$ROOT/.venv/bin/earmark-cloud" ]]; then
    echo "no $ROOT/.venv: run ./deploy/setup.sh first" >&2
    exit 2
fi
exec "$ROOT/.venv/bin/python" "$ROOT/deploy/soak/run.py" "$@"
