#!/usr/bin/env bash
# Builds the web client into web-client/dist/, which the server then serves at `/` in
# place of the client embedded in its binary. Installs the toolchain first if needed
# (scripts/setup-wasm-toolchain.sh).
#
#   scripts/build-web-client.sh            release build (wasm-opt -Oz), gzip copies, sizes
#   scripts/build-web-client.sh --dev      unoptimised, faster
#   scripts/build-web-client.sh --publish  release build, copied to static/web-client/ with
#                                          a stamp of the sources it came from
#                                          (static/web-client.sources): the build the
#                                          server embeds (commit both with the sources)
#   scripts/build-web-client.sh --check-published
#                                          exits non-zero unless static/web-client/ was
#                                          published from the sources as they are (no
#                                          toolchain needed)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WEB="$REPO_ROOT/web-client"
PUBLISHED="$REPO_ROOT/static/web-client"
# The digest of the sources the published build came from.
STAMP="$REPO_ROOT/static/web-client.sources"

# A digest of the client's tracked sources (everything under web-client/ that can change
# the build, and this script with its build flags), so that CI can tell whether the
# published build is stale.
sources_digest() {
    cd "$REPO_ROOT"
    git ls-files -z -- web-client scripts/build-web-client.sh ':!:*.md' ':!:web-client/.gitignore' ':!:web-client/rustfmt.toml' \
        | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}

if [ "${1:-}" = "--check-published" ]; then
    want="$(sources_digest)"
    have="$(sed -n 's/^sources: //p' "$STAMP" 2>/dev/null || true)"
    if [ "$want" != "$have" ]; then
        echo "[build-web-client] static/web-client was not published from the current web-client sources" >&2
        echo "[build-web-client] (sources $want, published from ${have:-nothing}): run scripts/build-web-client.sh --publish and commit static/web-client" >&2
        exit 1
    fi
    echo "[build-web-client] static/web-client matches the web-client sources ($want)" >&2
    exit 0
fi

"$REPO_ROOT/scripts/setup-wasm-toolchain.sh"
# shellcheck disable=SC1091
. "$WEB/.toolchain.env"

cd "$WEB"
mode=(--release)
[ "${1:-}" = "--dev" ] && mode=()
echo "[build-web-client] trunk build ${mode[*]} (route: $JABBERWOCK_WASM_ROUTE)" >&2
# Panic locations in the wasm name crates by paths relative to these roots, not by where
# this machine keeps them. `erase_components` makes Leptos type-erase each component's
# view: one copy of the rendering code instead of one per view type, 10 % less wasm
# (603 KiB gzipped without it, 542 with it, at the same sources).
export RUSTFLAGS="${RUSTFLAGS:-} --cfg erase_components --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo --remap-path-prefix=$REPO_ROOT=/jabberwock"
trunk build "${mode[@]}"

# The server serves foo.gz in place of foo to browsers that accept gzip (-n: no name or
# time in the header, so the same file gives the same copy).
find dist -type f \( -name '*.wasm' -o -name '*.js' -o -name '*.css' -o -name '*.html' \) ! -name '*.gz' -exec gzip -9 -n -k -f {} \;

# The page's WebAssembly and the session worker's (see web-client/README.md, "Size").
# The size budget is the page's, compressed as it is sent.
budget_kib=600
for wasm in dist/*.wasm; do
    raw=$(stat -c %s "$wasm")
    gz=$(stat -c %s "$wasm.gz")
    printf '[build-web-client] %s: %d KiB raw, %d KiB gzipped\n' "$(basename "$wasm")" $((raw / 1024)) $((gz / 1024)) >&2
    case "$(basename "$wasm")" in
        jabberwock-web-client-*)
            if [ "$gz" -gt $((budget_kib * 1024)) ]; then
                echo "[build-web-client] the page's gzipped .wasm is over its budget of $budget_kib KiB" >&2
                exit 1
            fi
            ;;
    esac
done

if [ "${1:-}" = "--publish" ]; then
    rm -rf "$PUBLISHED"
    mkdir -p "$PUBLISHED"
    cp -R dist/. "$PUBLISHED/"
    rm -rf "$PUBLISHED/.stage"
    {
        echo "# The web client the server embeds, built by scripts/build-web-client.sh --publish."
        echo "# CI checks that it was built from the web-client sources as committed."
        echo "sources: $(sources_digest)"
    } > "$STAMP"
    echo "[build-web-client] published to static/web-client" >&2
fi
