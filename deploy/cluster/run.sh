#!/usr/bin/env bash
# Earmark on several hosts of this machine (network namespaces), with real RabbitMQ,
# PostgreSQL and ingesters. Needs root and the README's set-up (./deploy/setup.sh).
#   ./deploy/cluster/run.sh --faults       kill, partition and fail over while devices publish; check
#   ./deploy/cluster/run.sh --throughput   clips per second for 1, 2 and 3 ingester hosts
# deploy/SCALING.md describes the topology and what the run checks.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
if [[ $EUID -ne 0 ]]; then
    echo "deploy/cluster/run.sh makes network namespaces: run it as root" >&2
    exit 2
fi
if [[ ! -x "$ROOT/.venv/bin/earmark-cloud" ]]; then
    echo "no $ROOT/.venv: run ./deploy/setup.sh first" >&2
    exit 2
fi
missing=()
[[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] || missing+=(rabbitmq-server)
compgen -G "/usr/lib/postgresql/*/bin/postgres" > /dev/null || missing+=(postgresql)
command -v ip > /dev/null || missing+=(iproute2)
if (( ${#missing[@]} )); then
    echo "==> installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null
fi
exec "$ROOT/.venv/bin/python" "$ROOT/deploy/cluster/run.py" "$@"
