#!/usr/bin/env bash
# Installs what a fresh Debian / Raspberry Pi OS machine lacks to run and test Earmark:
# apt packages, a .venv with the project and its extras, and the wake-word model wheel.
# Idempotent and quiet when everything is already there. Sourced by quickstart.sh and
# run-tests.sh; run it on its own to set up only.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

APT_PACKAGES=(espeak-ng sox libsox-fmt-all portaudio19-dev mosquitto python3-venv postgresql rabbitmq-server chromium
              age unzip curl)
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # Another apt-get or unattended-upgrades may hold dpkg's lock: wait for it (a bounded time)
  # rather than stop at apt's raw "Could not get lock" line.
  APT_WAIT=(-o DPkg::Lock::Timeout=600)
  if [ -n "$(command -v fuser)" ] && $SUDO fuser /var/lib/dpkg/lock-frontend >/dev/null 2>&1; then
    say "waiting (up to 10 minutes) for the apt-get or dpkg already running to finish"
  fi
  $SUDO apt-get "${APT_WAIT[@]}" update -q >/dev/null
  # (debconf's note that apt-utils is missing is noise here; apt's own errors still show)
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${APT_WAIT[@]}" install -y -q "${missing[@]}" >/dev/null \
    2> >(grep -v "^debconf: delaying package configuration" >&2)
fi
# The test suite starts its own Mosquitto brokers; the packaged service is not needed for that.
# It does need the local PostgreSQL (scale-out backend) and RabbitMQ (clustered source).
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! listening 5432; then
  say "starting PostgreSQL"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
fi
PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "Earmark needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version)" >&2; exit 1; }

# The editable install is a tree of links (setuptools' strict mode) that maps wire/, runtime/, device/ and
# cloud/ to earmark.wire, earmark.runtime, earmark.device and earmark.cloud, which mypy can follow too; a module
# added or removed needs a reinstall, so the stamp covers the file list as well.
stamp=".venv/.earmark-installed"
want="$( { cat pyproject.toml; find wire runtime device cloud -name '*.py' -o -name '*.json' -o -name '*.npz' -o -name '*.html' -o -name '*.js' \
  -o -name '*.css' -o -name '*.svg' -o -name py.typed | sort; } \
  | sha256sum | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing Python packages into .venv"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -qq --upgrade pip
  rm -rf build/__editable__.*
  .venv/bin/python -m pip install -qq -e '.[device,cloud,dev]' --config-settings editable_mode=strict
  echo "$want" > "$stamp"
fi

# RabbitMQ: its MQTT plugin beside Mosquitto (which keeps 1883) on 127.0.0.1:1884, and Earmark's
# server settings (cloud/broker/rabbit.py): AMQP by client certificate only on 127.0.0.1:5671 (a
# device's password works over MQTT alone), and no message larger than a clip envelope. The node's
# TLS files and a CA for ingesters' certificates are made once in /etc/rabbitmq/earmark-tls.
RABBIT_CONF=/etc/rabbitmq/rabbitmq.conf
RABBIT_TLS=/etc/rabbitmq/earmark-tls
rabbit_plugins() { grep -q rabbitmq_mqtt /etc/rabbitmq/enabled_plugins 2>/dev/null \
    && grep -q rabbitmq_auth_mechanism_ssl /etc/rabbitmq/enabled_plugins 2>/dev/null; }
rabbit_settings() {  # writes them if they differ; says "changed" then
  $SUDO .venv/bin/python -m earmark.cloud.broker.rabbit --conf "$RABBIT_CONF" --tls-dir "$RABBIT_TLS" \
    --amqps 127.0.0.1:5671
}
if ! grep -q '^mqtt.listeners.tcp.default' "$RABBIT_CONF" 2>/dev/null || ! rabbit_plugins \
    || [ "$(rabbit_settings)" = changed ]; then
  say "configuring RabbitMQ: MQTT on 127.0.0.1:1884, AMQP by client certificate on 127.0.0.1:5671"
  grep -q '^mqtt.listeners.tcp.default' "$RABBIT_CONF" 2>/dev/null || printf '%s\n' \
    "# Earmark: RabbitMQ's MQTT plugin beside Mosquitto (which keeps 1883)" \
    "mqtt.listeners.tcp.default = 127.0.0.1:1884" "mqtt.allow_anonymous = false" | $SUDO tee -a "$RABBIT_CONF" >/dev/null
  rabbit_settings >/dev/null
  $SUDO rabbitmq-plugins enable --offline rabbitmq_mqtt rabbitmq_auth_mechanism_ssl >/dev/null
  if listening 5672; then
    $SUDO rabbitmqctl -q stop >/dev/null 2>&1 || true
    for _ in $(seq 60); do listening 5672 || break; sleep 1; done
  fi
fi
if ! listening 5672 || ! listening 5671 || ! listening 1884; then
  say "starting RabbitMQ"
  if listening 5672; then  # running, but not with these settings: restart it
    $SUDO rabbitmqctl -q stop >/dev/null 2>&1 || true
    for _ in $(seq 60); do listening 5672 || break; sleep 1; done
  fi
  $SUDO rabbitmq-server -detached
  # A freshly started node registers with epmd a few seconds later; until then every
  # rabbitmqctl call fails at once ("not running at all"), so ask again until it answers.
  for _ in $(seq 120); do
    $SUDO rabbitmqctl -q await_startup --timeout 5 >/dev/null 2>&1 && break
    sleep 1
  done
  $SUDO rabbitmqctl -q await_startup --timeout 5 >/dev/null \
    || { echo "RabbitMQ did not start: see /var/log/rabbitmq/" >&2; exit 1; }
  for _ in $(seq 60); do listening 1884 && listening 5671 && break; sleep 1; done
  listening 1884 || { echo "RabbitMQ's MQTT plugin is not listening on 127.0.0.1:1884" >&2; exit 1; }
  listening 5671 || { echo "RabbitMQ is not listening for AMQP over TLS on 127.0.0.1:5671: see /var/log/rabbitmq/" >&2
                      exit 1; }
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

# axe-core, which the portal's browser tests run on every page (tests/integration/test_portal_a11y.py).
AXE_VERSION=4.14.1
AXE_DIR="$ROOT/.cache/axe-core-$AXE_VERSION"
if [ ! -f "$AXE_DIR/axe.min.js" ]; then
  say "downloading axe-core $AXE_VERSION (the portal's accessibility checks)"
  if ! command -v npm >/dev/null; then  # nodejs (NodeSource's, or Debian's nodejs + npm) brings it
    $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q npm >/dev/null || { echo "npm is missing and apt could not install it:" \
      "install Node.js with npm, then run this again" >&2; exit 1; }
  fi
  mkdir -p "$AXE_DIR"
  (cd "$AXE_DIR" && npm pack --silent "axe-core@$AXE_VERSION" >/dev/null && tar -xzf "axe-core-$AXE_VERSION.tgz" \
     --strip-components=1 package/axe.min.js && rm "axe-core-$AXE_VERSION.tgz")
fi
EARMARK_AXE="$AXE_DIR/axe.min.js"
export EARMARK_AXE
