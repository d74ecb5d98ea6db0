#!/usr/bin/env bash
# Where the server's CPU goes under chat load: starts a release server (archive on or off,
# its defaults otherwise), drives it with jabberwock-load over TCP+TLS or WebSocket, samples
# it with perf during the message phase and writes a summary of the profile.
#
#   bench/profile.sh [--transport tcp|websocket] [--archive on|off] [--rate MSG_PER_SEC]
#                    [--sessions N] [--seconds S] [--out DIR]
#
# Needs `perf` (linux-perf) and permission to sample the server (root, or
# kernel.perf_event_paranoid <= 1). Writes DIR/load.txt (the tool's report), DIR/perf.data,
# and DIR/summary.txt: the CPU per thread kind, then the heaviest functions counted with
# their callees (--children) and on their own (--no-children).
set -eu

transport=tcp archive=on rate=4000 sessions=2000 seconds=15 out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --transport) transport=$2; shift 2 ;;
        --archive) archive=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --sessions) sessions=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
case "$archive" in on) default=always ;; off) default=never ;; *) echo "--archive on|off" >&2; exit 2 ;; esac
command -v perf >/dev/null || { echo "perf is not installed (apt install linux-perf)" >&2; exit 1; }

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
out=${out:-$root/bench/profiles/$transport-archive-$archive}
mkdir -p "$out"
(cd "$root" && cargo build --release -q -p jabberwock -p jabberwock-load)

work=$(mktemp -d)
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# Fixed loopback ports of their own (compare.sh uses 161xx-163xx).
c2s=16500 direct=16501 http=16502
cat > "$work/jabberwock.toml" <<EOF
domains = ["localhost"]
data_dir = "$work/data"
log = "warn"
allow_registration = true

[listen]
c2s = ["127.0.0.1:$c2s"]
c2s_direct_tls = ["127.0.0.1:$direct"]

[s2s]
enabled = false

[http]
# Plain HTTP for WebSocket sessions; 127.0.0.1 is a trusted proxy by default.
listen = ["127.0.0.1:$http"]
listen_tls = []

[limits]
archive_default = "$default"
# Every session connects from 127.0.0.1 and thousands negotiate at once.
negotiation_timeout_secs = 600
max_connections = 1000000
max_connections_per_ip = 1000000
max_unauthenticated = 1000000
max_unauthenticated_per_ip = 1000000

[auth]
max_failures = 1000000000
EOF
ulimit -n "$(ulimit -Hn)"
"$target/release/jabberwock" --config "$work/jabberwock.toml" serve &
server_pid=$!
i=0
until (echo > /dev/tcp/127.0.0.1/$c2s) 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 100 ] || { echo "the server did not start" >&2; exit 1; }
    sleep 0.1
done 2>/dev/null || true

# The message phase starts once every session is up; it lasts long enough for the sample.
"$target/release/jabberwock-load" --addr "127.0.0.1:$c2s" --ws-addr "127.0.0.1:$http" --pid "$server_pid" \
    --transport "$transport" --sessions "$sessions" --pairs $((sessions / 2)) --message-rate "$rate" \
    --duration-secs $((seconds + 10)) --idle-secs 2 > "$out/load.txt" 2>&1 &
load_pid=$!
until [ "$(grep -c 'sessions up' "$out/load.txt" 2>/dev/null)" -ge 2 ]; do
    kill -0 "$load_pid" 2>/dev/null || { cat "$out/load.txt" >&2; exit 1; }
    sleep 0.5
done
sleep 5
perf record -q -F 499 --call-graph dwarf,16384 -p "$server_pid" -o "$out/perf.data" -- sleep "$seconds" 2>/dev/null
wait "$load_pid"

{
    echo "# bench/profile.sh --transport $transport --archive $archive --rate $rate --sessions $sessions --seconds $seconds"
    echo "# $(git -C "$root" rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ)"
    grep -E "server CPU|latency p50|delivered rate" "$out/load.txt" || true
    echo
    echo "## CPU by thread (tokio-runtime-w: sessions and routing; sqlx-sqlite-wor: the database)"
    perf report -i "$out/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null | grep '%' | head -8
    echo
    echo "## Heaviest, with callees"
    perf report -i "$out/perf.data" --children --sort symbol --stdio -g none 2>/dev/null | grep '%' \
        | grep -v -E 'tokio::runtime|std::|core::|clone3|start_thread|thread_start|entry_SYSCALL|do_syscall|\(inlined\)' \
        | head -60 | cut -c1-150
    echo
    echo "## Heaviest, on their own"
    perf report -i "$out/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null | grep '%' | head -30 | cut -c1-150
} > "$out/summary.txt"
echo "$out/summary.txt"
