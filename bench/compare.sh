#!/usr/bin/env bash
# Head-to-head benchmark: Jabberwock (release build), Prosody and ejabberd, each with its
# own config on its own loopback ports, TLS on, SQLite storage and message archiving on.
# The same jabberwock-load scenarios run against each server in turn:
#
#   idle      --idle-sessions TLS sessions: server RSS per idle session, login rate at the ramp
#   logins    --login-sessions logins as fast as the server accepts them (login storm)
#   chat      --chat-sessions sessions chatting; the rate rises until p99 > 50 ms (the
#             peak), then half the peak
#   presence  --presence-sessions sessions with rosters of --roster contacts (subscribed
#             both ways, in-band), every session changing its status --presence-rounds times
#   muc10, muc100, muc1000
#             group chat (XEP-0045, each server's own service on conference.localhost,
#             room archives on): 20 rooms of 10, 2 rooms of 100, 1 room of 1000
#             occupants, every occupant a session; each message goes to its sender's
#             room; the rate rises until p99 > 50 ms, then half the peak
#
# and one table with the ratios Jabberwock/Prosody and Jabberwock/ejabberd is printed
# (and written to OUT/results.md). See bench/README.md.
#
#   bench/compare.sh                      # the full run (the issue's scenarios)
#   bench/compare.sh --quick              # a few minutes, for trying it out
#   bench/compare.sh --servers "jabberwock prosody" --chat-sessions 1000
#   bench/compare.sh --scenarios chat --start-rate 2    # some scenarios only
#
# Installs prosody, lua-dbi-sqlite3, ejabberd and erlang-p1-sqlite3 with apt-get if they
# are missing (as root, or with sudo). Every server it starts is stopped by PID at exit.
set -euo pipefail

# --- options ---------------------------------------------------------------------------
SERVERS="jabberwock prosody ejabberd"
SCENARIOS="idle logins chat presence muc10 muc100 muc1000"
IDLE_SESSIONS=20000
LOGIN_SESSIONS=5000
CHAT_SESSIONS=2000
PRESENCE_SESSIONS=2000
ROSTER=50
PRESENCE_ROUNDS=3
RAMP=500           # idle sessions started per second
STEP_SECS=10       # each rate step of the chat scenario
START_RATE=40      # the chat scenario's first rate (msg/s), multiplied by STEP_FACTOR
STEP_FACTOR=1.5
OUT=""
usage() { sed -n '2,/^[^#]/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --servers) SERVERS=$2; shift 2 ;;
        --scenarios) SCENARIOS=$2; shift 2 ;;
        --idle-sessions) IDLE_SESSIONS=$2; shift 2 ;;
        --login-sessions) LOGIN_SESSIONS=$2; shift 2 ;;
        --chat-sessions) CHAT_SESSIONS=$2; shift 2 ;;
        --presence-sessions) PRESENCE_SESSIONS=$2; shift 2 ;;
        --roster) ROSTER=$2; shift 2 ;;
        --presence-rounds) PRESENCE_ROUNDS=$2; shift 2 ;;
        --ramp) RAMP=$2; shift 2 ;;
        --step-secs) STEP_SECS=$2; shift 2 ;;
        --start-rate) START_RATE=$2; shift 2 ;;
        --step-factor) STEP_FACTOR=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --quick)
            IDLE_SESSIONS=2000 LOGIN_SESSIONS=1000 CHAT_SESSIONS=400 PRESENCE_SESSIONS=400
            ROSTER=20 PRESENCE_ROUNDS=2 STEP_SECS=5
            shift ;;
        -h|--help) usage ;;
        *) echo "unknown option: $1" >&2; usage 2 ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d -t xmpp-compare-XXXXXX)
# ejabberdctl runs the server as the `ejabberd` user when started as root.
chmod 755 "$WORK"
OUT=${OUT:-$WORK/results}
mkdir -p "$OUT"
DOMAIN=localhost
PASSWORD=load-test-password
# Loopback ports of this benchmark (other services on the machine use 5222, 52xx).
JW_PORT=16100 JW_DIRECT_PORT=16101
PROSODY_PORT=16200
EJABBERD_PORT=16300 EJABBERD_DIST_PORT=16301

log() { printf '== %s\n' "$*" >&2; }

# --- packages --------------------------------------------------------------------------
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
install_packages() {
    local missing=()
    for p in prosody lua-dbi-sqlite3 ejabberd erlang-p1-sqlite3 openssl; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
}

# A packaged daemon (started by the package's install) would compete for the CPU: stop
# it by the PID in its pidfile, if that process is the expected program.
stop_packaged_daemon() {
    local pidfile=$1 comm=$2 pid
    [ -r "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if [ -n "$pid" ] && grep -q "$comm" "/proc/$pid/comm" 2>/dev/null; then
        log "stopping the packaged $comm daemon (pid $pid)"
        as_root kill "$pid"
    fi
}

# --- server lifecycle ------------------------------------------------------------------
# The running server: its process (measured, and killed at exit), its client port, and
# the command that stops it gracefully, if any.
SERVER_PID=""
SERVER_PORT=""
SERVER_STOP=""
LOAD_PID=""
cleanup() {
    if [ -n "$LOAD_PID" ]; then kill "$LOAD_PID" 2>/dev/null || true; fi
    stop_server
}
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    if [ -n "$SERVER_STOP" ]; then eval "$SERVER_STOP" >/dev/null 2>&1 || true; fi
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.2
    done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    SERVER_PID="" SERVER_STOP=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for_port() {
    local port=$1 pid=$2
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        kill -0 "$pid" 2>/dev/null || { echo "the server exited at start" >&2; return 1; }
        sleep 0.2
    done
    echo "nothing listens on 127.0.0.1:$port after 60 s" >&2
    return 1
}

make_cert() {
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$DOMAIN" \
        -addext "subjectAltName=DNS:$DOMAIN" -keyout "$1/key.pem" -out "$1/cert.pem" 2>/dev/null
}

start_jabberwock() {
    local dir=$WORK/jabberwock
    mkdir -p "$dir/data"
    make_cert "$dir"
    cat > "$dir/jabberwock.toml" <<EOF
domains = ["$DOMAIN"]
data_dir = "$dir/data"
log = "warn"
allow_registration = true

[listen]
c2s = ["127.0.0.1:$JW_PORT"]
c2s_direct_tls = ["127.0.0.1:$JW_DIRECT_PORT"]

[tls."$DOMAIN"]
cert = "$dir/cert.pem"
key = "$dir/key.pem"

[limits]
# Thousands of sessions negotiate at once on two shared cores.
negotiation_timeout_secs = 600
# Every session connects from 127.0.0.1.
max_connections = 1000000
max_connections_per_ip = 1000000
max_unauthenticated = 1000000
max_unauthenticated_per_ip = 1000000

[auth]
# Every account registers and logs in from 127.0.0.1: the per-address throttle, which
# registrations share, must not get in the way.
max_failures = 1000000000

[http]
listen = []
listen_tls = []

# No federation, as for the other two.
[s2s]
enabled = false

[muc]
# The group chat scenarios measure throughput, not the per-occupant flood limit.
max_messages_per_sec = 1000000
EOF
    "$TARGET/release/jabberwock" --config "$dir/jabberwock.toml" serve 2> "$dir/server.log" &
    SERVER_PID=$!
    SERVER_PORT=$JW_PORT
}

start_prosody() {
    local dir=$WORK/prosody
    mkdir -p "$dir/data"
    make_cert "$dir"
    cat > "$dir/prosody.cfg.lua" <<EOF
-- Only when started as root: stay root instead of switching to the prosody user.
run_as_root = true
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
log = { warn = "$dir/prosody.log" }
network_backend = "epoll"

c2s_ports = { $PROSODY_PORT }
c2s_interfaces = { "127.0.0.1" }
c2s_require_encryption = true
http_ports = {}
https_ports = {}
modules_disabled = { "s2s" }
modules_enabled = {
    "roster"; "saslauth"; "tls"; "disco"; "carbons"; "pep"; "private"; "vcard4";
    "ping"; "register"; "mam"; "offline"; "limits";
}

-- Storage comparable to Jabberwock's: SQLite, every chat message archived.
storage = "sql"
sql = { driver = "SQLite3", database = "prosody.sqlite" }
default_archive_policy = true
authentication = "internal_hashed"
allow_registration = true

-- The default config caps each client connection at 10 kB/s; a benchmark of message
-- throughput raises it (127.0.0.1 is exempt from the registration throttle by default).
limits = { c2s = { rate = "100mb/s" } }

ssl = { certificate = "$dir/cert.pem"; key = "$dir/key.pem" }
VirtualHost "$DOMAIN"

-- Group chat with every room archived (mod_muc_mam), as Jabberwock's rooms are.
Component "conference.$DOMAIN" "muc"
    modules_enabled = { "muc_mam" }
    muc_log_all_rooms = true
EOF
    prosody --config "$dir/prosody.cfg.lua" -F > "$dir/stdout.log" 2>&1 &
    SERVER_PID=$!
    SERVER_PORT=$PROSODY_PORT
}

start_ejabberd() {
    local dir=$WORK/ejabberd
    mkdir -p "$dir/spool" "$dir/logs"
    make_cert "$dir"
    cat "$dir/cert.pem" "$dir/key.pem" > "$dir/server.pem"
    cp /etc/ejabberd/inetrc "$dir/"
    cat > "$dir/ejabberd.yml" <<EOF
hosts: ["$DOMAIN"]
loglevel: warning
certfiles: ["$dir/server.pem"]
# Storage comparable to Jabberwock's: SQLite, SCRAM-hashed passwords.
sql_type: sqlite
sql_database: "$dir/spool/ejabberd.db"
default_db: sql
auth_method: sql
auth_password_format: scram
listen:
  - port: $EJABBERD_PORT
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: true
    # The default accept backlog is 5: a burst of connections overflows it and stalls
    # for seconds in TCP retransmits. Prosody's default is 128, Jabberwock's 1024.
    backlog: 1024
    # No shaper (the default config limits clients to 1000 B/s), and a deeper queue
    # per session than the default 10000 stanzas.
    max_fsm_queue: 100000
acl:
  loopback:
    ip: ["127.0.0.0/8"]
access_rules:
  register:
    allow: all
modules:
  mod_disco: {}
  mod_roster: {}
  mod_register:
    access: register
    ip_access: all
  mod_mam:
    # Archive every chat message, as Jabberwock and Prosody do by default.
    default: always
  mod_offline: {}
  mod_ping: {}
  mod_private: {}
  mod_vcard: {}
  mod_stream_mgmt: {}
  mod_muc:
    host: "conference.$DOMAIN"
    access_create: all
    # Rooms of up to 1000 occupants, as the group chat scenarios use.
    max_users: 1000
    max_users_presence: 1000
    default_room_options:
      # Every room archived, as Jabberwock's rooms are.
      mam: true
# Every account registers from 127.0.0.1 (the default allows one per 600 s per address).
registration_timeout: infinity
EOF
    cat > "$dir/ejabberdctl.cfg" <<EOF
ERLANG_NODE=compare@localhost
# A fixed distribution port instead of epmd, on loopback.
ERL_DIST_PORT=$EJABBERD_DIST_PORT
INET_DIST_INTERFACE=127.0.0.1
EJABBERD_PID_PATH=$dir/ejabberd.pid
EOF
    [ "$(id -u)" = 0 ] && chown -R ejabberd: "$dir"
    local ctl=(ejabberdctl --config-dir "$dir" --config "$dir/ejabberd.yml" --ctl-config "$dir/ejabberdctl.cfg"
        --spool "$dir/spool" --logs "$dir/logs")
    if [ "$(id -u)" = 0 ]; then
        # Started as root, ejabberdctl switches to the ejabberd user with su, whose PAM
        # session (pam_limits) puts the open-file limit back to 1024: past ~1000
        # connections every accept fails ("too many open files" in its log) and logins
        # stall. Switch user without PAM instead, so that ejabberd inherits this script's
        # limit as the other two servers do.
        ctl=(setpriv --reuid ejabberd --regid ejabberd --init-groups
            env HOME="$(getent passwd ejabberd | cut -d: -f6)" "${ctl[@]}")
    fi
    (cd "$dir" && "${ctl[@]}" start)
    for _ in $(seq 1 150); do
        [ -s "$dir/ejabberd.pid" ] && break
        sleep 0.2
    done
    SERVER_PID=$(cat "$dir/ejabberd.pid")
    SERVER_STOP="${ctl[*]} stop"
    SERVER_PORT=$EJABBERD_PORT
}

server_version() {
    case $1 in
        jabberwock) echo "jabberwock $(git -C "$ROOT" rev-parse --short HEAD) (release build)" ;;
        prosody) echo "prosody $(dpkg-query -W -f='${Version}' prosody)" ;;
        ejabberd) echo "ejabberd $(dpkg-query -W -f='${Version}' ejabberd)" ;;
    esac
}

# --- scenarios -------------------------------------------------------------------------
LOAD="$TARGET/release/jabberwock-load"
run_load() {
    local server=$1 scenario=$2 port=$3; shift 3
    [[ " $SCENARIOS " == *" $scenario "* ]] || return 0
    log "$server: $scenario"
    # In the background so that a signal reaches the traps at once. A failed scenario
    # (lost messages, refused sessions) is in its report and in the table.
    "$LOAD" --addr "127.0.0.1:$port" --pid "$SERVER_PID" --domain "$DOMAIN" \
        --users-password "$PASSWORD" --user-prefix "$scenario" \
        --summary "$OUT/$server-$scenario.txt" "$@" > "$OUT/$server-$scenario.md" 2> "$OUT/$server-$scenario.log" &
    LOAD_PID=$!
    wait "$LOAD_PID" || log "$server: $scenario FAILED (see $OUT/$server-$scenario.md)"
    LOAD_PID=""
}

run_server() {
    local server=$1 port
    "start_$server"
    port=$SERVER_PORT
    wait_for_port "$port" "$SERVER_PID"
    log "$server listening on 127.0.0.1:$port (pid $SERVER_PID)"
    run_load "$server" idle "$port" --sessions "$IDLE_SESSIONS" --ramp-per-sec "$RAMP" --concurrency 200 \
        --duration-secs 0
    run_load "$server" logins "$port" --sessions "$LOGIN_SESSIONS" --ramp-per-sec 0 --concurrency 200 \
        --duration-secs 0 --idle-secs 1
    run_load "$server" chat "$port" --sessions "$CHAT_SESSIONS" --pairs $((CHAT_SESSIONS / 2)) \
        --ramp-per-sec "$RAMP" --step-up --message-rate "$START_RATE" --step-factor "$STEP_FACTOR" --duration-secs "$STEP_SECS" \
        --drain-secs 30
    run_load "$server" presence "$port" --sessions "$PRESENCE_SESSIONS" --ramp-per-sec "$RAMP" \
        --roster "$ROSTER" --presence-rounds "$PRESENCE_ROUNDS" --duration-secs 0 --drain-secs 60
    # Group chat: rooms of 10, 100 and 1000; each starts at about 200 deliveries/s (a
    # room of 1000 at one message a second).
    local rooms size rooms_size
    for rooms_size in "20 10" "2 100" "1 1000"; do
        read -r rooms size <<< "$rooms_size"
        run_load "$server" "muc$size" "$port" --sessions $((rooms * size)) --ramp-per-sec "$RAMP" \
            --rooms "$rooms" --room-size "$size" --step-up --message-rate "$(awk -v s="$size" 'BEGIN { r = 200 / s; print (r < 1 ? 1 : r) }')" \
            --step-factor "$STEP_FACTOR" --duration-secs "$STEP_SECS" --drain-secs 30
    done
    stop_server
}

# --- the table -------------------------------------------------------------------------
# fig SERVER SCENARIO KEY: a figure from a summary file, or "-".
fig() {
    awk -v k="$3" '$1 == k { print $2; found = 1 } END { if (!found) print "-" }' "$OUT/$1-$2.txt" 2>/dev/null \
        || echo "-"
}
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f×", a / b }'
}
# lost SERVER: lost deliveries over all scenarios (the tool's exit status covers the rest).
lost() {
    local total=0 v key
    for key in "chat peak_lost" "chat half_peak_lost" "presence presence_lost" \
        "muc10 peak_lost" "muc10 half_peak_lost" "muc100 peak_lost" "muc100 half_peak_lost" \
        "muc1000 peak_lost" "muc1000 half_peak_lost"; do
        v=$(fig "$1" ${key})
        [ "$v" = "-" ] || total=$((total + v))
    done
    echo "$total"
}

table() {
    local rows=(
        "idle|tcp_rss_per_session_kib|server RSS per idle TLS session, KiB ((after − before) / N)"
        "idle|tcp_rss_slope_kib|server RSS per idle TLS session, KiB (slope N/2 → N)"
        "idle|tcp_logins_per_sec|logins/s while ramping $IDLE_SESSIONS idle sessions at $RAMP/s"
        "idle|tcp_setup_cpu_ms|server CPU per login, ms (TLS + PLAIN + bind + presence)"
        "logins|tcp_logins_per_sec|login storm: logins/s ($LOGIN_SESSIONS, 200 at once)"
        "chat|peak_msgs_per_sec|chat: peak delivered msg/s with p99 ≤ 50 ms ($CHAT_SESSIONS sessions)"
        "chat|peak_p99_ms|chat: p99 at the peak, ms"
        "chat|half_peak_rate|chat: half the peak, msg/s offered"
        "chat|half_peak_p50_ms|chat: p50 at half the peak, ms"
        "chat|half_peak_p99_ms|chat: p99 at half the peak, ms"
        "chat|half_peak_max_ms|chat: max at half the peak, ms"
        "chat|half_peak_server_cpu_per_100k|chat: server CPU s per 100k messages (half the peak)"
        "chat|half_peak_tool_cpu_per_100k|chat: tool CPU s per 100k messages (half the peak)"
        "presence|presence_per_sec|presence storm: deliveries/s ($PRESENCE_SESSIONS sessions × $ROSTER contacts)"
        "presence|presence_p50_ms|presence storm: p50, ms"
        "presence|presence_p99_ms|presence storm: p99, ms"
        "presence|presence_max_ms|presence storm: max, ms"
        "presence|presence_server_cpu_per_100k|presence storm: server CPU s per 100k deliveries"
    )
    local size
    for size in 10 100 1000; do
        rows+=(
            "muc$size|peak_msgs_per_sec|rooms of $size: peak deliveries/s with p99 ≤ 50 ms"
            "muc$size|peak_p99_ms|rooms of $size: p99 at the peak, ms"
            "muc$size|half_peak_p99_ms|rooms of $size: p99 at half the peak, ms"
            "muc$size|half_peak_server_cpu_per_100k|rooms of $size: server CPU s per 100k deliveries (half the peak)"
            "muc$size|rss_per_occupant_kib|rooms of $size: server RSS per occupant, KiB (after entering)"
        )
    done
    local header="| figure |" line="| --- |"
    for s in $SERVERS; do header+=" $s |"; line+=" ---: |"; done
    local jw=0
    [[ " $SERVERS " == *" jabberwock "* ]] && jw=1
    if [ $jw = 1 ]; then
        for s in $SERVERS; do
            [ "$s" = jabberwock ] || { header+=" jabberwock / $s |"; line+=" ---: |"; }
        done
    fi
    echo "$header"
    echo "$line"
    local row scenario key label out v
    for row in "${rows[@]}"; do
        IFS='|' read -r scenario key label <<< "$row"
        [[ " $SCENARIOS " == *" $scenario "* ]] || continue
        out="| $label |"
        for s in $SERVERS; do out+=" $(fig "$s" "$scenario" "$key") |"; done
        if [ $jw = 1 ]; then
            for s in $SERVERS; do
                [ "$s" = jabberwock ] && continue
                v=$(ratio "$(fig jabberwock "$scenario" "$key")" "$(fig "$s" "$scenario" "$key")")
                out+=" $v |"
            done
        fi
        echo "$out"
    done
    out="| lost messages and presences (must be 0) |"
    for s in $SERVERS; do out+=" $(lost "$s") |"; done
    echo "$out"
    out="| scenarios that failed (the tool's checks) |"
    local sc failed
    for s in $SERVERS; do
        failed=""
        for sc in $SCENARIOS; do
            [ "$(fig "$s" "$sc" ok)" = 1 ] || failed+="$sc "
        done
        out+=" ${failed:-none} |"
    done
    echo "$out"
}

# --- main ------------------------------------------------------------------------------
install_packages
stop_packaged_daemon /run/prosody/prosody.pid lua
stop_packaged_daemon /run/ejabberd/ejabberd.pid beam
# Each side holds one descriptor per session; the servers inherit the limit.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
most=0
for sc in $SCENARIOS; do
    case $sc in
        idle) n=$IDLE_SESSIONS ;; logins) n=$LOGIN_SESSIONS ;;
        chat) n=$CHAT_SESSIONS ;; presence) n=$PRESENCE_SESSIONS ;;
        muc10|muc100) n=200 ;; muc1000) n=1000 ;;
        *) echo "unknown scenario: $sc" >&2; exit 2 ;;
    esac
    if [ "$n" -gt "$most" ]; then most=$n; fi
done
if [ "$(ulimit -n)" -lt $((most + 100)) ]; then
    echo "the open-file limit is $(ulimit -n) (hard limit $(ulimit -Hn)), and $most sessions need" \
        "about $((most + 100)) descriptors on each side: raise the hard limit or use fewer sessions" >&2
    exit 2
fi
log "building the release binaries"
(cd "$ROOT" && cargo build --release -q -p jabberwock -p jabberwock-load)

for s in $SERVERS; do
    run_server "$s"
done

{
    echo "$(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
    for s in $SERVERS; do echo "- $(server_version "$s")"; done
    echo
    table
} | tee "$OUT/results.md"
log "reports: $OUT"
