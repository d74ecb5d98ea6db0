# Runs a real Prosody (Debian's package) as a federation peer (sourced, not run).
#
# Prosody gets its own config, data and log under $PROSODY_DIR (set by the caller), listens
# only on $PROSODY_ADDR, and is stopped by the PID in its own pidfile. Provides:
#   prosody_config C2S_PORT <<LUA   writes prosody.cfg.lua: the common settings plus the
#                                   virtual hosts given
#   prosody_adduser USER DOMAIN PASSWORD
#   prosody_start / prosody_stop    start (daemonized) and stop, waiting for either
#   prosody_pid                     the running Prosody's PID, empty if none
# shellcheck shell=bash

PROSODY_ADDR="${PROSODY_ADDR:-127.0.0.3}"
PROSODY_CONFIG="$PROSODY_DIR/prosody.cfg.lua"

prosody_config() {
    local c2s_port="$1"
    mkdir -p "$PROSODY_DIR/data"
    {
        cat <<LUA
-- Written by the federation suite. Prosody runs as the invoking user (root in CI),
-- keeps everything under this directory and listens on $PROSODY_ADDR only.
run_as_root = true
pidfile = "$PROSODY_DIR/prosody.pid"
data_path = "$PROSODY_DIR/data"
log = { debug = "$PROSODY_DIR/prosody.log" }
interfaces = { "$PROSODY_ADDR" }
c2s_ports = { $c2s_port }
c2s_direct_tls_ports = {}
s2s_ports = { 5269 }
http_ports = {}
https_ports = {}
modules_enabled = { "roster", "saslauth", "tls", "dialback", "s2s_bidi", "disco", "ping", "posix", "presence" }
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
s2s_require_encryption = true
-- Peers with a certificate that does not verify may still use dialback.
s2s_secure_auth = false
-- libunbound answers from /etc/hosts, where the test domains live.
unbound = { hoststxt = "/etc/hosts" }
LUA
        cat
    } >"$PROSODY_CONFIG"
}

prosody_adduser() {
    prosodyctl --config "$PROSODY_CONFIG" register "$1" "$2" "$3" >>"$PROSODY_DIR/prosodyctl.log" 2>&1 || {
        say "prosodyctl register $1@$2 failed:"
        cat "$PROSODY_DIR/prosodyctl.log" >&2
        return 1
    }
}

prosody_pid() {
    local pid
    pid="$(cat "$PROSODY_DIR/prosody.pid" 2>/dev/null || true)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        echo "$pid"
    fi
}

prosody_start() {
    if (exec 3<>"/dev/tcp/$PROSODY_ADDR/5269") 2>/dev/null; then
        say "something already listens on $PROSODY_ADDR:5269; stop it first"
        return 1
    fi
    rm -f "$PROSODY_DIR/prosody.pid"
    prosody --config "$PROSODY_CONFIG" -D >>"$PROSODY_DIR/prosody.out" 2>&1
    local deadline=$((SECONDS + 30))
    until [ -n "$(prosody_pid)" ] && (exec 3<>"/dev/tcp/$PROSODY_ADDR/5269") 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "Prosody did not start within 30 s:"
            tail -n 30 "$PROSODY_DIR/prosody.out" "$PROSODY_DIR/prosody.log" >&2 2>/dev/null || true
            return 1
        fi
        sleep 0.1
    done
    say "prosody pid $(prosody_pid) listening on $PROSODY_ADDR"
}

prosody_stop() {
    local pid i
    pid="$(prosody_pid)"
    [ -n "$pid" ] || return 0
    kill -TERM "$pid"
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    say "Prosody (pid $pid) ignored SIGTERM for 10 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}
