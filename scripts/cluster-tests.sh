#!/usr/bin/env bash
# The three-node cluster tests (tests/cluster.rs, and the rolling restart under load in
# tests/cluster_restart.rs): nodes on 127.0.0.2-4 sharing one private PostgreSQL, which
# this script starts on its own port and data directory and stops by its PID, and one
# Redis, which each test starts from redis-server on a free port (it kills and restarts
# that Redis by its PID to test recovery). The load-balancer
# test likewise runs its own HAProxy. A package-started system daemon of any of them is
# neither needed nor touched. Arguments go to `cargo test` (a test name, say).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
SETUP_NAME=cluster-tests
# shellcheck source=lib/setup.sh
. "$REPO_ROOT/scripts/lib/setup.sh"
# shellcheck source=lib/postgres.sh
. "$REPO_ROOT/scripts/lib/postgres.sh"

REDIS_SERVER="$(command -v redis-server || true)"
[ -x "$REDIS_SERVER" ] || die "redis-server not found (scripts/setup-test-env.sh installs it)"
log "$("$REDIS_SERVER" --version | awk '{print $1, $2, $3}')"

HAPROXY="$(command -v haproxy || echo /usr/sbin/haproxy)"
[ -x "$HAPROXY" ] || die "haproxy not found (scripts/setup-test-env.sh installs it)"
log "$("$HAPROXY" -v | head -n 1)"

trap postgres_stop EXIT
postgres_start

export JABBERWOCK_TEST_POSTGRES="$PG_URL"
export JABBERWOCK_TEST_REDIS_SERVER="$REDIS_SERVER"
export JABBERWOCK_TEST_HAPROXY="$HAPROXY"
# Unreachable or unset, the cluster tests fail instead of skipping.
export JABBERWOCK_TEST_REQUIRE_CLUSTER=1
cargo test -p jabberwock-tests --test cluster --test cluster_restart "$@"
