#!/usr/bin/env bash
# The tests that need PostgreSQL, against a private server that this script starts on its
# own port and data directory and stops (by its PID) when done: the storage crate's
# PostgreSQL tests (conformance suite, concurrent writers, copying), migrate-storage, and
# black-box suites with the server keeping its data in PostgreSQL. A package-started
# system daemon is neither needed nor touched.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
SETUP_NAME=postgres-tests
# shellcheck source=lib/setup.sh
. "$REPO_ROOT/scripts/lib/setup.sh"

# Suites run a second time with the server on PostgreSQL: those that exercise storage
# (accounts, roster, offline, MAM, PEP, rooms, quotas, restarts and kill -9).
SUITES=(persistence carbons_mam quotas offline im pep muc stream_management)

PG_BIN="$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)"
[ -x "$PG_BIN/initdb" ] || die "PostgreSQL not found under /usr/lib/postgresql (scripts/setup-test-env.sh installs it)"

WORK="$(mktemp -d /tmp/jabberwock-pg.XXXXXX)"
PGDATA="$WORK/data"
PG_PID=""
# PostgreSQL refuses to run as root: as root, the server runs as the postgres user that
# Debian's package creates.
AS_SERVER=()
if [ "$(id -u)" -eq 0 ]; then
    chown postgres "$WORK"
    AS_SERVER=(runuser -u postgres --)
fi

cleanup() {
    if [ -n "$PG_PID" ] && kill -0 "$PG_PID" 2>/dev/null; then
        # SIGINT is PostgreSQL's fast shutdown.
        kill -INT "$PG_PID"
        for _ in $(seq 100); do
            kill -0 "$PG_PID" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
quietly "${AS_SERVER[@]}" "$PG_BIN/initdb" -D "$PGDATA" -U postgres -A trust --no-sync
# Throwaway data: no fsync, so the tests' many small commits don't wait for the disk.
"${AS_SERVER[@]}" "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$WORK/server.log" -w -t 60 \
    -o "-p $PORT -k $WORK -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null \
    || { cat "$WORK/server.log" >&2; die "PostgreSQL did not start"; }
PG_PID="$(head -n 1 "$PGDATA/postmaster.pid")"
log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT (pid $PG_PID)"

export JABBERWOCK_TEST_POSTGRES="postgres://postgres@127.0.0.1:$PORT"
# Unreachable or unset, the PostgreSQL tests fail instead of skipping.
export JABBERWOCK_TEST_REQUIRE_POSTGRES=1
cargo test -p jabberwock-storage --test postgres
cargo test -p jabberwock-tests --test migrate_storage
suite_args=()
for s in "${SUITES[@]}"; do suite_args+=(--test "$s"); done
JABBERWOCK_TEST_STORAGE="$JABBERWOCK_TEST_POSTGRES" cargo test -p jabberwock-tests "${suite_args[@]}"
