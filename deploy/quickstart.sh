#!/usr/bin/env bash
# Sets up everything a fresh machine lacks, then runs the demo on the embedded defaults:
# a simulated device (mock GPIO, a WAV spoken by espeak-ng as its microphone) hears
# "alexa, what time is it", records the utterance, signs it, and keeps it in its spool.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/deploy/setup.sh"
cd "$ROOT"
export PATH="$ROOT/.venv/bin:$PATH"

DEMO="$ROOT/.demo"
rm -rf "$DEMO"; mkdir -p "$DEMO"
OWNER_ID="6f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b"
DEVICE_ID="kitchen-pi"

step() { printf '\n\033[1m%s\033[0m\n' "$*"; }

step "1. Install the wake-word models into the device's data dir (checked against known SHA-256 sums)"
earmark-device models fetch --data-dir "$DEMO" --from "$EARMARK_MODEL_WHEEL"

step "2. Give the device its own signing key (only the public half ever leaves it)"
earmark-device keygen --data-dir "$DEMO"

step "3. Speak a request with espeak-ng: silence, \"alexa\", \"what time is it\", silence"
espeak-ng -v en -s 150 -w "$DEMO/wake.wav" "alexa"
espeak-ng -v en -s 150 -w "$DEMO/request.wav" "what time is it"
sox -q "$DEMO/wake.wav" "$DEMO/request.wav" "$DEMO/spoken.wav" pad 1.5 2
echo "   $DEMO/spoken.wav ($(soxi -D "$DEMO/spoken.wav") s)"

step "4. Run the device on that WAV as its microphone, with mock GPIO pins"
earmark-device run --data-dir "$DEMO" --audio-file "$DEMO/spoken.wav" --mock-gpio \
  --device-id "$DEVICE_ID" --owner-id "$OWNER_ID"

step "5. The clip it recorded, waiting in the spool for upload (signed with the device key)"
earmark-device spool --data-dir "$DEMO"

cat <<MSG

What happened: the device listened to the file frame by frame, the wake word "alexa"
started a recording (with half a second of audio from before it), voice activity
detection ended it after the request, and the clip was sealed in a signed envelope and
written durably to $DEMO/spool. No broker is configured yet, so it stays there.
Nothing is left running.
MSG
