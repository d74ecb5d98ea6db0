#!/usr/bin/env bash
# Runs the slixmpp interop suite against a real `jabberwock` server.
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
[ -x "$PY" ] || { say "no virtualenv at tests/interop/.venv: run scripts/setup-test-env.sh"; exit 2; }

jw_begin
read -r C2S_PORT TLS_PORT < <(jw_free_ports 2)
# The suite speaks plain XMPP only: no HTTP listeners (their defaults are public ports).
jw_config <<TOML
[listen]
c2s = ["127.0.0.1:$C2S_PORT"]
c2s_direct_tls = ["127.0.0.1:$TLS_PORT"]

[http]
listen = []
listen_tls = []
TOML

# alice is created with the admin CLI; bob registers in-band during the suite.
ALICE_PASSWORD="alice-$RANDOM-$RANDOM"
jw_adduser alice "$ALICE_PASSWORD"
jw_serve "$C2S_PORT" "$TLS_PORT"

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

jw_check_server || [ "$suite_rc" -ne 0 ] || suite_rc=1

exit "$suite_rc"
