#!/usr/bin/env bash
# Where the server's CPU goes under chat load: jabberwock-load starts a release server
# (archive on or off, its defaults otherwise) and drives it over TCP+TLS or WebSocket; perf
# samples the server during the message phase, and a summary of the profile is written.
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

# The tool starts the server (its child) with a config of its own on free loopback ports;
# the message phase starts once every session is up and lasts long enough for the sample.
"$target/release/jabberwock-load" --server-bin "$target/release/jabberwock" --server-archive-default "$default" \
    --transport "$transport" --sessions "$sessions" --pairs $((sessions / 2)) --message-rate "$rate" \
    --duration-secs $((seconds + 4)) --idle-secs 2 > "$out/load.txt" 2>&1 &
load_pid=$!
# On an interrupt, the server (the tool's child) goes too: killing the tool alone leaves it.
trap 'pkill -TERM -P "$load_pid" 2>/dev/null; kill "$load_pid" 2>/dev/null' EXIT INT TERM
until grep -q '^… messages' "$out/load.txt" 2>/dev/null; do
    kill -0 "$load_pid" 2>/dev/null || { cat "$out/load.txt" >&2; exit 1; }
    sleep 0.5
done
sleep 2
server_pid=$(pgrep -P "$load_pid" -x jabberwock)
perf record -q -F 499 --call-graph dwarf,16384 -p "$server_pid" -o "$out/perf.data" -- sleep "$seconds" 2>/dev/null
wait "$load_pid"
trap - EXIT INT TERM

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
