#!/usr/bin/env bash
# Runs the slixmpp interop suites (slixmpp_suite.py, slixmpp_modern.py, slixmpp_muc.py,
# slixmpp_component.py, then slixmpp_admin.py) against a real `jabberwock` server.
#
# Builds nothing: the server binary is $JABBERWOCK_BIN (default target/debug/jabberwock).
# The suite's virtualenv comes from scripts/setup-test-env.sh. The server gets a fresh
# data directory and free loopback ports, and is stopped on exit; its log is printed
# when anything fails. Set JABBERWOCK_LOG (e.g. debug) for a more verbose server log and
# INTEROP_DEBUG=1 for slixmpp's debug log.
set -euo pipefail

SUITE_NAME=interop
# shellcheck source=server.sh
. "$(dirname "${BASH_SOURCE[0]}")/server.sh"
PY="$REPO_ROOT/tests/interop/.venv/bin/python"
SUITE="$REPO_ROOT/tests/interop/slixmpp_suite.py"
MODERN_SUITE="$REPO_ROOT/tests/interop/slixmpp_modern.py"
MUC_SUITE="$REPO_ROOT/tests/interop/slixmpp_muc.py"
[ -x "$PY" ] || { say "no virtualenv at tests/interop/.venv: run scripts/setup-test-env.sh"; exit 2; }

jw_begin
read -r C2S_PORT TLS_PORT HTTP_PORT COMPONENT_PORT < <(jw_free_ports 4)
COMPONENT_DOMAIN="bridge.$DOMAIN"
COMPONENT_SECRET="bridge-$RANDOM-$RANDOM"
# Plain HTTP on loopback only, for file upload (XEP-0363); the default listeners are
# public ports.
jw_config <<TOML
# carol runs the XEP-0133 commands in the admin suite.
admins = ["carol@$DOMAIN"]

[listen]
c2s = ["127.0.0.1:$C2S_PORT"]
c2s_direct_tls = ["127.0.0.1:$TLS_PORT"]

[http]
listen = ["127.0.0.1:$HTTP_PORT"]
listen_tls = []
public_url = "http://127.0.0.1:$HTTP_PORT"

[components]
listen = ["127.0.0.1:$COMPONENT_PORT"]
[components.domains."$COMPONENT_DOMAIN"]
secret = "$COMPONENT_SECRET"

[s2s]
enabled = false
TOML

# alice is created with the admin CLI; bob registers in-band during the suite. carol, dave
# and erin (admin CLI too) are the modern-extensions suite's accounts.
ALICE_PASSWORD="alice-$RANDOM-$RANDOM"
jw_adduser alice "$ALICE_PASSWORD"
CAROL_PASSWORD="carol-$RANDOM-$RANDOM"
DAVE_PASSWORD="dave-$RANDOM-$RANDOM"
ERIN_PASSWORD="erin-$RANDOM-$RANDOM"
jw_adduser carol "$CAROL_PASSWORD"
jw_adduser dave "$DAVE_PASSWORD"
jw_adduser erin "$ERIN_PASSWORD"
jw_serve "$C2S_PORT" "$TLS_PORT" "$HTTP_PORT" "$COMPONENT_PORT"

# run_suite NAME SECONDS SCRIPT ARGS...: runs one suite; the first failure's status is
# the script's.
suite_rc=0
run_suite() {
    local name="$1" seconds="$2" script="$3" rc=0
    shift 3
    [ -n "${INTEROP_DEBUG:-}" ] && set -- "$@" --debug
    timeout --kill-after=5 "$seconds" "$PY" "$script" "$@" || rc=$?
    if [ "$rc" -eq 124 ]; then
        say "the $name suite was killed after $seconds s"
    fi
    [ "$rc" -eq 0 ] || [ "$suite_rc" -ne 0 ] || suite_rc="$rc"
}

run_suite core 90 "$SUITE" --host 127.0.0.1 --port "$C2S_PORT" --tls-port "$TLS_PORT" --domain "$DOMAIN" \
    --alice-password "$ALICE_PASSWORD"

# The modern-extensions suite (XEP-0198, 0280, 0313, 0191, 0163, 0363, ...) and group chat
# (XEP-0045 and friends, on conference.$DOMAIN), with the same accounts.
modern_args=(
    --host 127.0.0.1 --port "$C2S_PORT" --domain "$DOMAIN"
    --carol-password "$CAROL_PASSWORD" --dave-password "$DAVE_PASSWORD" --erin-password "$ERIN_PASSWORD"
)
run_suite modern-extensions 100 "$MODERN_SUITE" "${modern_args[@]}"
run_suite "group chat" 100 "$MUC_SUITE" "${modern_args[@]}"

# External components (XEP-0114, and one as a XEP-0357 push app server) on bridge.$DOMAIN.
run_suite component 80 "$REPO_ROOT/tests/interop/slixmpp_component.py" \
    --host 127.0.0.1 --port "$C2S_PORT" --domain "$DOMAIN" \
    --carol-password "$CAROL_PASSWORD" --dave-password "$DAVE_PASSWORD" \
    --component-port "$COMPONENT_PORT" --component-domain "$COMPONENT_DOMAIN" --component-secret "$COMPONENT_SECRET"

# Service administration (XEP-0050 ad-hoc commands, XEP-0133) with carol as the admin.
run_suite admin 80 "$REPO_ROOT/tests/interop/slixmpp_admin.py" \
    --host 127.0.0.1 --port "$C2S_PORT" --domain "$DOMAIN" \
    --carol-password "$CAROL_PASSWORD" --dave-password "$DAVE_PASSWORD"

jw_check_server || [ "$suite_rc" -ne 0 ] || suite_rc=1

exit "$suite_rc"
