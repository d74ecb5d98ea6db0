#!/usr/bin/env bash
# HTTP file upload (XEP-0363) benchmark: starts a Jabberwock (the release build unless
# JABBERWOCK_BIN says otherwise) on loopback ports with a fresh data directory, then runs
# bench/upload.py: FILES files of SIZE_MB MB uploaded at once, then downloaded at once,
# with the server's RSS sampled. Needs the interop virtualenv (scripts/setup-test-env.sh).
#
#   cargo build --release -p jabberwock && bench/upload.sh            # 10 x 50 MB
#   FILES=1 SIZE_MB=50 bench/upload.sh                                # one 50 MB file
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export JABBERWOCK_BIN="${JABBERWOCK_BIN:-$REPO_ROOT/target/release/jabberwock}"
export JABBERWOCK_LOG="${JABBERWOCK_LOG:-warn}"
SUITE_NAME=upload-bench
# shellcheck source=../tests/interop/server.sh
. "$REPO_ROOT/tests/interop/server.sh"
PY="$REPO_ROOT/tests/interop/.venv/bin/python"
[ -x "$PY" ] || { say "no virtualenv at tests/interop/.venv: run scripts/setup-test-env.sh"; exit 2; }

jw_begin
read -r C2S_PORT HTTP_PORT < <(jw_free_ports 2)
jw_config <<TOML
[listen]
c2s = ["127.0.0.1:$C2S_PORT"]
c2s_direct_tls = []

[http]
listen = ["127.0.0.1:$HTTP_PORT"]
listen_tls = []
public_url = "http://127.0.0.1:$HTTP_PORT"

[s2s]
enabled = false

[upload]
quota_bytes_per_day = 107374182400
quota_bytes = 107374182400
TOML
PASSWORD="bench-$RANDOM-$RANDOM"
jw_adduser bench "$PASSWORD"
jw_serve "$C2S_PORT" "$HTTP_PORT"
"$PY" "$REPO_ROOT/bench/upload.py" --port "$C2S_PORT" --jid "bench@$DOMAIN/upload" --password "$PASSWORD" \
    --pid "$SERVER_PID" --files "${FILES:-10}" --size-mb "${SIZE_MB:-50}"
