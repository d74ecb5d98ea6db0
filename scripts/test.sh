#!/usr/bin/env bash
# The project's test command: installs the test prerequisites, builds the server, runs
# every Rust test, the PostgreSQL backend's tests and storage-heavy suites again on a
# private PostgreSQL server, each fuzz target for 30 s, then the interop suites against the real binary: slixmpp over TCP,
# federation with a real Prosody (from one node and from two cluster nodes) and a real ejabberd, @xmpp/client and strophe.js over WebSocket and BOSH, Converse.js in headless Chromium,
# and the project's own web client end to end in Chromium. Stops at the first failing
# stage and exits non-zero; prints a summary of the stages either way.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
export JABBERWOCK_BIN="${JABBERWOCK_BIN:-$TARGET_DIR/debug/jabberwock}"

STAGES=()
RESULTS=()
TIMES=()
CURRENT=""

summary() {
    local rc=$?
    if [ -n "$CURRENT" ]; then
        STAGES+=("$CURRENT")
        RESULTS+=("FAILED")
        TIMES+=("-")
    fi
    echo
    echo "==== scripts/test.sh summary ===="
    local i
    for i in "${!STAGES[@]}"; do
        printf '  %-7s %-32s %s\n' "${RESULTS[$i]}" "${STAGES[$i]}" "${TIMES[$i]}"
    done
    if [ "$rc" -eq 0 ]; then
        echo "all stages passed"
    else
        echo "FAILED (exit status $rc)"
    fi
    exit "$rc"
}
trap summary EXIT

# stage NAME COMMAND... — runs one stage; a failure ends the script (set -e).
stage() {
    local name="$1"; shift
    local start=$SECONDS
    echo
    echo "==== $name ===="
    CURRENT="$name"
    "$@"
    CURRENT=""
    STAGES+=("$name")
    RESULTS+=("ok")
    TIMES+=("$((SECONDS - start)) s")
}

stage "setup test environment" scripts/setup-test-env.sh
stage "setup JS environment (npm, Chromium)" scripts/setup-js-env.sh
stage "web client: the embedded build matches its sources" scripts/build-web-client.sh --check-published
stage "build the web client (wasm toolchain, trunk)" scripts/build-web-client.sh
stage "cargo build -p jabberwock" cargo build -p jabberwock
stage "cargo test --workspace" cargo test --workspace
stage "PostgreSQL: storage conformance, migrate-storage, suites on PostgreSQL" scripts/postgres-tests.sh
stage "cluster: three nodes on PostgreSQL and Redis" scripts/cluster-tests.sh
stage "fuzz targets, 30 s each (cargo-fuzz)" scripts/fuzz.sh 30
stage "slixmpp interop suite" tests/interop/run.sh
stage "federation with Prosody (slixmpp)" tests/interop/federation/run.sh
stage "federation with Prosody from two cluster nodes" tests/interop/federation/run_cluster.sh
stage "federation with ejabberd (slixmpp)" tests/interop/federation/run_ejabberd.sh
stage "JS interop (@xmpp/client, strophe.js, Converse.js)" tests/interop/js/run.sh
stage "web client end to end (Chromium)" env E2E_SKIP_BUILD=1 tests/e2e/run.sh
