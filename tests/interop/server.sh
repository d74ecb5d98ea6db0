# Starts a real `jabberwock` for an interop suite (sourced, not run).
#
# The caller sets SUITE_NAME (for messages) and may set JABBERWOCK_BIN (default
# target/debug/jabberwock), JABBERWOCK_LOG, DOMAIN (default localhost), JW_HOST (the
# loopback address the listeners use, default 127.0.0.1), JW_DATA_DIR (the server's
# data_dir, default $WORK/data, for a second server) and a jw_before_cleanup function
# (run first on exit). The work directory is removed after a success unless KEEP_WORK is
# set. Provides:
#   jw_begin                      a fresh WORK dir, SERVER_LOG, and the exit trap that stops
#                                 the server, prints its log on failure and cleans up
#   jw_free_ports N               N free loopback ports, space-separated
#   jw_config <<TOML              writes the config: the common keys plus the TOML given
#   jw_adduser USER PASSWORD      creates USER@$DOMAIN with the admin CLI
#   jw_serve PORT...              starts the server, waits until every PORT accepts
#   jw_stop                       stops it (SIGTERM, then SIGKILL after 10 s)
#   jw_check_server               fails if the server died or panicked
# shellcheck shell=bash

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${JABBERWOCK_BIN:-$REPO_ROOT/target/debug/jabberwock}"
case "$BIN" in /*) ;; *) BIN="$REPO_ROOT/$BIN" ;; esac
DOMAIN="${DOMAIN:-localhost}"
JW_HOST="${JW_HOST:-127.0.0.1}"
SERVER_PID=""

say() { printf '%s: %s\n' "${SUITE_NAME:-interop}" "$*" >&2; }

jw_stop() {
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
    SERVER_PID=""
}

jw_cleanup() {
    local rc=$?
    if declare -F jw_before_cleanup >/dev/null; then
        jw_before_cleanup "$rc" || true
    fi
    jw_stop
    if [ "$rc" -ne 0 ] && [ -f "$SERVER_LOG" ]; then
        say "---- server log ($SERVER_LOG) ----"
        cat "$SERVER_LOG" >&2
        say "---- end of server log ----"
    fi
    if [ "$rc" -eq 0 ] && [ -z "${KEEP_WORK:-}" ]; then
        rm -rf "$WORK"
    else
        say "kept $WORK for inspection"
    fi
    exit "$rc"
}

jw_begin() {
    [ -x "$BIN" ] || { say "server binary not found: $BIN (build it, or set JABBERWOCK_BIN)"; exit 2; }
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/jabberwock-${SUITE_NAME:-interop}.XXXXXX")"
    SERVER_LOG="$WORK/server.log"
    CONFIG="$WORK/jabberwock.toml"
    mkdir -p "$WORK/data"
    trap jw_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# The kernel hands out a port per bound socket; they are released just before the server
# binds them, which is a small window nothing else here races for.
jw_free_ports() {
    python3 - "$1" <<'PYEOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PYEOF
}

jw_config() {
    {
        printf 'domains = ["%s"]\ndata_dir = "%s"\nallow_registration = true\nlog = "%s"\n\n' \
            "$DOMAIN" "${JW_DATA_DIR:-$WORK/data}" "${JABBERWOCK_LOG:-info}"
        cat
    } >"$CONFIG"
    "$BIN" --config "$CONFIG" check-config >"$WORK/check-config.log" 2>&1 || {
        say "check-config rejected the generated configuration:"
        cat "$WORK/check-config.log" >&2
        exit 1
    }
}

jw_adduser() {
    "$BIN" --config "$CONFIG" adduser "$1@$DOMAIN" "$2" >"$WORK/adduser.log" 2>&1 || {
        say "jabberwock adduser $1@$DOMAIN failed:"
        cat "$WORK/adduser.log" >&2
        exit 1
    }
}

jw_serve() {
    NO_COLOR=1 "$BIN" --config "$CONFIG" serve >>"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    local deadline=$((SECONDS + 30)) port rc
    for port in "$@"; do
        until (exec 3<>"/dev/tcp/$JW_HOST/$port") 2>/dev/null; do
            if ! kill -0 "$SERVER_PID" 2>/dev/null; then
                wait "$SERVER_PID" && rc=0 || rc=$?
                say "server exited (status $rc) before listening"
                exit 1
            fi
            if [ "$SECONDS" -ge "$deadline" ]; then
                say "server did not listen on $JW_HOST:$port within 30 s"
                exit 1
            fi
            sleep 0.1
        done
    done
    say "server pid $SERVER_PID listening on $JW_HOST ports $*"
}

jw_check_server() {
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        say "the server died during the suite"
        return 1
    fi
    if grep -q "panicked at" "$SERVER_LOG"; then
        say "the server panicked during the suite"
        return 1
    fi
}
