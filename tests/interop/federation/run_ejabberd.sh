#!/usr/bin/env bash
# Federation with a real ejabberd (Debian's ejabberd 23.01): ejabberd_suite.py between
# users of Jabberwock and of ejabberd, each on its own server.
#
#   jabberwock.test  Jabberwock on 127.0.0.2 (c2s on a free port, s2s on 5269), with its
#                    group chat on conference.jabberwock.test
#   ejabberd.test    ejabberd on 127.0.0.4, with mod_muc on rooms.ejabberd.test
#
# Certificates come from a CA both servers trust (each naming its server's domain and
# its group chat service). Both find each other through /etc/hosts (scripts/setup-test-env.sh
# adds the entries; ejabberd reads them as its inetrc says). ejabberd runs as the
# `ejabberd` user with its own config, spool and logs under the work directory, on its own
# Erlang node and distribution port, and is stopped by PID. Builds nothing: the server
# binary is $JABBERWOCK_BIN (default target/debug/jabberwock).
set -euo pipefail

SUITE_NAME=federation-ejabberd
DOMAIN=jabberwock.test
JW_HOST=127.0.0.2
EJ_HOST=127.0.0.4
EJ_DOMAIN=ejabberd.test
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../server.sh
. "$HERE/../server.sh"
# shellcheck source=common.sh
. "$HERE/common.sh"
PY="$REPO_ROOT/tests/interop/.venv/bin/python"
[ -x "$PY" ] || { say "no virtualenv at tests/interop/.venv: run scripts/setup-test-env.sh"; exit 2; }
command -v ejabberdctl >/dev/null || { say "ejabberd is not installed: run scripts/setup-test-env.sh"; exit 2; }
require_hosts "jabberwock.test 127.0.0.2" "conference.jabberwock.test 127.0.0.2" \
    "ejabberd.test 127.0.0.4" "rooms.ejabberd.test 127.0.0.4"

jw_begin
# ejabberd runs as its own user, which must reach its directory inside the work directory.
chmod 755 "$WORK"
EJ_DIR="$WORK/ejabberd"
mkdir -p "$EJ_DIR/spool" "$EJ_DIR/logs"
EJ_CTL=(ejabberdctl --config-dir "$EJ_DIR" --config "$EJ_DIR/ejabberd.yml" --ctl-config "$EJ_DIR/ejabberdctl.cfg"
    --spool "$EJ_DIR/spool" --logs "$EJ_DIR/logs")
if [ "$(id -u)" = 0 ]; then
    # As root, ejabberdctl would switch to the ejabberd user through su and PAM; this
    # switches without them, keeping the environment the suite set up.
    EJ_CTL=(setpriv --reuid ejabberd --regid ejabberd --init-groups
        env HOME="$(getent passwd ejabberd | cut -d: -f6)" "${EJ_CTL[@]}")
fi
ej_pid() { cat "$EJ_DIR/ejabberd.pid" 2>/dev/null || true; }
jw_before_cleanup() {
    local pid
    pid="$(ej_pid)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    if [ "$1" -ne 0 ]; then
        say "---- last lines of the ejabberd log ----"
        tail -n 60 "$EJ_DIR/logs/ejabberd.log" "$EJ_DIR/logs/error.log" >&2 2>/dev/null || true
    fi
}

# A CA both servers trust, and a certificate from it for each server and its rooms.
CERTS="$WORK/certs"
mkdir -p "$CERTS"
test_ca "$CERTS"
test_cert "$CERTS" jabberwock.test conference.jabberwock.test
test_cert "$CERTS" ejabberd.test rooms.ejabberd.test
cat "$CERTS/ejabberd.test.crt" "$CERTS/ejabberd.test.key" > "$EJ_DIR/ejabberd.pem"
cp "$CERTS/ca.pem" "$EJ_DIR/ca.pem"
chmod 644 "$CERTS"/*

read -r C2S_PORT EJ_C2S_PORT EJ_DIST_PORT < <(jw_free_ports 3)
jw_federation_config "$C2S_PORT" </dev/null

cat > "$EJ_DIR/ejabberd.yml" <<YML
hosts: ["$EJ_DOMAIN"]
loglevel: info
certfiles: ["$EJ_DIR/ejabberd.pem"]
ca_file: "$EJ_DIR/ca.pem"
auth_method: internal
s2s_use_starttls: required
listen:
  - port: $EJ_C2S_PORT
    ip: "$EJ_HOST"
    module: ejabberd_c2s
    starttls_required: true
  - port: 5269
    ip: "$EJ_HOST"
    module: ejabberd_s2s_in
acl:
  local:
    user_regexp: ""
access_rules:
  s2s:
    allow: all
s2s_access: s2s
modules:
  mod_disco: {}
  mod_roster: {}
  mod_ping: {}
  mod_s2s_dialback: {}
  mod_muc:
    host: "rooms.$EJ_DOMAIN"
    access_create: all
YML
cat > "$EJ_DIR/ejabberdctl.cfg" <<CFG
ERLANG_NODE=federation@localhost
# A fixed distribution port instead of epmd, on loopback.
ERL_DIST_PORT=$EJ_DIST_PORT
INET_DIST_INTERFACE=127.0.0.1
EJABBERD_PID_PATH=$EJ_DIR/ejabberd.pid
CFG
cp /etc/ejabberd/inetrc "$EJ_DIR/"
[ "$(id -u)" = 0 ] && chown -R ejabberd: "$EJ_DIR"

(cd "$EJ_DIR" && "${EJ_CTL[@]}" start)
for _ in $(seq 1 300); do
    [ -n "$(ej_pid)" ] && "${EJ_CTL[@]}" status >/dev/null 2>&1 && break
    sleep 0.2
done
"${EJ_CTL[@]}" status >/dev/null 2>&1 || { say "ejabberd did not start"; exit 1; }
say "ejabberd pid $(ej_pid) on $EJ_HOST"

ALICE_PASSWORD="alice-$RANDOM-$RANDOM"
ERIN_PASSWORD="erin-$RANDOM-$RANDOM"
jw_adduser alice "$ALICE_PASSWORD"
"${EJ_CTL[@]}" register erin "$EJ_DOMAIN" "$ERIN_PASSWORD" >/dev/null
jw_serve "$C2S_PORT" 5269

rc=0
PYTHONPATH="$REPO_ROOT/tests/interop:$HERE" timeout --kill-after=5 150 "$PY" "$HERE/ejabberd_suite.py" \
    --jw-host "$JW_HOST" --jw-port "$C2S_PORT" --jw-domain "$DOMAIN" \
    --ejabberd-host "$EJ_HOST" --ejabberd-port "$EJ_C2S_PORT" --ejabberd-domain "$EJ_DOMAIN" \
    --alice-password "$ALICE_PASSWORD" --erin-password "$ERIN_PASSWORD" || rc=$?
[ "$rc" -ne 124 ] || say "the suite was killed after 150 s"
jw_check_server || [ "$rc" -ne 0 ] || rc=1
exit "$rc"
