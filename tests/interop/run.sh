#!/usr/bin/env bash
# Runs the slixmpp interop suite against a real `jabberwock` server.
#
# Builds nothing: the server binary is $JABBERWOCK_BIN (default target/debug/jabberwock).
# The suite's virtualenv comes from scripts/setup-test-env.sh. The server gets a fresh
# data directory and free loopback ports, and is stopped on exit; its log is printed
# when anything fails. Set JABBERWOCK_LOG (e.g. debug) for a more verbose server log and
# INTEROP_DEBUG=1 for slixmpp's debug log.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${JABBERWOCK_BIN:-$REPO_ROOT/target/debug/jabberwock}"
case "$BIN" in /*) ;; *) BIN="$REPO_ROOT/$BIN" ;; esac
PY="$REPO_ROOT/tests/interop/.venv/bin/python"
SUITE="$REPO_ROOT/tests/interop/slixmpp_suite.py"
DOMAIN="localhost"

say() { printf 'interop: %s\n' "$*" >&2; }

[ -x "$BIN" ] || { say "server binary not found: $BIN (build it, or set JABBERWOCK_BIN)"; exit 2; }
[ -x "$PY" ] || { say "no virtualenv at tests/interop/.venv: run scripts/setup-test-env.sh"; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/jabberwock-interop.XXXXXX")"
SERVER_LOG="$WORK/server.log"
SERVER_PID=""

cleanup() {
    local rc=$?
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        local i
        for i in $(seq 1 100); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            say "server (pid $SERVER_PID) ignored SIGTERM for 10 s; killing it"
            kill -KILL "$SERVER_PID" 2>/dev/null || true
        fi
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ "$rc" -ne 0 ] && [ -f "$SERVER_LOG" ]; then
        say "---- server log ($SERVER_LOG) ----"
        cat "$SERVER_LOG" >&2
        say "---- end of server log ----"
    fi
    if [ "$rc" -eq 0 ]; then
        rm -rf "$WORK"
    else
        say "kept $WORK for inspection"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Two free loopback ports. The kernel hands out a port per bound socket; they are released
# just before the server binds them, which is a small window nothing else here races for.
read -r C2S_PORT TLS_PORT < <("$PY" - <<'PYEOF'
import socket
socks = []
for _ in range(2):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PYEOF
) || true
case "$C2S_PORT$TLS_PORT" in ''|*[!0-9]*) say "could not pick free ports"; exit 1 ;; esac

CONFIG="$WORK/jabberwock.toml"
mkdir -p "$WORK/data"
cat >"$CONFIG" <<TOML
domains = ["$DOMAIN"]
data_dir = "$WORK/data"
allow_registration = true
log = "${JABBERWOCK_LOG:-info}"

[listen]
c2s = ["127.0.0.1:$C2S_PORT"]
c2s_direct_tls = ["127.0.0.1:$TLS_PORT"]

# The suite speaks plain XMPP only: no HTTP listeners (their defaults are public ports).
[http]
listen = []
listen_tls = []
TOML

"$BIN" --config "$CONFIG" check-config >"$WORK/check-config.log" 2>&1 || {
    say "check-config rejected the generated configuration:"
    cat "$WORK/check-config.log" >&2
    exit 1
}

# alice is created with the admin CLI; bob registers in-band during the suite.
ALICE_PASSWORD="alice-$RANDOM-$RANDOM"
"$BIN" --config "$CONFIG" adduser "alice@$DOMAIN" "$ALICE_PASSWORD" >"$WORK/adduser.log" 2>&1 || {
    say "jabberwock adduser failed:"
    cat "$WORK/adduser.log" >&2
    exit 1
}

NO_COLOR=1 "$BIN" --config "$CONFIG" serve >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!

# Wait until both listeners accept connections (or the server dies).
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
deadline=$((SECONDS + 30))
until port_open "$C2S_PORT" && port_open "$TLS_PORT"; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        wait "$SERVER_PID" && rc=0 || rc=$?
        say "server exited (status $rc) before listening"
        exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        say "server did not listen on 127.0.0.1:$C2S_PORT and :$TLS_PORT within 30 s"
        exit 1
    fi
    sleep 0.1
done
say "server pid $SERVER_PID: c2s 127.0.0.1:$C2S_PORT, direct TLS 127.0.0.1:$TLS_PORT"

suite_args=(
    --host 127.0.0.1 --port "$C2S_PORT" --tls-port "$TLS_PORT" --domain "$DOMAIN"
    --alice-password "$ALICE_PASSWORD"
)
[ -n "${INTEROP_DEBUG:-}" ] && suite_args+=(--debug)

suite_rc=0
timeout --kill-after=5 90 "$PY" "$SUITE" "${suite_args[@]}" || suite_rc=$?
if [ "$suite_rc" -eq 124 ]; then
    say "the suite was killed after 90 s"
fi

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    say "the server died during the suite"
    [ "$suite_rc" -ne 0 ] || suite_rc=1
fi
if grep -q "panicked at" "$SERVER_LOG"; then
    say "the server panicked during the suite"
    [ "$suite_rc" -ne 0 ] || suite_rc=1
fi

exit "$suite_rc"
