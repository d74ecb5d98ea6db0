#!/usr/bin/env bash
# End-to-end tests of the web client: the real server serves the built client, and
# headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core) plays two
# users through sign-in, subscriptions and chat, then three through a group chat.
#
#   tests/e2e/run.sh           the end-to-end suites (WebSocket, then BOSH fallback)
#   tests/e2e/run.sh --perf    the rendering figures instead (perf.mjs): a roster of
#                              PERF_CONTACTS (2000), a conversation of PERF_MESSAGES
#                              (10000) and a room of PERF_ROOM_MESSAGES (3000) and 200
#                              occupants, created through the server
#
#   JABBERWOCK_BIN     the server binary (default target/debug/jabberwock)
#   E2E_SKIP_BUILD=1   use web-client/dist as it is (default: scripts/build-web-client.sh,
#                      which is incremental)
#   E2E_DEBUG=1        print the pages' console (protocol traffic included)
#   E2E_ONLY=websocket|bosh   run one of the two transports only
#   E2E_SUITE=web|group|actions|shared   run one suite only: web_client.mjs (two users and
#                              a stranger: sign-in, contacts, chat), group_chat.mjs (three
#                              users in a room), message_actions.mjs (two users) or
#                              shared_tabs.mjs (one user's tabs sharing a session)
#                              (what they share, the browser, profiles that reach only
#                              loopback and the step runner, is lib.mjs)
#   JABBERWOCK_LOG     the server's log filter (default info)
#
# Screenshots go to tests/e2e/artifacts/. Exits non-zero when anything fails, printing
# the server log.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$REPO_ROOT/tests/e2e"
BIN="${JABBERWOCK_BIN:-$REPO_ROOT/target/debug/jabberwock}"
case "$BIN" in /*) ;; *) BIN="$REPO_ROOT/$BIN" ;; esac
DIST="$REPO_ROOT/web-client/dist"
CHROMIUM_BIN="${CHROMIUM_BIN:-/usr/bin/chromium}"
DOMAIN="localhost"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

say() { printf 'e2e: %s\n' "$*" >&2; }

PERF=""
[ "${1:-}" = "--perf" ] && PERF=1

[ -x "$BIN" ] || { say "server binary not found: $BIN (build it, or set JABBERWOCK_BIN)"; exit 2; }
[ -x "$CHROMIUM_BIN" ] || { say "no Chromium at $CHROMIUM_BIN (apt-get install chromium)"; exit 2; }
command -v node >/dev/null || { say "node is needed (apt-get install nodejs npm)"; exit 2; }

if [ -z "${E2E_SKIP_BUILD:-}" ]; then
    "$REPO_ROOT/scripts/build-web-client.sh"
fi
[ -f "$DIST/index.html" ] || { say "no built client in $DIST (run scripts/build-web-client.sh)"; exit 2; }

if ! (cd "$HERE" && node -e 'process.exit(require("playwright-core/package.json").version === require("./package.json").dependencies["playwright-core"] ? 0 : 1)') 2>/dev/null; then
    say "installing playwright-core (no browser download)"
    (cd "$HERE" && npm ci --no-audit --no-fund >&2)
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/jabberwock-e2e.XXXXXX")"
SERVER_LOG="$WORK/server.log"
# The suite restarts the server once (to test reconnecting) and writes the new pid here.
PID_FILE="$WORK/server.pid"
SERVER_PID=""

cleanup() {
    local rc=$?
    [ -s "$PID_FILE" ] && SERVER_PID="$(cat "$PID_FILE")"
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        local i
        for i in $(seq 1 100); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$SERVER_PID" 2>/dev/null && kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ "$rc" -ne 0 ] && [ -f "$SERVER_LOG" ]; then
        say "---- server log ($SERVER_LOG) ----"
        tail -n 200 "$SERVER_LOG" >&2
        say "---- end of server log ----"
        say "kept $WORK for inspection"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Free loopback ports, bound by the kernel and released at once: one for the server, and
# one that stays closed (the "blocked WebSocket" of the BOSH run).
free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
HTTP_PORT="$(free_port)"
DEAD_PORT="$(free_port)"
case "$HTTP_PORT$DEAD_PORT" in ''|*[!0-9]*) say "could not pick free ports"; exit 1 ;; esac
[ "$HTTP_PORT" != "$DEAD_PORT" ] || DEAD_PORT=1

CONFIG="$WORK/jabberwock.toml"
mkdir -p "$WORK/data"
cat >"$CONFIG" <<TOML
domains = ["$DOMAIN"]
data_dir = "$WORK/data"
log = "${JABBERWOCK_LOG:-info}"
# The sign-in page's "Create an account".
allow_registration = true

# Browsers only: no native XMPP listeners.
[listen]
c2s = []
c2s_direct_tls = []

[http]
listen = ["127.0.0.1:$HTTP_PORT"]
listen_tls = []
web_root = "$DIST"
# The widget story embeds the client in a page served from 127.0.0.1 (another origin).
embed_origins = ["http://127.0.0.1:*"]

[s2s]
enabled = false

# The message actions story uploads an image, and a file over this limit that the client
# refuses before asking for a slot.
[upload]
max_file_bytes = 10485760
TOML
# The figures need a roster larger than limits.max_roster_items allows by default.
# The figures' busy room: 200 occupants, 199 of them sessions of one account from one
# address, and a writer of thousands of messages.
[ -z "$PERF" ] || cat >>"$CONFIG" <<TOML

[muc]
max_messages_per_sec = 1000000

[limits]
max_roster_items = 5000
max_resources = 250
max_connections_per_ip = 1000
TOML

"$BIN" --config "$CONFIG" check-config >"$WORK/check-config.log" 2>&1 || {
    say "check-config rejected the generated configuration:"
    cat "$WORK/check-config.log" >&2
    exit 1
}

# alice and bob for the WebSocket run, carol and dave for the BOSH run, with a stranger
# each (kim, lee); three more for each run's group chat story; two more for each run's
# message actions story, and three for its shared tabs story.
declare -A PASSWORDS
for user in alice bob kim carol dave lee erin frank grace heidi ivan judy mona nick olga pete uma vic yan wes xia zoe; do
    PASSWORDS[$user]="$user-$RANDOM-$RANDOM"
    "$BIN" --config "$CONFIG" adduser "$user@$DOMAIN" "${PASSWORDS[$user]}" >>"$WORK/adduser.log" 2>&1 || {
        say "jabberwock adduser $user failed:"
        cat "$WORK/adduser.log" >&2
        exit 1
    }
done

NO_COLOR=1 "$BIN" --config "$CONFIG" serve >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
echo "$SERVER_PID" >"$PID_FILE"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
deadline=$((SECONDS + 30))
until port_open "$HTTP_PORT"; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        say "server exited before listening"
        exit 1
    fi
    [ "$SECONDS" -lt "$deadline" ] || { say "server did not listen on 127.0.0.1:$HTTP_PORT within 30 s"; exit 1; }
    sleep 0.1
done
say "server pid $SERVER_PID at http://localhost:$HTTP_PORT/"

# The suites start from an empty artifacts directory; the figures only add perf.*.
[ -n "$PERF" ] || rm -rf "$HERE/artifacts"
mkdir -p "$HERE/artifacts"
suite() { # SCRIPT TRANSPORT USER-A USER-B [USER-C]
    (
        cd "$HERE"
        E2E_BASE_URL="http://localhost:$HTTP_PORT" E2E_DOMAIN="$DOMAIN" E2E_ARTIFACTS="$HERE/artifacts" \
            E2E_TRANSPORT="$2" E2E_DEAD_PORT="$DEAD_PORT" CHROMIUM_BIN="$CHROMIUM_BIN" \
            E2E_SERVER_BIN="$BIN" E2E_SERVER_CONFIG="$CONFIG" E2E_SERVER_LOG="$SERVER_LOG" E2E_SERVER_PIDFILE="$PID_FILE" \
            E2E_USER_A="$3" E2E_PASSWORD_A="${PASSWORDS[$3]}" E2E_USER_B="$4" E2E_PASSWORD_B="${PASSWORDS[$4]}" \
            E2E_USER_C="${5:-}" E2E_PASSWORD_C="${PASSWORDS[${5:-none}]:-}" \
            timeout --kill-after=5 180 node "$1"
    )
}
group_suite() { # TRANSPORT USER-A USER-B USER-C
    (
        cd "$HERE"
        E2E_BASE_URL="http://localhost:$HTTP_PORT" E2E_DOMAIN="$DOMAIN" E2E_ARTIFACTS="$HERE/artifacts" \
            E2E_TRANSPORT="$1" E2E_DEAD_PORT="$DEAD_PORT" CHROMIUM_BIN="$CHROMIUM_BIN" \
            E2E_USERS="$2,$3,$4" E2E_PASSWORDS="${PASSWORDS[$2]},${PASSWORDS[$3]},${PASSWORDS[$4]}" \
            timeout --kill-after=5 120 node group_chat.mjs
    )
}
# Whether E2E_SUITE (unset: every suite) asks for suite $1.
wanted() { [ -z "${E2E_SUITE:-}" ] || [ "$E2E_SUITE" = "$1" ]; }
suite_rc=0
if [ -n "$PERF" ]; then
    (
        cd "$HERE"
        E2E_BASE_URL="http://localhost:$HTTP_PORT" E2E_DOMAIN="$DOMAIN" E2E_ARTIFACTS="$HERE/artifacts" CHROMIUM_BIN="$CHROMIUM_BIN" \
            E2E_USER_A=alice E2E_PASSWORD_A="${PASSWORDS[alice]}" E2E_USER_B=bob E2E_PASSWORD_B="${PASSWORDS[bob]}" \
            node --experimental-websocket perf.mjs
    ) || suite_rc=$?
    exit "$suite_rc"
fi
if [ "${E2E_ONLY:-websocket}" = websocket ]; then
    say "---- over WebSocket ----"
    ! wanted web || suite web_client.mjs websocket alice bob kim || suite_rc=$?
    [ "$suite_rc" -ne 0 ] || ! wanted group || group_suite websocket erin frank grace || suite_rc=$?
    [ "$suite_rc" -ne 0 ] || ! wanted actions || suite message_actions.mjs websocket mona nick || suite_rc=$?
    [ "$suite_rc" -ne 0 ] || ! wanted shared || suite shared_tabs.mjs websocket uma vic yan || suite_rc=$?
fi
if [ "$suite_rc" -eq 0 ] && [ "${E2E_ONLY:-bosh}" = bosh ]; then
    say "---- WebSocket refused: automatic fallback to BOSH ----"
    ! wanted web || suite web_client.mjs bosh carol dave lee || suite_rc=$?
    [ "$suite_rc" -ne 0 ] || ! wanted group || group_suite bosh heidi ivan judy || suite_rc=$?
    [ "$suite_rc" -ne 0 ] || ! wanted actions || suite message_actions.mjs bosh olga pete || suite_rc=$?
    [ "$suite_rc" -ne 0 ] || ! wanted shared || suite shared_tabs.mjs bosh wes xia zoe || suite_rc=$?
fi
[ "$suite_rc" -ne 124 ] || say "a suite was killed after its time limit"

SERVER_PID="$(cat "$PID_FILE")"
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    say "the server died during the suite"
    [ "$suite_rc" -ne 0 ] || suite_rc=1
fi
if grep -q "panicked at" "$SERVER_LOG"; then
    say "the server panicked during the suite"
    [ "$suite_rc" -ne 0 ] || suite_rc=1
fi
exit "$suite_rc"
