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

# shellcheck source=lib/postgres.sh
. "$REPO_ROOT/scripts/lib/postgres.sh"
trap postgres_stop EXIT
postgres_start

export JABBERWOCK_TEST_POSTGRES="$PG_URL"
# Unreachable or unset, the PostgreSQL tests fail instead of skipping.
export JABBERWOCK_TEST_REQUIRE_POSTGRES=1
cargo test -p jabberwock-storage --test postgres
cargo test -p jabberwock-tests --test migrate_storage
suite_args=()
for s in "${SUITES[@]}"; do suite_args+=(--test "$s"); done
JABBERWOCK_TEST_STORAGE="$JABBERWOCK_TEST_POSTGRES" cargo test -p jabberwock-tests "${suite_args[@]}"
