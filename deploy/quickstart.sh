#!/usr/bin/env bash
# Sets up everything a fresh machine lacks, then runs the whole pipeline on one machine on
# the embedded defaults: a Mosquitto with the generated config (TLS, logins, ACL) on a
# loopback port, the ingester with its SQLite store, an owner whose household key is made on
# her side, a paired simulated device (mock GPIO, a WAV spoken by espeak-ng as its
# microphone) that seals each clip to that key, the owner's clips listed and exported, the
# owners' portal with an invite link for her (it waits for Enter when run from a terminal),
# and last the owner opening her exported clip with the age command. It leaves nothing
# running. The owner's side (her household key, what she said, what she opens) is in
# .demo/owner/; everything the operator runs is elsewhere in .demo/, and holds no key that
# opens her audio.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/deploy/setup.sh"
cd "$ROOT"
export PATH="$ROOT/.venv/bin:$PATH"

DEMO="$ROOT/.demo"
rm -rf "$DEMO"; mkdir -p "$DEMO"
CLOUD="$DEMO/cloud"; DEVICE="$DEMO/device"; HOME_OF_ALICE="$DEMO/owner"
mkdir -m 700 "$HOME_OF_ALICE"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
PIDS=()
# Stopped newest first: the portal and the ingester before the broker they talk to (uvicorn exits 143 on SIGTERM).
cleanup() { for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[i]}" 2>/dev/null && { wait "${PIDS[i]}" 2>/dev/null || true; }; done; }
trap cleanup EXIT
step() { printf '\n\033[1m%s\033[0m\n' "$*"; }

step "1. The cloud: an empty store, and a master key kept outside the database"
earmark-cloud init --data-dir "$CLOUD"

step "2. The broker: TLS on 127.0.0.1:$PORT, no anonymous access, one login per device, an ACL"
# As the docs tell operators: started by root, Mosquitto drops to its own user ('mosquitto'); by anyone else, runs as them.
earmark-cloud broker config --data-dir "$CLOUD" --out "$DEMO/broker" --port "$PORT"
mosquitto -c "$DEMO/broker/mosquitto.conf" 2>"$DEMO/mosquitto.log" &
PIDS+=($!)

step "3. An owner, Alice, who will own the device"
OWNER="$(earmark-cloud owner add --data-dir "$CLOUD" --name "Alice")"
echo "   owner id: $OWNER"

step "3b. Alice makes her household's key on her own side (age-keygen); the cloud gets only its public half"
age-keygen -o "$HOME_OF_ALICE/household-key.txt" 2>/dev/null
RECIPIENT="$(age-keygen -y "$HOME_OF_ALICE/household-key.txt")"
earmark-cloud owner set-recipient --data-dir "$CLOUD" --owner "$OWNER" "$RECIPIENT"

step "4. The device makes its own key; the cloud registers only its public half and issues a pairing bundle"
earmark-device models fetch --data-dir "$DEVICE" --from "$EARMARK_MODEL_WHEEL"
KEY="$(earmark-device enroll --data-dir "$DEVICE" | tail -n1)"
earmark-cloud device add --data-dir "$CLOUD" --owner "$OWNER" --public-key "$KEY" --device-id kitchen-pi \
  --bundle-out "$DEMO/kitchen-pi.bundle.json" >/dev/null
earmark-device provision --data-dir "$DEVICE" "$DEMO/kitchen-pi.bundle.json"
rm "$DEMO/kitchen-pi.bundle.json"

step "5. The ingester: verifies each clip, files it under its owner's key, and answers with a receipt"
earmark-cloud ingest --data-dir "$CLOUD" --broker "mqtts://127.0.0.1:$PORT" --ca "$DEMO/broker/ca.pem" \
  --username earmark-ingester --password-file "$DEMO/broker/ingester.password" --metrics-port 0 \
  2>"$DEMO/ingest.log" &
PIDS+=($!)
for _ in $(seq 300); do grep -q "subscribed to" "$DEMO/ingest.log" && break; sleep 0.1; done
grep -q "subscribed to" "$DEMO/ingest.log" || { echo "the ingester did not subscribe:"; cat "$DEMO/ingest.log"; exit 1; }
echo "   ingester connected and subscribed"

step "6. Alice speaks a request (espeak-ng, in her room): silence, \"alexa\", \"what time is it\", silence"
SAID="$HOME_OF_ALICE/said"; mkdir "$SAID"
espeak-ng -v en -s 150 -w "$SAID/wake.wav" "alexa"
espeak-ng -v en -s 150 -w "$SAID/request.wav" "what time is it"
sox -q "$SAID/wake.wav" "$SAID/request.wav" "$SAID/spoken.wav" pad 1.5 2
echo "   $SAID/spoken.wav ($(soxi -D "$SAID/spoken.wav") s)"

step "7. Run the device on that WAV as its microphone (mock GPIO); it seals the clip to Alice's key, then exits once the cloud has it"
earmark-device run --data-dir "$DEVICE" --audio-file "$SAID/spoken.wav" --mock-gpio --drain-timeout 30

step "8. Alice's clips, as the cloud holds them"
earmark-cloud clips list --data-dir "$CLOUD" --owner "$OWNER"

step "9. Alice asks for her data: an export of all her recordings and nothing else, encrypted to her key"
earmark-cloud export --data-dir "$CLOUD" --owner "$OWNER" --out "$DEMO/exports"
ARCHIVE="$(ls "$DEMO"/exports/earmark-export-*.zip.age)"
EXPORT_KEY="$(earmark-cloud export-key --data-dir "$CLOUD" | awk '/current/ {print $1}')"
earmark-cloud audit verify --data-dir "$CLOUD"

cat <<MSG

What happened: the device heard the wake word "alexa", recorded the request that followed
(with half a second from before), encrypted the audio to Alice's household key before it
touched the device's disk, sealed it in an envelope signed with its own key, wrote it to its
spool, and sent it over TLS with its own broker login. The ingester checked the signature
against the key registered for kitchen-pi, took the owner from the registry, checked that
the clip was sealed to her household's key, stored it, and sent a receipt; only then did the
device delete its copy. The export re-checked every clip (device signature, binding at
capture time, the chain) on its way into the archive. Nothing the operator holds opens the
audio: only the household key in $HOME_OF_ALICE does.
MSG

step "10. Alice's own page: the portal, and a one-time link for her to make her passkey"
WEB="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
printf '[portal]\npublic_url = "http://localhost:%s"\nport = %s\n' "$WEB" "$WEB" > "$CLOUD/cloud.toml"
earmark-cloud portal --data-dir "$CLOUD" 2>"$DEMO/portal.log" &
PIDS+=($!)
for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$WEB/signin" 2>/dev/null && break; sleep 0.1; done
LINK="$(earmark-cloud owner invite --data-dir "$CLOUD" --owner "$OWNER")"
# The portal stays up while someone can use the link: until Enter on a terminal, for
# EARMARK_DEMO_WAIT seconds if that is set; with neither, it stops here and says so.
if [ -n "${EARMARK_DEMO_WAIT:-}" ] || [ -t 0 ]; then
  echo "   Alice opens this in a browser on this machine (one use, 15 minutes), makes a passkey, and"
  echo "   sees, hears (decrypted in her browser: she picks $HOME_OF_ALICE/household-key.txt when asked)"
  echo "   and deletes her recordings, and who touched them:"
  echo
  echo "   $LINK"
  echo
  if [ -n "${EARMARK_DEMO_WAIT:-}" ]; then
    echo "   The portal runs for ${EARMARK_DEMO_WAIT} s (EARMARK_DEMO_WAIT)."
    sleep "$EARMARK_DEMO_WAIT"
  else
    read -r -p "   The portal runs until you press Enter. " _
  fi
else
  echo "   The portal started and answered, and stops now: there is no terminal to keep it up for. To open"
  echo "   Alice's page in a browser, run the demo from a terminal, or with EARMARK_DEMO_WAIT=600 to keep"
  echo "   the portal up for ten minutes."
fi

step "11. On Alice's side: she checks her archive offline and opens her clip with the age command"
earmark-cloud verify-export --owner "$OWNER" --key "$EXPORT_KEY" --identity "$HOME_OF_ALICE/household-key.txt" "$ARCHIVE"
age -d -i "$HOME_OF_ALICE/household-key.txt" -o "$HOME_OF_ALICE/export.zip" "$ARCHIVE"
unzip -q -o "$HOME_OF_ALICE/export.zip" -d "$HOME_OF_ALICE/export"
SEALED="$(ls "$HOME_OF_ALICE"/export/clips/*.wav.age | head -n1)"
age -d -i "$HOME_OF_ALICE/household-key.txt" -o "$HOME_OF_ALICE/clip.wav" "$SEALED"
echo "   $HOME_OF_ALICE/clip.wav: $(soxi -D "$HOME_OF_ALICE/clip.wav") s of audio, opened with her key alone"
echo "Everything stops now; the files stay in $DEMO."
