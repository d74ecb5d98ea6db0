#!/usr/bin/env bash
# The cost of a cross-node message, and PostgreSQL against SQLite on one node (see the
# "Cluster" section of bench/README.md). Starts a private PostgreSQL (scripts/lib/postgres.sh,
# fsync on) and a private Redis, each stopped by its PID at the end, and release nodes:
#
# 1. two cluster nodes on 127.0.0.2 and 127.0.0.3 sharing them; jabberwock-load signs even
#    sessions in on node 1 and odd ones on node 1 again (same-node run) or on node 2
#    (cross-node run), the same pairs at the same rate, alternately, --rounds times each.
#    Every process's CPU (both nodes, Redis, PostgreSQL with its backends) per 100k
#    messages, the latency, and Redis's `info commandstats` per run;
# 2. one node on its own, SQLite then PostgreSQL (a fresh database each, the same config
#    otherwise): a login storm and a chat phase with the archive on, alternately.
#
#   bench/cluster.sh [--sessions N] [--pairs P] [--rate MSG_PER_SEC] [--seconds S]
#                    [--rounds K] [--out DIR]
#
# Writes DIR/<run>.txt (the tool's reports), DIR/<run>.summary (their figures),
# DIR/<run>.redis (commandstats deltas) and DIR/summary.txt. Needs PostgreSQL and
# redis-server (scripts/setup-test-env.sh installs both).
set -euo pipefail

sessions=400 pairs=200 rate=2000 seconds=15 rounds=2 out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --sessions) sessions=$2; shift 2 ;;
        --pairs) pairs=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
out=${out:-$root/bench/cluster-results}
mkdir -p "$out"
SETUP_NAME=cluster-bench
# shellcheck source=../scripts/lib/setup.sh
. "$root/scripts/lib/setup.sh"
# shellcheck source=../scripts/lib/postgres.sh
. "$root/scripts/lib/postgres.sh"
(cd "$root" && cargo build --release -q -p jabberwock -p jabberwock-load)
server="$target/release/jabberwock" load="$target/release/jabberwock-load"

work=$(mktemp -d /tmp/jabberwock-cluster-bench.XXXXXX)
node_pids=() redis_pid=""
stop_all() {
    for p in "${node_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${node_pids[@]}"; do wait "$p" 2>/dev/null || true; done
    [ -z "$redis_pid" ] || { kill -TERM "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null || true; }
    postgres_stop
    rm -rf "$work"
}
trap stop_all EXIT

# The benchmark measures PostgreSQL as deployed: every commit waits for its WAL flush, as
# SQLite's (synchronous = FULL) does.
PG_FSYNC=on postgres_start
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
redis_pid=$!
until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.1; done
log "$(redis-server --version | awk '{print $1, $2, $3}') on 127.0.0.1:$redis_port (pid $redis_pid)"
c2s=$(free_port)

# node NAME HOST STORAGE [CLUSTER_TABLE]: starts a node, appends its PID to node_pids.
# The limits are the load tool's own (bench/load-limits.toml): every session comes from one
# address.
node() {
    local name=$1 host=$2 storage=$3 cluster=${4:-} dir="$work/$1"
    mkdir -p "$dir"
    cat >"$dir/jabberwock.toml" <<EOF
domains = ["localhost"]
data_dir = "$dir"
log = "warn"
allow_registration = true
$storage

[listen]
c2s = ["$host:$c2s"]
c2s_direct_tls = []

[http]
listen = []
listen_tls = []

[s2s]
enabled = false

$(cat "$root/bench/load-limits.toml")
$cluster
EOF
    sh -c "ulimit -n \$(ulimit -Hn) && exec '$server' --config '$dir/jabberwock.toml'" >"$dir/server.log" 2>&1 &
    node_pids+=($!)
    until (exec 3<>"/dev/tcp/$host/$c2s") 2>/dev/null; do
        kill -0 "${node_pids[-1]}" 2>/dev/null || { cat "$dir/server.log" >&2; die "node $name exited"; }
        sleep 0.2
    done
}

stop_nodes() {
    for p in "${node_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${node_pids[@]}"; do wait "$p" 2>/dev/null || true; done
    node_pids=()
}

# redis_stats FILE: Redis's per-command counters (calls, usec), then reset them.
redis_stats() {
    redis-cli -p "$redis_port" info commandstats | tr -d '\r' | grep '^cmdstat_' >"$1" || true
    redis-cli -p "$redis_port" info stats | tr -d '\r' | grep -E '^total_net_(input|output)_bytes' >>"$1"
    redis-cli -p "$redis_port" config resetstat >/dev/null
}

# run NAME ARGS...: one jabberwock-load run; its report, figures and Redis counters.
run() {
    local name=$1
    shift
    log "run $name"
    redis_stats /dev/null
    "$load" --no-register --sessions "$sessions" --pairs "$pairs" --idle-secs 1 --summary "$out/$name.summary" "$@" \
        >"$out/$name.txt" 2>"$out/$name.log" || { tail -n 30 "$out/$name.txt" >&2; die "run $name failed"; }
    redis_stats "$out/$name.redis"
}

# Part 1: the cluster.
cluster_table() {
    printf '[cluster]\nnode = "%s"\nredis = "redis://127.0.0.1:%s/"\naddress = "%s:%s"\n' "$1" "$redis_port" "$2" "$c2s"
}
storage="storage = \"$PG_URL/jw_bench_cluster\""
node n1 127.0.0.2 "$storage" "$(cluster_table n1 127.0.0.2)"
node n2 127.0.0.3 "$storage" "$(cluster_table n2 127.0.0.3)"
watch=(--pid "${node_pids[0]}" --watch-pid "node2=${node_pids[1]}" --watch-pid "redis=$redis_pid" --watch-pid "postgres=$PG_PID")
# The accounts, once (the registration goes to the shared database), then a login-only
# run: Redis's cost per login and logout.
"$load" --addr "127.0.0.2:$c2s" --sessions "$sessions" --pairs "$pairs" --duration-secs 0 --idle-secs 0 >"$out/register.txt" 2>&1
run logins --addr "127.0.0.2:$c2s" --peer-addr "127.0.0.3:$c2s" "${watch[@]}" --duration-secs 0
for k in $(seq "$rounds"); do
    for where in same:127.0.0.2 cross:127.0.0.3; do
        run "${where%%:*}-node-$k" --addr "127.0.0.2:$c2s" --peer-addr "${where#*:}:$c2s" "${watch[@]}" \
            --message-rate "$rate" --duration-secs "$seconds" --drain-secs 5
    done
done
stop_nodes

# Part 2: one node, SQLite against PostgreSQL, each on a fresh database.
for k in $(seq "$rounds"); do
    for store in sqlite postgres; do
        case $store in
            sqlite) rm -rf "$work/single"; node single 127.0.0.2 "" ;;
            postgres) rm -rf "$work/single"; node single 127.0.0.2 "storage = \"$PG_URL/jw_bench_single_$k\"" ;;
        esac
        "$load" --addr "127.0.0.2:$c2s" --sessions "$sessions" --pairs "$pairs" --duration-secs 0 --idle-secs 0 >"$out/register.txt" 2>&1
        run "$store-$k" --addr "127.0.0.2:$c2s" --pid "${node_pids[0]}" --watch-pid "postgres=$PG_PID" \
            --ramp-per-sec 0 --concurrency 200 --message-rate "$rate" --duration-secs "$seconds" --drain-secs 5
        stop_nodes
    done
done

# fig RUN KEY: one figure of a run.
fig() { awk -v k="$2" '$1 == k { print $2 }' "$out/$1.summary"; }
# calls RUN COMMAND: Redis calls of one command in a run.
calls() { sed -n "s/^cmdstat_$2:calls=\([0-9]*\),.*/\1/p" "$out/$1.redis"; }
{
    echo "# bench/cluster.sh --sessions $sessions --pairs $pairs --rate $rate --seconds $seconds --rounds $rounds"
    echo "# $(git -C "$root" rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "run node1 node2 redis postgres p50_ms p99_ms lost publish evalsha redis_in_bytes"
    for k in $(seq "$rounds"); do
        for r in same-node-$k cross-node-$k; do
            echo "$r $(fig "$r" messages_server_cpu_per_100k) $(fig "$r" node2_cpu_per_100k) $(fig "$r" redis_cpu_per_100k)" \
                "$(fig "$r" postgres_cpu_per_100k) $(fig "$r" messages_p50_ms) $(fig "$r" messages_p99_ms) $(fig "$r" messages_lost)" \
                "$(calls "$r" publish) $(calls "$r" evalsha) $(sed -n 's/^total_net_input_bytes://p' "$out/$r.redis")"
        done
    done
    echo "logins: $sessions sessions, Redis: $(tr '\n' ' ' <"$out/logins.redis")"
    echo "run setup_ms logins_per_s node_cpu_per_100k postgres_cpu_per_100k p50_ms p99_ms lost"
    for k in $(seq "$rounds"); do
        for r in sqlite-$k postgres-$k; do
            echo "$r $(fig "$r" tcp_setup_cpu_ms) $(fig "$r" tcp_logins_per_sec) $(fig "$r" messages_server_cpu_per_100k)" \
                "$(fig "$r" postgres_cpu_per_100k) $(fig "$r" messages_p50_ms) $(fig "$r" messages_p99_ms) $(fig "$r" messages_lost)"
        done
    done
} | tee "$out/summary.txt"
