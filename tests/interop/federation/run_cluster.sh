#!/usr/bin/env bash
# Federation with a real Prosody (Debian's prosody 0.12) from two nodes of one Jabberwock
# cluster (cluster_suite.py):
#
#   jabberwock.test  node n1 on 127.0.0.2 (c2s on a free port, s2s on 5269) and node n2 on
#                    127.0.0.5 (c2s and s2s on free ports), sharing a private PostgreSQL
#                    (scripts/lib/postgres.sh) and a private Redis; the domain resolves to
#                    node 1 only (/etc/hosts), so Prosody connects to node 1 and sends its
#                    dialback verify requests there, whichever node offered the key
#   insecure.test    Prosody on 127.0.0.3 with a self-signed certificate and a CA that does
#                    not know Jabberwock's: dialback both ways
#
# No `s2s.dialback_secret` is configured: the nodes must agree on one through Redis.
# Builds nothing: the server binary is $JABBERWOCK_BIN (default target/debug/jabberwock).
set -euo pipefail

SUITE_NAME=federation-cluster
DOMAIN=jabberwock.test
NODE1_HOST=127.0.0.2
NODE2_HOST=127.0.0.5
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../server.sh
. "$HERE/../server.sh"
# shellcheck source=common.sh
. "$HERE/common.sh"
SETUP_NAME="$SUITE_NAME"
# shellcheck source=../../../scripts/lib/setup.sh
. "$REPO_ROOT/scripts/lib/setup.sh"
# shellcheck source=../../../scripts/lib/postgres.sh
. "$REPO_ROOT/scripts/lib/postgres.sh"
PY="$REPO_ROOT/tests/interop/.venv/bin/python"
[ -x "$PY" ] || { say "no virtualenv at tests/interop/.venv: run scripts/setup-test-env.sh"; exit 2; }
command -v prosody >/dev/null || { say "prosody is not installed: run scripts/setup-test-env.sh"; exit 2; }
REDIS_SERVER="$(command -v redis-server || true)"
[ -x "$REDIS_SERVER" ] || { say "redis-server is not installed: run scripts/setup-test-env.sh"; exit 2; }
require_hosts "jabberwock.test 127.0.0.2" "insecure.test 127.0.0.3"

jw_begin
PROSODY_DIR="$WORK/prosody"
# shellcheck source=prosody.sh
. "$HERE/prosody.sh"
NODE1_PID=""
NODE1_LOG=""
REDIS_PID=""
# Node 2 is the server server.sh manages (stopped, and its log shown, by jw_cleanup); this
# stops the rest.
jw_before_cleanup() {
    prosody_stop
    if [ -n "$NODE1_PID" ]; then
        SERVER_PID="$NODE1_PID" jw_stop
    fi
    if [ "$1" -ne 0 ]; then
        [ ! -f "$PROSODY_DIR/prosody.log" ] || { say "---- last lines of the Prosody log ----"; tail -n 80 "$PROSODY_DIR/prosody.log" >&2; }
        [ ! -f "$NODE1_LOG" ] || { say "---- node 1's log ----"; cat "$NODE1_LOG" >&2; say "---- node 2's log follows ----"; }
    fi
    if [ -n "$REDIS_PID" ]; then
        kill -TERM "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
    postgres_stop
}

CERTS="$WORK/certs"
mkdir -p "$CERTS"
test_ca "$CERTS"
test_cert "$CERTS" jabberwock.test
insecure_certs "$CERTS"
chmod 644 "$CERTS"/*

postgres_start
read -r NODE1_C2S NODE2_C2S NODE2_S2S PROSODY_C2S_PORT REDIS_PORT < <(jw_free_ports 5)
mkdir -p "$WORK/redis"
"$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK/redis" >"$WORK/redis/redis.log" 2>&1 &
REDIS_PID=$!
until (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null; do
    kill -0 "$REDIS_PID" 2>/dev/null || { say "redis-server exited:"; cat "$WORK/redis/redis.log" >&2; exit 1; }
    sleep 0.1
done

# node_config N HOST C2S_PORT S2S_PORT: node N's configuration, in $WORK/nN.
node_config() {
    mkdir -p "$WORK/n$1/data"
    CONFIG="$WORK/n$1/jabberwock.toml" JW_HOST="$2" JW_DATA_DIR="$WORK/n$1/data" \
        JW_TOP_TOML="storage = \"$PG_URL/jw_federation_cluster\"" jw_federation_config "$3" "$4" <<TOML
[s2s.peers."insecure.test"]
insecure = true

[cluster]
node = "n$1"
redis = "redis://127.0.0.1:$REDIS_PORT/0"
address = "$2:$4"
TOML
}
node_config 1 "$NODE1_HOST" "$NODE1_C2S" 5269
node_config 2 "$NODE2_HOST" "$NODE2_C2S" "$NODE2_S2S"

prosody_config "$PROSODY_C2S_PORT" <<LUA
VirtualHost "insecure.test"
    ssl = { certificate = "$CERTS/insecure.test.crt", key = "$CERTS/insecure.test.key", cafile = "$CERTS/other-ca.pem" }
LUA

ALICE_PASSWORD="alice-$RANDOM-$RANDOM"
BOB_PASSWORD="bob-$RANDOM-$RANDOM"
DAVE_PASSWORD="dave-$RANDOM-$RANDOM"
CONFIG="$WORK/n1/jabberwock.toml"
jw_adduser alice "$ALICE_PASSWORD"
jw_adduser bob "$BOB_PASSWORD"
prosody_adduser dave insecure.test "$DAVE_PASSWORD"

prosody_start
CONFIG="$WORK/n1/jabberwock.toml" SERVER_LOG="$WORK/n1/server.log" JW_HOST="$NODE1_HOST"
jw_serve "$NODE1_C2S" 5269
NODE1_PID="$SERVER_PID"
NODE1_LOG="$SERVER_LOG"
CONFIG="$WORK/n2/jabberwock.toml" SERVER_LOG="$WORK/n2/server.log" JW_HOST="$NODE2_HOST"
jw_serve "$NODE2_C2S" "$NODE2_S2S"

suite_args=(
    --jw-domain jabberwock.test --prosody-domain insecure.test
    --node1-host "$NODE1_HOST" --node1-port "$NODE1_C2S"
    --node2-host "$NODE2_HOST" --node2-port "$NODE2_C2S"
    --prosody-host "$PROSODY_ADDR" --prosody-port "$PROSODY_C2S_PORT"
    --alice-password "$ALICE_PASSWORD" --bob-password "$BOB_PASSWORD" --dave-password "$DAVE_PASSWORD"
)
[ -n "${INTEROP_DEBUG:-}" ] && suite_args+=(--debug)
rc=0
PYTHONPATH="$REPO_ROOT/tests/interop:$HERE" timeout --kill-after=5 170 "$PY" "$HERE/cluster_suite.py" "${suite_args[@]}" || rc=$?
[ "$rc" -ne 124 ] || say "the suite was killed after 170 s"

# Which node carried what, from the nodes' own logs.
if [ "$rc" -eq 0 ]; then
    expect_log "node 2 connected to insecure.test itself, with dialback (verified by node 1)" "$SERVER_LOG" \
        'outbound server stream authenticated .*remote=insecure.test .*dialback'
    expect_log "node 1 connected to insecure.test itself, with dialback" "$NODE1_LOG" \
        'outbound server stream authenticated .*remote=insecure.test .*dialback'
    expect_log "insecure.test connected to node 1 with dialback" "$NODE1_LOG" \
        'inbound server stream authenticated with dialback .*remote=insecure.test'
    # Prosody asked node 1 about both nodes' keys: two valid answers at least, no invalid one.
    valid="$(grep -Ec 'answered a dialback verification request .*valid=true' "$NODE1_LOG" || true)"
    if [ "$valid" -ge 2 ] && ! grep -Eq 'answered a dialback verification request .*valid=false' "$NODE1_LOG"; then
        say "ok: node 1 verified both nodes' dialback keys ($valid valid answers)"
    else
        say "FAILED: node 1 answered $valid dialback verifications as valid (2 expected), or one as invalid"
        rc=1
    fi
fi
jw_check_server || [ "$rc" -ne 0 ] || rc=1
SERVER_PID="$NODE1_PID" SERVER_LOG="$NODE1_LOG" jw_check_server || [ "$rc" -ne 0 ] || rc=1
exit "$rc"
