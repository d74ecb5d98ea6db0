#!/usr/bin/env bash
# Federation with a real Prosody (Debian's prosody 0.12): the slixmpp federation suite
# (federation_suite.py) between users of Jabberwock and of Prosody, each on its own server.
#
#   jabberwock.test  Jabberwock on 127.0.0.2 (c2s on a free port, s2s on 5269)
#   prosody.test     Prosody on 127.0.0.3; certificates from a CA both servers trust, so
#                    the servers authenticate each other with SASL EXTERNAL
#   insecure.test    the same Prosody with a self-signed certificate, and a CA that does not
#                    know Jabberwock's: dialback both ways (Jabberwock marks it `insecure`)
#   conference.jabberwock.test and rooms.prosody.test
#                    the group chat services of each (Prosody's `muc` component); the
#                    certificates of jabberwock.test and prosody.test name them too
#
# Both servers find each other through /etc/hosts (scripts/setup-test-env.sh adds the
# entries); Prosody answers from there through libunbound, and Jabberwock through the
# system resolver after its SRV lookups come back empty. Builds nothing: the server binary
# is $JABBERWOCK_BIN (default target/debug/jabberwock).
set -euo pipefail

SUITE_NAME=federation
DOMAIN=jabberwock.test
JW_HOST=127.0.0.2
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../server.sh
. "$HERE/../server.sh"
# shellcheck source=common.sh
. "$HERE/common.sh"
PY="$REPO_ROOT/tests/interop/.venv/bin/python"
[ -x "$PY" ] || { say "no virtualenv at tests/interop/.venv: run scripts/setup-test-env.sh"; exit 2; }
command -v prosody >/dev/null || { say "prosody is not installed: run scripts/setup-test-env.sh"; exit 2; }
require_hosts "jabberwock.test 127.0.0.2" "prosody.test 127.0.0.3" "insecure.test 127.0.0.3" \
    "conference.jabberwock.test 127.0.0.2" "rooms.prosody.test 127.0.0.3"

jw_begin
PROSODY_DIR="$WORK/prosody"
# shellcheck source=prosody.sh
. "$HERE/prosody.sh"
jw_before_cleanup() {
    prosody_stop
    if [ "$1" -ne 0 ] && [ -f "$PROSODY_DIR/prosody.log" ]; then
        say "---- last lines of the Prosody log ----"
        tail -n 80 "$PROSODY_DIR/prosody.log" >&2
    fi
}

# A CA both servers trust, certificates it issued, a self-signed one, and an unrelated CA.
CERTS="$WORK/certs"
mkdir -p "$CERTS"
test_ca "$CERTS"
test_cert "$CERTS" jabberwock.test conference.jabberwock.test
test_cert "$CERTS" prosody.test rooms.prosody.test
insecure_certs "$CERTS"
chmod 644 "$CERTS"/*

read -r C2S_PORT PROSODY_C2S_PORT < <(jw_free_ports 2)
jw_federation_config "$C2S_PORT" <<TOML
[s2s.peers."insecure.test"]
insecure = true
TOML

prosody_config "$PROSODY_C2S_PORT" <<LUA
VirtualHost "prosody.test"
    ssl = { certificate = "$CERTS/prosody.test.crt", key = "$CERTS/prosody.test.key", cafile = "$CERTS/ca.pem" }
VirtualHost "insecure.test"
    ssl = { certificate = "$CERTS/insecure.test.crt", key = "$CERTS/insecure.test.key", cafile = "$CERTS/other-ca.pem" }
Component "rooms.prosody.test" "muc"
    ssl = { certificate = "$CERTS/prosody.test.crt", key = "$CERTS/prosody.test.key", cafile = "$CERTS/ca.pem" }
    modules_enabled = { "muc_mam" }
LUA

ALICE_PASSWORD="alice-$RANDOM-$RANDOM"
CHARLES_PASSWORD="charles-$RANDOM-$RANDOM"
DAVE_PASSWORD="dave-$RANDOM-$RANDOM"
jw_adduser alice "$ALICE_PASSWORD"
prosody_adduser charles prosody.test "$CHARLES_PASSWORD"
prosody_adduser dave insecure.test "$DAVE_PASSWORD"

# The suite stops and starts Prosody through this script.
cat >"$WORK/prosody-ctl" <<CTL
#!/usr/bin/env bash
set -euo pipefail
say() { printf 'federation: %s\n' "\$*" >&2; }
PROSODY_DIR="$PROSODY_DIR"
. "$HERE/prosody.sh"
case "\$1" in
    start) prosody_start ;;
    stop) prosody_stop ;;
    *) echo "usage: \$0 start|stop" >&2; exit 2 ;;
esac
CTL
chmod +x "$WORK/prosody-ctl"

prosody_start
jw_serve "$C2S_PORT" 5269

suite_args=(
    --jw-host "$JW_HOST" --jw-port "$C2S_PORT" --jw-domain jabberwock.test
    --prosody-host "$PROSODY_ADDR" --prosody-port "$PROSODY_C2S_PORT"
    --prosody-domain prosody.test --insecure-domain insecure.test
    --prosody-ctl "$WORK/prosody-ctl"
    --alice-password "$ALICE_PASSWORD" --charles-password "$CHARLES_PASSWORD" --dave-password "$DAVE_PASSWORD"
)
[ -n "${INTEROP_DEBUG:-}" ] && suite_args+=(--debug)
run_phase() {
    local rc=0
    PYTHONPATH="$REPO_ROOT/tests/interop" timeout --kill-after=5 170 "$PY" "$HERE/federation_suite.py" --phase "$1" "${suite_args[@]}" || rc=$?
    [ "$rc" -ne 124 ] || say "phase $1 was killed after 170 s"
    return "$rc"
}

rc=0
run_phase federate || rc=$?
if [ "$rc" -eq 0 ]; then
    say "restarting Jabberwock"
    jw_stop
    jw_serve "$C2S_PORT" 5269
    run_phase after-restart || rc=$?
fi

# Which authentication each direction used, from Jabberwock's own log.
if [ "$rc" -eq 0 ]; then
    expect_log "jabberwock.test -> prosody.test used SASL EXTERNAL" "$SERVER_LOG" \
        'outbound server stream authenticated .*remote=prosody.test .*SASL EXTERNAL'
    expect_log "prosody.test -> jabberwock.test used SASL EXTERNAL" "$SERVER_LOG" \
        'inbound server stream authenticated with SASL EXTERNAL .*remote=prosody.test'
    expect_log "jabberwock.test -> insecure.test used dialback" "$SERVER_LOG" \
        'outbound server stream authenticated .*remote=insecure.test .*dialback'
    expect_log "insecure.test -> jabberwock.test used dialback" "$SERVER_LOG" \
        'inbound server stream authenticated with dialback .*remote=insecure.test'
fi
jw_check_server || [ "$rc" -ne 0 ] || rc=1
exit "$rc"
