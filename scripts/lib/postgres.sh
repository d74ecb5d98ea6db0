# A private PostgreSQL for tests (sourced, not run; needs lib/setup.sh): its own port and
# data directory under a temporary directory, stopped by its PID. A package-started system
# daemon is neither needed nor touched.
# shellcheck shell=bash

PG_WORK=""
PG_PID=""

# Starts the server; sets PG_WORK, PG_PID and PG_URL (postgres://postgres@127.0.0.1:PORT).
postgres_start() {
    local pg_bin port data
    pg_bin="$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)"
    [ -x "$pg_bin/initdb" ] || die "PostgreSQL not found under /usr/lib/postgresql (scripts/setup-test-env.sh installs it)"
    PG_WORK="$(mktemp -d /tmp/jabberwock-pg.XXXXXX)"
    data="$PG_WORK/data"
    # PostgreSQL refuses to run as root: as root, the server runs as the postgres user that
    # Debian's package creates.
    local as_server=()
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres "$PG_WORK"
        as_server=(runuser -u postgres --)
    fi
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    quietly "${as_server[@]}" "$pg_bin/initdb" -D "$data" -U postgres -A trust --no-sync
    # Throwaway data: no fsync, so the tests' many small commits don't wait for the disk
    # (PG_FSYNC=on for benchmarks, which measure PostgreSQL as deployed).
    "${as_server[@]}" "$pg_bin/pg_ctl" -D "$data" -l "$PG_WORK/server.log" -w -t 60 \
        -o "-p $port -k $PG_WORK -c listen_addresses=127.0.0.1 -c fsync=${PG_FSYNC:-off} -c max_connections=300" start >/dev/null \
        || { cat "$PG_WORK/server.log" >&2; die "PostgreSQL did not start"; }
    PG_PID="$(head -n 1 "$data/postmaster.pid")"
    PG_URL="postgres://postgres@127.0.0.1:$port"
    log "PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (pid $PG_PID)"
}

# Stops the server (SIGINT is PostgreSQL's fast shutdown) and removes its directory.
postgres_stop() {
    if [ -n "$PG_PID" ] && kill -0 "$PG_PID" 2>/dev/null; then
        kill -INT "$PG_PID"
        for _ in $(seq 100); do
            kill -0 "$PG_PID" 2>/dev/null || break
            sleep 0.1
        done
    fi
    [ -z "$PG_WORK" ] || rm -rf "$PG_WORK"
}
