#!/usr/bin/env bash
# Builds the web client into web-client/dist/, which the server then serves at `/`.
# Installs the toolchain first if needed (scripts/setup-wasm-toolchain.sh).
#
#   scripts/build-web-client.sh            release build (wasm-opt -Oz), gzip copies, sizes
#   scripts/build-web-client.sh --dev      unoptimised, faster
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WEB="$REPO_ROOT/web-client"

"$REPO_ROOT/scripts/setup-wasm-toolchain.sh"
# shellcheck disable=SC1091
. "$WEB/.toolchain.env"

cd "$WEB"
mode=(--release)
[ "${1:-}" = "--dev" ] && mode=()
echo "[build-web-client] trunk build ${mode[*]} (route: $JABBERWOCK_WASM_ROUTE)" >&2
trunk build "${mode[@]}"

# The server serves foo.gz in place of foo to browsers that accept gzip.
find dist -type f \( -name '*.wasm' -o -name '*.js' -o -name '*.css' -o -name '*.html' \) ! -name '*.gz' -exec gzip -9 -k -f {} \;

wasm="$(ls dist/*.wasm | head -n1)"
raw=$(stat -c %s "$wasm")
gz=$(stat -c %s "$wasm.gz")
printf '[build-web-client] %s: %d KiB raw, %d KiB gzipped\n' "$(basename "$wasm")" $((raw / 1024)) $((gz / 1024)) >&2
