#!/usr/bin/env bash
# Runs the JavaScript interop suites against a real `jabberwock` server:
#   node_suite.mjs     @xmpp/client over WebSocket, strophe.js over BOSH, slixmpp over STARTTLS
#   converse_suite.mjs Converse.js in headless Chromium over WebSocket, BOSH and XEP-0156
#
# Builds nothing: the server binary is $JABBERWOCK_BIN (default target/debug/jabberwock).
# The npm packages and Chromium come from scripts/setup-js-env.sh, slixmpp's virtualenv from
# scripts/setup-test-env.sh. The server gets a fresh data directory and free loopback ports,
# and is stopped on exit; its log is printed when anything fails. Set JABBERWOCK_LOG (e.g.
# debug) for a more verbose server log and INTEROP_DEBUG=1 for the clients' traffic.
# Screenshots of the Converse runs are left in tests/interop/js/artifacts/.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/../../.." && pwd)"
BIN="${JABBERWOCK_BIN:-$REPO_ROOT/target/debug/jabberwock}"
case "$BIN" in /*) ;; *) BIN="$REPO_ROOT/$BIN" ;; esac
PY="$REPO_ROOT/tests/interop/.venv/bin/python"
DOMAIN="localhost"

say() { printf 'js-interop: %s\n' "$*" >&2; }

[ -x "$BIN" ] || { say "server binary not found: $BIN (build it, or set JABBERWOCK_BIN)"; exit 2; }
command -v node >/dev/null 2>&1 || { say "node not found: install Node.js 20 or later"; exit 2; }
[ -d "$HERE/node_modules/@xmpp/client" ] && [ -d "$HERE/node_modules/converse.js/dist" ] \
    || { say "npm packages missing in tests/interop/js: run scripts/setup-js-env.sh"; exit 2; }
[ -x "$PY" ] || { say "no virtualenv at tests/interop/.venv: run scripts/setup-test-env.sh"; exit 2; }
[ -x "${CHROMIUM_BIN:-/usr/bin/chromium}" ] || { say "no Chromium at ${CHROMIUM_BIN:-/usr/bin/chromium}: run scripts/setup-js-env.sh"; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/jabberwock-js-interop.XXXXXX")"
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

# Three free loopback ports. The kernel hands out a port per bound socket; they are released
# just before the server binds them, which is a small window nothing else here races for.
read -r C2S_PORT HTTP_PORT HTTPS_PORT < <(node -e '
const net = require("net");
const servers = [0, 1, 2].map(() => net.createServer());
Promise.all(servers.map((s) => new Promise((ok) => s.listen(0, "127.0.0.1", ok)))).then(() => {
    console.log(servers.map((s) => s.address().port).join(" "));
    servers.forEach((s) => s.close());
});
') || true
case "$C2S_PORT$HTTP_PORT$HTTPS_PORT" in ''|*[!0-9]*) say "could not pick free ports"; exit 1 ;; esac

CONFIG="$WORK/jabberwock.toml"
mkdir -p "$WORK/data"
cat >"$CONFIG" <<TOML
domains = ["$DOMAIN"]
data_dir = "$WORK/data"
allow_registration = true
log = "${JABBERWOCK_LOG:-info}"

[listen]
c2s = ["127.0.0.1:$C2S_PORT"]
c2s_direct_tls = []

# The test page is served from another loopback port; loopback origins are always allowed.
[http]
listen = ["127.0.0.1:$HTTP_PORT"]
listen_tls = ["127.0.0.1:$HTTPS_PORT"]
allowed_origins = []
TOML

"$BIN" --config "$CONFIG" check-config >"$WORK/check-config.log" 2>&1 || {
    say "check-config rejected the generated configuration:"
    cat "$WORK/check-config.log" >&2
    exit 1
}

# alice: @xmpp/client (WebSocket); bob: strophe.js (BOSH); carol: slixmpp (TCP);
# dave: Converse.js (browser).
for user in alice bob carol dave; do
    password="$user-$RANDOM-$RANDOM"
    "$BIN" --config "$CONFIG" adduser "$user@$DOMAIN" "$password" >"$WORK/adduser.log" 2>&1 || {
        say "jabberwock adduser $user@$DOMAIN failed:"
        cat "$WORK/adduser.log" >&2
        exit 1
    }
    upper="$(printf '%s' "$user" | tr '[:lower:]' '[:upper:]')"
    export "${upper}_JID=$user@$DOMAIN" "${upper}_PASSWORD=$password"
done

NO_COLOR=1 "$BIN" --config "$CONFIG" serve >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!

# Wait until every listener accepts connections (or the server dies).
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
deadline=$((SECONDS + 30))
until port_open "$C2S_PORT" && port_open "$HTTP_PORT" && port_open "$HTTPS_PORT"; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        wait "$SERVER_PID" && rc=0 || rc=$?
        say "server exited (status $rc) before listening"
        exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        say "server did not listen on 127.0.0.1:$C2S_PORT, :$HTTP_PORT and :$HTTPS_PORT within 30 s"
        exit 1
    fi
    sleep 0.1
done
say "server pid $SERVER_PID: c2s 127.0.0.1:$C2S_PORT, http :$HTTP_PORT, https :$HTTPS_PORT"

# The self-signed development certificate the server generated for the domain.
CERT_FILE="$(find "$WORK/data" -name "$DOMAIN.crt" -print -quit)"
[ -n "$CERT_FILE" ] || { say "the server generated no certificate for $DOMAIN under $WORK/data"; exit 1; }

export XMPP_DOMAIN="$DOMAIN" JW_HOST=127.0.0.1 JW_C2S_PORT="$C2S_PORT" JW_HTTP_PORT="$HTTP_PORT" \
    JW_HTTPS_PORT="$HTTPS_PORT" JW_CERT_FILE="$CERT_FILE" INTEROP_PYTHON="$PY"

# Runs one suite with a hard time limit; adds its counts to the totals from its closing
# "N passed, N failed" line (a suite that died without one counts as one failure).
TOTAL_PASSED=0
TOTAL_FAILED=0
overall_rc=0
run_suite() {
    local limit="$1" suite="$2" out="$WORK/$2.out" rc=0
    say "running $suite"
    (cd "$HERE" && timeout --kill-after=5 "$limit" node "$suite") 2>&1 | tee "$out" || rc=${PIPESTATUS[0]}
    [ "$rc" -ne 124 ] || say "$suite was killed after $limit s"
    local counts
    counts="$(sed -n 's/^[a-z_]*: \([0-9]*\) passed, \([0-9]*\) failed.*/\1 \2/p' "$out" | tail -n 1)"
    if [ -n "$counts" ]; then
        TOTAL_PASSED=$((TOTAL_PASSED + ${counts% *}))
        TOTAL_FAILED=$((TOTAL_FAILED + ${counts#* }))
        if [ "$rc" -ne 0 ] && [ "${counts#* }" -eq 0 ]; then TOTAL_FAILED=$((TOTAL_FAILED + 1)); fi
    else
        TOTAL_FAILED=$((TOTAL_FAILED + 1))
    fi
    [ "$rc" -eq 0 ] || overall_rc=1
}

run_suite 90 node_suite.mjs
run_suite 200 converse_suite.mjs

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    say "the server died during the suites"
    overall_rc=1
    TOTAL_FAILED=$((TOTAL_FAILED + 1))
fi
if grep -q "panicked at" "$SERVER_LOG"; then
    say "the server panicked during the suites"
    overall_rc=1
    TOTAL_FAILED=$((TOTAL_FAILED + 1))
fi

echo "js_interop: $TOTAL_PASSED passed, $TOTAL_FAILED failed"
exit "$overall_rc"
