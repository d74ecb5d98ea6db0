#!/usr/bin/env bash
# Installs what building the web client needs, and skips whatever is already in place:
#
#   * the wasm32-unknown-unknown target: rustup first (with a time limit, since it needs
#     the toolchain download server); if that fails, Debian's rustc-web/cargo-web/rust-web-src
#     packages, with the standard library built from source (build-std);
#   * trunk 0.21.14 and the wasm-bindgen-cli that equals web-client/Cargo.lock's wasm-bindgen,
#     with `cargo install`;
#   * wasm-opt from npm binaryen (web-client/package.json and its lockfile, `npm ci`).
#
# It writes web-client/.toolchain.env, which scripts/build-web-client.sh sources: the PATH
# and variables that select the route that worked.
#
# Environment:
#   JABBERWOCK_WASM_ROUTE=rustup|debian   force one route (default: rustup, then debian)
#   RUSTUP_TIMEOUT=120                    seconds allowed for `rustup target add`
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WEB="$REPO_ROOT/web-client"
ENV_FILE="$WEB/.toolchain.env"
TRUNK_VERSION="0.21.14"
BINARYEN_VERSION="132"
TARGET="wasm32-unknown-unknown"
ROUTE="${JABBERWOCK_WASM_ROUTE:-}"

log() { printf '[setup-wasm] %s\n' "$*" >&2; }
die() { printf '[setup-wasm] error: %s\n' "$*" >&2; exit 1; }

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

# The wasm-bindgen version the web client is locked to; the CLI must match it exactly.
BINDGEN_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$WEB/Cargo.lock")"
[ -n "$BINDGEN_VERSION" ] || die "no wasm-bindgen in $WEB/Cargo.lock"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root for: $*"; fi
}

# ---- route 1: rustup ----
rustup_route() {
    command -v rustup >/dev/null || { log "rustup not found"; return 1; }
    if rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
        log "rustup: $TARGET already installed"
        return 0
    fi
    log "rustup: adding $TARGET (up to ${RUSTUP_TIMEOUT:-120} s)"
    timeout "${RUSTUP_TIMEOUT:-120}" rustup target add "$TARGET" >&2 || { log "rustup target add failed"; return 1; }
}

# ---- route 2: Debian's rustc-web, std built from source ----
DEBIAN_BIN="$WEB/.debian-toolchain/bin"
debian_route() {
    command -v apt-get >/dev/null || { log "apt-get not found"; return 1; }
    # rust-web-llvm provides /usr/bin/rust-lld, the wasm linker.
    local want=(rustc-web cargo-web rust-web-src rust-web-llvm)
    if [ "$(dpkg-query -W -f='${Status}\n' "${want[@]}" 2>/dev/null | grep -c "install ok installed")" -ne "${#want[@]}" ]; then
        log "debian: installing ${want[*]}"
        as_root apt-get install -y --no-install-recommends "${want[@]}" >&2 || {
            as_root apt-get update >&2 && as_root apt-get install -y --no-install-recommends "${want[@]}" >&2
        } || return 1
    fi
    # /usr/bin/rust-lld points into an lld-NN package that rustc-web does not pull in.
    if [ -L /usr/bin/rust-lld ] && [ ! -e /usr/bin/rust-lld ]; then
        local lld_pkg
        lld_pkg="$(readlink /usr/bin/rust-lld | grep -oE 'lld-[0-9]+' | head -n1 || true)"
        [ -n "$lld_pkg" ] || lld_pkg="$(readlink /usr/bin/rust-lld | grep -oE 'llvm-[0-9]+' | sed 's/llvm/lld/' | head -n1 || true)"
        [ -n "$lld_pkg" ] || { log "cannot tell which lld package /usr/bin/rust-lld needs"; return 1; }
        log "debian: installing $lld_pkg for rust-lld"
        as_root apt-get install -y --no-install-recommends "$lld_pkg" >&2 || return 1
    fi
    [ -x /usr/bin/rust-lld ] || { log "/usr/bin/rust-lld is missing or dangling"; return 1; }
    [ -x /usr/bin/cargo ] && [ -x /usr/bin/rustc ] || { log "Debian's cargo/rustc are missing"; return 1; }
    # Debian's cargo and rustc first in PATH for this build only (rustup's proxies stay
    # untouched for everything else).
    mkdir -p "$DEBIAN_BIN"
    for tool in cargo rustc rustdoc; do
        [ -x "/usr/bin/$tool" ] && ln -sf "/usr/bin/$tool" "$DEBIAN_BIN/$tool"
    done
    log "debian: $(/usr/bin/rustc --version)"
}

if [ -z "$ROUTE" ]; then
    if rustup_route; then ROUTE=rustup; elif debian_route; then ROUTE=debian; else die "neither rustup nor Debian could provide $TARGET"; fi
elif [ "$ROUTE" = rustup ]; then
    rustup_route || die "the rustup route failed"
elif [ "$ROUTE" = debian ]; then
    debian_route || die "the Debian route failed"
else
    die "JABBERWOCK_WASM_ROUTE must be rustup or debian"
fi

{
    echo "# Written by scripts/setup-wasm-toolchain.sh (route: $ROUTE)"
    echo "export PATH=\"$WEB/node_modules/.bin:${CARGO_HOME:-$HOME/.cargo}/bin:\$PATH\""
    if [ "$ROUTE" = debian ]; then
        echo "export PATH=\"$DEBIAN_BIN:\$PATH\""
        echo "export RUSTUP_TOOLCHAIN="
        # build-std is unstable; Debian's compiler and std source are the same version.
        echo "export RUSTC_BOOTSTRAP=1"
        echo "export CARGO_UNSTABLE_BUILD_STD=std,panic_abort"
    fi
    echo "export JABBERWOCK_WASM_ROUTE=$ROUTE"
} >"$ENV_FILE"
# shellcheck disable=SC1090
. "$ENV_FILE"

# ---- tools ----
have_version() { # COMMAND EXPECTED-SUBSTRING
    command -v "$1" >/dev/null && "$1" --version 2>/dev/null | grep -qF "$2"
}

if have_version trunk "trunk $TRUNK_VERSION"; then
    log "trunk $TRUNK_VERSION present"
else
    log "installing trunk $TRUNK_VERSION (a few minutes the first time)"
    cargo install trunk --version "$TRUNK_VERSION" --locked >&2
fi

if have_version wasm-bindgen "wasm-bindgen $BINDGEN_VERSION"; then
    log "wasm-bindgen $BINDGEN_VERSION present"
else
    log "installing wasm-bindgen-cli $BINDGEN_VERSION (a few minutes the first time)"
    # Not --locked: its lockfile names crate versions the registry may not carry.
    cargo install wasm-bindgen-cli --version "$BINDGEN_VERSION" >&2
fi

command -v npm >/dev/null || die "npm is needed for wasm-opt (apt-get install npm)"
if [ -x "$WEB/node_modules/.bin/wasm-opt" ] && "$WEB/node_modules/.bin/wasm-opt" --version 2>/dev/null | grep -q "version_$BINARYEN_VERSION"; then
    log "wasm-opt $BINARYEN_VERSION present"
else
    log "installing binaryen $BINARYEN_VERSION from npm"
    (cd "$WEB" && npm ci --no-audit --no-fund >&2)
fi

log "ready (route: $ROUTE)"
