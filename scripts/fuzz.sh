#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ and runs each one in turn for a bounded time, starting
# from its committed corpus (fuzz/corpus/<target>). Fails on the first crash, panic, leak
# or slow input; libFuzzer then names the input it saved under fuzz/artifacts/<target>/.
# Installs the nightly toolchain (rustup) and cargo-fuzz if they are missing.
#
#   scripts/fuzz.sh                    30 s per target (the CI stage)
#   scripts/fuzz.sh 600                10 minutes per target
#   scripts/fuzz.sh --update-corpus 600
#                                      the same, keeping what it finds in fuzz/corpus and
#                                      minimizing it afterwards (cargo fuzz cmin)
#
# Environment: FUZZ_TARGETS="jid sasl" runs only those targets.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARGO_FUZZ_VERSION="0.13.2"

log() { printf '[fuzz] %s\n' "$*" >&2; }
die() { printf '[fuzz] error: %s\n' "$*" >&2; exit 1; }

update_corpus=false
if [ "${1:-}" = "--update-corpus" ]; then
    update_corpus=true
    shift
fi
seconds="${1:-30}"
[[ "$seconds" =~ ^[0-9]+$ ]] || die "usage: scripts/fuzz.sh [--update-corpus] [SECONDS]"

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

# cargo-fuzz needs a nightly compiler for its coverage instrumentation.
if ! cargo +nightly --version >/dev/null 2>&1; then
    command -v rustup >/dev/null || die "no nightly toolchain, and no rustup to install one"
    log "installing the nightly toolchain"
    timeout "${RUSTUP_TIMEOUT:-300}" rustup toolchain install nightly --profile minimal >&2
fi
if cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
    log "cargo-fuzz $CARGO_FUZZ_VERSION present"
else
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked >&2
fi

cd "$REPO_ROOT/fuzz"
# Safe Rust needs no AddressSanitizer: what the targets look for are panics (overflow
# checks included) and broken invariants, and without ASan builds and runs are faster.
FLAGS=(--sanitizer none --debug-assertions)
targets="${FUZZ_TARGETS:-$(cargo +nightly fuzz list | tr '\n' ' ')}"
log "building: $targets"
cargo +nightly fuzz build "${FLAGS[@]}"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in $targets; do
    corpus="corpus/$target"
    # libFuzzer writes new inputs to the first directory: a scratch one unless the
    # corpus is to be updated.
    dirs=("$corpus")
    if ! $update_corpus; then
        mkdir -p "$scratch/$target"
        dirs=("$scratch/$target" "$corpus")
    fi
    log "$target: ${seconds} s from $(find "$corpus" -type f | wc -l) inputs"
    cargo +nightly fuzz run "${FLAGS[@]}" "$target" "${dirs[@]}" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
        2>"$scratch/$target.log" || {
        grep -A 4 -m 1 'panicked at' "$scratch/$target.log" >&2 || tail -n 40 "$scratch/$target.log" >&2
        die "$target failed: the input is in fuzz/artifacts/$target/"
    }
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$target.log" | grep -o '[0-9]*$')"
    log "$target: $runs runs, no crash"
    if $update_corpus; then
        cargo +nightly fuzz cmin "${FLAGS[@]}" "$target" >"$scratch/$target.cmin.log" 2>&1
        log "$target: corpus minimized to $(find "$corpus" -type f | wc -l) inputs"
    fi
done
