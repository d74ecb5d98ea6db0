#!/usr/bin/env bash
# Runs the JavaScript interop suites against a real `jabberwock` server:
#   node_suite.mjs     @xmpp/client over WebSocket, strophe.js over BOSH, slixmpp over STARTTLS
#   sasl2_suite.mjs    @xmpp/client with SASL2, Bind2 and FAST tokens over WebSocket and TCP
#   converse_suite.mjs Converse.js in headless Chromium over WebSocket, BOSH and XEP-0156
#   converse_muc_suite.mjs two Converse.js instances in one group chat room
#
# Builds nothing: the server binary is $JABBERWOCK_BIN (default target/debug/jabberwock).
# The npm packages and Chromium come from scripts/setup-js-env.sh, slixmpp's virtualenv from
# scripts/setup-test-env.sh. The server gets a fresh data directory and free loopback ports,
# and is stopped on exit; its log is printed when anything fails. Set JABBERWOCK_LOG (e.g.
# debug) for a more verbose server log and INTEROP_DEBUG=1 for the clients' traffic.
# Screenshots of the Converse runs are left in tests/interop/js/artifacts/.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SUITE_NAME=js-interop
# shellcheck source=../server.sh
. "$HERE/../server.sh"
PY="$REPO_ROOT/tests/interop/.venv/bin/python"

command -v node >/dev/null 2>&1 || { say "node not found: install Node.js 20 or later"; exit 2; }
[ -d "$HERE/node_modules/@xmpp/client" ] && [ -d "$HERE/node_modules/converse.js/dist" ] \
    || { say "npm packages missing in tests/interop/js: run scripts/setup-js-env.sh"; exit 2; }
[ -x "$PY" ] || { say "no virtualenv at tests/interop/.venv: run scripts/setup-test-env.sh"; exit 2; }
[ -x "${CHROMIUM_BIN:-/usr/bin/chromium}" ] || { say "no Chromium at ${CHROMIUM_BIN:-/usr/bin/chromium}: run scripts/setup-js-env.sh"; exit 2; }

jw_begin
read -r C2S_PORT HTTP_PORT HTTPS_PORT < <(jw_free_ports 3)
# The test page is served from another loopback port; loopback origins are always allowed.
# Browsers reach the HTTPS listener as https://$DOMAIN (port 443 mapped to it, see
# converse_suite.mjs), which host-meta must advertise: that is the public URL.
jw_config <<TOML
[listen]
c2s = ["127.0.0.1:$C2S_PORT"]
c2s_direct_tls = []

[http]
listen = ["127.0.0.1:$HTTP_PORT"]
listen_tls = ["127.0.0.1:$HTTPS_PORT"]
public_url = "https://$DOMAIN"
allowed_origins = []

[s2s]
enabled = false
TOML

# alice: @xmpp/client (WebSocket); bob: strophe.js (BOSH); carol: slixmpp (TCP);
# dave: Converse.js (browser); erin: a second Converse.js in the group chat suite;
# frank and grace: @xmpp/client signing in with SASL2 and FAST (WebSocket, TCP).
for user in alice bob carol dave erin frank grace; do
    password="$user-$RANDOM-$RANDOM"
    jw_adduser "$user" "$password"
    upper="$(printf '%s' "$user" | tr '[:lower:]' '[:upper:]')"
    export "${upper}_JID=$user@$DOMAIN" "${upper}_PASSWORD=$password"
done
jw_serve "$C2S_PORT" "$HTTP_PORT" "$HTTPS_PORT"

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
    counts="$(sed -n 's/^[a-z0-9_]*: \([0-9]*\) passed, \([0-9]*\) failed.*/\1 \2/p' "$out" | tail -n 1)"
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
# The server's self-signed certificate, for @xmpp/client's STARTTLS.
NODE_EXTRA_CA_CERTS="$CERT_FILE" run_suite 90 sasl2_suite.mjs
run_suite 200 converse_suite.mjs
run_suite 200 converse_muc_suite.mjs

if ! jw_check_server; then
    overall_rc=1
    TOTAL_FAILED=$((TOTAL_FAILED + 1))
fi

echo "js_interop: $TOTAL_PASSED passed, $TOTAL_FAILED failed"
exit "$overall_rc"
