#!/usr/bin/env bash
# Rebuilds the portal's vendored age implementation, cloud/portal/static/age-encryption.js:
# typage (npm `age-encryption`, maintained by age's author) and its @noble/@scure dependencies,
# bundled by esbuild into one minified ES module, from the exact versions package-lock.json pins.
# The same inputs give the same bytes: `--check` rebuilds into a temporary folder and compares
# with the committed file's SHA-256 (age-encryption.js.sha256) instead of writing. Users never run
# this; the portal serves the committed file. Needs npm (it downloads the pinned packages).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="$HERE/../../cloud/portal/static"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$HERE/package.json" "$HERE/package-lock.json" "$HERE/entry.js" "$work/"
(cd "$work" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null \
  && ./node_modules/.bin/esbuild entry.js --bundle --format=esm --minify --legal-comments=eof --target=es2022 \
       --outfile=age-encryption.js --log-level=warning \
  && { for p in age-encryption @noble/ciphers @noble/curves @noble/hashes @noble/post-quantum @scure/base; do
         printf '== %s %s ==\n' "$p" "$(node -p "require('./node_modules/$p/package.json').version")"
         cat "node_modules/$p/LICENSE"; echo; done; } > age-encryption.LICENSE)
built="$(cd "$work" && sha256sum age-encryption.js | cut -d' ' -f1)"
if [ "${1:-}" = "--check" ]; then
  want="$(cut -d' ' -f1 "$OUT/age-encryption.js.sha256")"
  [ "$built" = "$want" ] || { echo "rebuilt age-encryption.js is $built, the committed one $want" >&2; exit 1; }
  echo "age-encryption.js rebuilds byte for byte ($built)"
  exit 0
fi
mkdir -p "$OUT"
cp "$work/age-encryption.js" "$work/age-encryption.LICENSE" "$OUT/"
(cd "$OUT" && sha256sum age-encryption.js > age-encryption.js.sha256)
echo "wrote $OUT/age-encryption.js ($built)"
