#!/usr/bin/env bash
# Head-to-head benchmark: Jabberwock (release build), Prosody and ejabberd, each with its
# own config on its own loopback ports. The same jabberwock-load scenarios run against
# each server in turn:
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
# in these configurations:
#
#   --storage recommended   (default) each server as its documentation recommends for one
#                           node: Jabberwock's defaults (SQLite), Prosody's internal
#                           storage, ejabberd's mnesia
#   --storage sqlite        all three on SQLite; --storage both: one, then the other
#   --archive on|off|both   (default both) every one-to-one message archived (XEP-0313) for
#                           every account, or none: Jabberwock with the operator default
#                           archive_default = "never", Prosody and ejabberd without mod_mam
#   --transport tcp|websocket|both
#                           (default both) the chat scenario over STARTTLS, or over RFC 7395
#                           WebSocket (plain ws:// on loopback, as behind a TLS-terminating
#                           proxy)
#
# The chat scenario runs once per storage, archive setting and transport, each archive
# setting on a server of its own (fresh data); the other scenarios once per storage, over
# TCP, on the server of the first archive setting. Two tables with the ratios
# Jabberwock/Prosody and Jabberwock/ejabberd are printed (and written to OUT/results.md):
# chat, one row group per storage, transport and archive setting; then the others. See
# bench/README.md.
#
#   bench/compare.sh                      # the full run (the issue's scenarios)
#   bench/compare.sh --quick              # a few minutes, for trying it out
#   bench/compare.sh --servers "jabberwock prosody" --chat-sessions 1000
#   bench/compare.sh --scenarios chat --start-rate 2    # some scenarios only
#   bench/compare.sh --scenarios chat --storage sqlite --archive on --transport tcp
#
# Installs prosody, lua-dbi-sqlite3, ejabberd and erlang-p1-sqlite3 with apt-get if they
# are missing (as root, or with sudo). Every server it starts is stopped by PID at exit.
set -euo pipefail

# --- options ---------------------------------------------------------------------------
SERVERS="jabberwock prosody ejabberd"
SCENARIOS="idle logins chat presence muc10 muc100 muc1000"
STORAGE=recommended
ARCHIVE=both
TRANSPORT=both
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
        --storage) STORAGE=$2; shift 2 ;;
        --archive) ARCHIVE=$2; shift 2 ;;
        --transport) TRANSPORT=$2; shift 2 ;;
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
# choices OPTION VALUE FIRST SECOND: the values VALUE stands for (`both`: FIRST SECOND).
choices() {
    case $2 in
        "$3"|"$4") echo "$2" ;;
        both) echo "$3 $4" ;;
        *) echo "--$1 is $3, $4 or both, not $2" >&2; return 2 ;;
    esac
}
STORAGES=$(choices storage "$STORAGE" recommended sqlite) || exit 2
ARCHIVES=$(choices archive "$ARCHIVE" on off) || exit 2
TRANSPORTS=$(choices transport "$TRANSPORT" tcp websocket) || exit 2

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d -t xmpp-compare-XXXXXX)
# ejabberdctl runs the server as the `ejabberd` user when started as root.
chmod 755 "$WORK"
OUT=${OUT:-$WORK/results}
mkdir -p "$OUT"
DOMAIN=localhost
PASSWORD=load-test-password
# Loopback ports of this benchmark (other services on the machine use 5222, 52xx): each
# server's STARTTLS port, then its plain HTTP port for WebSocket.
JW_PORT=16100 JW_DIRECT_PORT=16101 JW_HTTP_PORT=16102
PROSODY_PORT=16200 PROSODY_HTTP_PORT=16202
EJABBERD_PORT=16300 EJABBERD_DIST_PORT=16301 EJABBERD_HTTP_PORT=16302

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
# The running server: its process (measured, and killed at exit), its client port, its
# WebSocket port, and the command that stops it gracefully, if any.
SERVER_PID=""
SERVER_PORT=""
SERVER_WS_PORT=""
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

# start_SERVER STORAGE ARCHIVE DIR: starts the server in the empty directory DIR.
# Jabberwock has one storage, SQLite, whatever STORAGE says.
start_jabberwock() {
    local archive=$2 dir=$3 archive_default=""
    if [ "$archive" = off ]; then
        archive_default='# The operator default: no account archives until it asks to (XEP-0313 prefs).
archive_default = "never"'
    fi
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

[http]
# WebSocket over plain HTTP. 127.0.0.1 is a trusted proxy by default: the load tool's
# X-Forwarded-Proto: https stands for a TLS-terminating proxy, and PLAIN is offered.
listen = ["127.0.0.1:$JW_HTTP_PORT"]
listen_tls = []

# No federation, as for the other two.
[s2s]
enabled = false

$(cat "$ROOT/bench/load-limits.toml")
$archive_default
EOF
    "$TARGET/release/jabberwock" --config "$dir/jabberwock.toml" serve 2> "$dir/server.log" &
    SERVER_PID=$!
    SERVER_PORT=$JW_PORT SERVER_WS_PORT=$JW_HTTP_PORT
}

start_prosody() {
    local storage=$1 archive=$2 dir=$3 storage_config mam=""
    case $storage in
        # Prosody's default, the one its packaged config and its mod_mam documentation use.
        recommended) storage_config='storage = "internal"' ;;
        sqlite) storage_config='storage = "sql"
sql = { driver = "SQLite3", database = "prosody.sqlite" }' ;;
    esac
    # Without archiving, no mod_mam: the packaged config leaves it out.
    [ "$archive" = on ] && mam='"mam";'
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
-- WebSocket (mod_websocket) over plain HTTP. 127.0.0.1 is among Prosody's default
-- trusted_proxies: the load tool's X-Forwarded-Proto: https marks the session secure, as
-- behind a TLS-terminating proxy, and PLAIN is offered.
http_ports = { $PROSODY_HTTP_PORT }
http_interfaces = { "127.0.0.1" }
https_ports = {}
-- Requests name 127.0.0.1 as their host: serve them as the virtual host's.
http_default_host = "$DOMAIN"
modules_disabled = { "s2s" }
modules_enabled = {
    "roster"; "saslauth"; "tls"; "disco"; "carbons"; "pep"; "private"; "vcard4";
    "ping"; "register"; "offline"; "limits"; "websocket"; $mam
}

$storage_config
-- Every chat message archived (mod_mam's default), when mod_mam is on.
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
    SERVER_PORT=$PROSODY_PORT SERVER_WS_PORT=$PROSODY_HTTP_PORT
}

start_ejabberd() {
    local storage=$1 archive=$2 dir=$3 storage_config mam="" room_mam=""
    case $storage in
        # mnesia, ejabberd's default for every store (default_db, auth_method: internal).
        # ejabberd warns at start that mod_mam on mnesia is not recommended (a 2 GB
        # limit) and advises SQL, SQLite for small servers: that is --storage sqlite.
        recommended) storage_config='# mnesia (the default), in the spool directory.' ;;
        # The Debian build has the driver as erlang-p1-sqlite3.
        sqlite) storage_config="sql_type: sqlite
sql_database: \"$dir/spool/ejabberd.db\"
default_db: sql
auth_method: sql" ;;
    esac
    # Without archiving, no mod_mam: the packaged config leaves it out.
    if [ "$archive" = on ]; then
        mam='  mod_mam:
    # Archive every chat message, as Jabberwock and Prosody do by default (ejabberd
    # archives nothing unless the client asks).
    default: always'
        room_mam='    default_room_options:
      # Every room archived, as Jabberwock'"'"'s rooms are.
      mam: true'
    fi
    mkdir -p "$dir/spool" "$dir/logs"
    make_cert "$dir"
    cat "$dir/cert.pem" "$dir/key.pem" > "$dir/server.pem"
    cp /etc/ejabberd/inetrc "$dir/"
    cat > "$dir/ejabberd.yml" <<EOF
hosts: ["$DOMAIN"]
loglevel: warning
certfiles: ["$dir/server.pem"]
$storage_config
# SCRAM-hashed passwords, as the packaged config has (4096 rounds, as Jabberwock).
auth_password_format: scram
listen:
  - port: $EJABBERD_PORT
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: true
    # The default accept backlog is 5: a burst of connections overflows it and stalls
    # for seconds in TCP retransmits. Prosody's default is 128, Jabberwock's 1024.
    backlog: 1024
  # WebSocket (ejabberd_http_ws) over plain HTTP: ejabberd offers PLAIN on it as on any
  # stream that does not require TLS.
  - port: $EJABBERD_HTTP_PORT
    ip: "127.0.0.1"
    module: ejabberd_http
    backlog: 1024
    request_handlers:
      /xmpp-websocket: ejabberd_http_ws
# No shaper (the default config limits clients to 1000 B/s), and a deeper queue per
# session than the default 10000 stanzas, on both listeners.
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
$mam
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
$room_mam
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
    SERVER_PORT=$EJABBERD_PORT SERVER_WS_PORT=$EJABBERD_HTTP_PORT
}

server_version() {
    case $1 in
        jabberwock) echo "jabberwock $JABBERWOCK_REVISION (release build)" ;;
        prosody) echo "prosody $(dpkg-query -W -f='${Version}' prosody)" ;;
        ejabberd) echo "ejabberd $(dpkg-query -W -f='${Version}' ejabberd)" ;;
    esac
}

# describe STORAGE ARCHIVE SERVER: the server's configuration, for the tables.
describe() {
    local text
    case $3/$1 in
        jabberwock/*) text="SQLite (WAL)" ;;
        prosody/recommended) text="internal storage" ;;
        prosody/sqlite) text="SQLite (storage = \"sql\")" ;;
        ejabberd/recommended) text="mnesia" ;;
        ejabberd/sqlite) text="SQLite (sql_type: sqlite)" ;;
    esac
    case $3/$2 in
        jabberwock/on) text+=", archive_default = \"always\" (the default)" ;;
        jabberwock/off) text+=", archive_default = \"never\"" ;;
        prosody/on) text+=", mod_mam, default_archive_policy = true" ;;
        ejabberd/on) text+=", mod_mam default: always" ;;
        */off) text+=", no mod_mam" ;;
    esac
    echo "$text"
}

# --- scenarios -------------------------------------------------------------------------
LOAD="$TARGET/release/jabberwock-load"
wants() { [[ " $SCENARIOS " == *" $1 "* ]]; }

# run_load STEM PREFIX ARGS...: one run of the tool against the running server, its
# report in OUT/STEM.md and its figures in OUT/STEM.txt; the accounts are PREFIX0, … .
run_load() {
    local stem=$1 prefix=$2; shift 2
    log "$stem"
    # In the background so that a signal reaches the traps at once. A failed scenario
    # (lost messages, refused sessions) is in its report and in the table.
    "$LOAD" --addr "127.0.0.1:$SERVER_PORT" --pid "$SERVER_PID" --domain "$DOMAIN" \
        --users-password "$PASSWORD" --user-prefix "$prefix" \
        --summary "$OUT/$stem.txt" "$@" > "$OUT/$stem.md" 2> "$OUT/$stem.log" &
    LOAD_PID=$!
    wait "$LOAD_PID" || log "$stem FAILED (see $OUT/$stem.md)"
    LOAD_PID=""
}

# The results of a run are OUT/STEM.md (the report), .txt (its figures) and .log:
# stem STORAGE SCENARIO SERVER, and chat_stem STORAGE TRANSPORT ARCHIVE SERVER.
stem() { echo "$1/$3-$2"; }
chat_stem() { echo "$1/$4-chat-$2-archive-$3"; }

# run_server SERVER STORAGE: every scenario against SERVER on STORAGE, a fresh server
# (and data) per archive setting.
run_server() {
    local server=$1 storage=$2 archive dir first=1 transport ws
    mkdir -p "$OUT/$storage"
    for archive in $ARCHIVES; do
        [ $first = 1 ] || wants chat || break
        dir=$WORK/$server-$storage-archive-$archive
        mkdir -p "$dir"
        "start_$server" "$storage" "$archive" "$dir"
        wait_for_port "$SERVER_PORT" "$SERVER_PID"
        wait_for_port "$SERVER_WS_PORT" "$SERVER_PID"
        log "$server ($(describe "$storage" "$archive" "$server")) on 127.0.0.1:$SERVER_PORT, WebSocket on :$SERVER_WS_PORT (pid $SERVER_PID)"
        if [ $first = 1 ]; then
            wants idle && run_load "$(stem "$storage" idle "$server")" idle --sessions "$IDLE_SESSIONS" \
                --ramp-per-sec "$RAMP" --concurrency 200 --duration-secs 0
            wants logins && run_load "$(stem "$storage" logins "$server")" logins --sessions "$LOGIN_SESSIONS" \
                --ramp-per-sec 0 --concurrency 200 --duration-secs 0 --idle-secs 1
        fi
        if wants chat; then
            for transport in $TRANSPORTS; do
                ws=()
                [ "$transport" = websocket ] && ws=(--ws-addr "127.0.0.1:$SERVER_WS_PORT")
                run_load "$(chat_stem "$storage" "$transport" "$archive" "$server")" "chat$transport" \
                    --transport "$transport" "${ws[@]}" --sessions "$CHAT_SESSIONS" --pairs $((CHAT_SESSIONS / 2)) \
                    --ramp-per-sec "$RAMP" --step-up --message-rate "$START_RATE" --step-factor "$STEP_FACTOR" \
                    --duration-secs "$STEP_SECS" --drain-secs 30
            done
        fi
        if [ $first = 1 ]; then
            wants presence && run_load "$(stem "$storage" presence "$server")" presence --sessions "$PRESENCE_SESSIONS" \
                --ramp-per-sec "$RAMP" --roster "$ROSTER" --presence-rounds "$PRESENCE_ROUNDS" --duration-secs 0 --drain-secs 60
            # Group chat: rooms of 10, 100 and 1000; each starts at about 200 deliveries/s (a
            # room of 1000 at one message a second).
            local rooms size rooms_size
            for rooms_size in "20 10" "2 100" "1 1000"; do
                read -r rooms size <<< "$rooms_size"
                wants "muc$size" || continue
                run_load "$(stem "$storage" "muc$size" "$server")" "muc$size" --sessions $((rooms * size)) --ramp-per-sec "$RAMP" \
                    --rooms "$rooms" --room-size "$size" --step-up \
                    --message-rate "$(awk -v s="$size" 'BEGIN { r = 200 / s; print (r < 1 ? 1 : r) }')" \
                    --step-factor "$STEP_FACTOR" --duration-secs "$STEP_SECS" --drain-secs 30
            done
        fi
        stop_server
        first=0
    done
}

# --- the tables ------------------------------------------------------------------------
# fig STEM KEY: a figure from a summary file, or "-".
fig() {
    awk -v k="$2" '$1 == k { print $2; found = 1 } END { if (!found) print "-" }' "$OUT/$1.txt" 2>/dev/null \
        || echo "-"
}
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f×", a / b }'
}
# The servers Jabberwock's figures are divided by (none without Jabberwock).
ratio_servers() {
    [[ " $SERVERS " == *" jabberwock "* ]] || return 0
    local s
    for s in $SERVERS; do [ "$s" = jabberwock ] || echo "$s"; done
}
columns() {
    local header="| figure |" line="| --- |" s
    for s in $SERVERS; do header+=" $s |"; line+=" ---: |"; done
    for s in $(ratio_servers); do header+=" jabberwock / $s |"; line+=" ---: |"; done
    echo "$header"
    echo "$line"
}
# figure_row LABEL KEY STEM_OF...: figure KEY per server (STEM_OF... SERVER names its
# run), and Jabberwock's ratios to the others.
figure_row() {
    local label=$1 key=$2 s; shift 2
    local out="| $label |"
    for s in $SERVERS; do out+=" $(fig "$("$@" "$s")" "$key") |"; done
    for s in $(ratio_servers); do
        out+=" $(ratio "$(fig "$("$@" jabberwock)" "$key")" "$(fig "$("$@" "$s")" "$key")") |"
    done
    echo "$out"
}
# text_row LABEL COMMAND...: the output of COMMAND ... SERVER per server, nothing under
# the ratios.
text_row() {
    local out="| $1 |" s; shift
    for s in $SERVERS; do out+=" $("$@" "$s") |"; done
    for s in $(ratio_servers); do out+=" |"; done
    echo "$out"
}
# total_of KEYS STEM: the sum of the figures KEYS of one run ("-" counts as 0).
total_of() {
    local total=0 key v
    for key in $1; do
        v=$(fig "$2" "$key")
        [ "$v" = "-" ] || total=$((total + v))
    done
    echo "$total"
}
# ok STEM: whether the run passed the tool's checks (no lost message, no failed session).
ok() { [ "$(fig "$1" ok)" = 1 ]; }

transport_label() {
    case $1 in
        tcp) echo "TCP with STARTTLS" ;;
        websocket) echo "WebSocket, plain ws:// on loopback" ;;
    esac
}
storage_label() {
    case $1 in
        recommended) echo "recommended configurations" ;;
        sqlite) echo "all on SQLite" ;;
    esac
}

# The chat table: one row group per storage, transport and archive setting.
chat_lost() { total_of "peak_lost half_peak_lost" "$(chat_stem "$@")"; }
chat_checks() {
    local stem
    stem=$(chat_stem "$@")
    if ok "$stem"; then
        echo passed
    elif grep -q "the first rate was past the limit" "$OUT/$stem.md" 2>/dev/null; then
        echo "no peak: p99 > 50 ms at the first rate (--start-rate)"
    else
        echo FAILED
    fi
}
chat_table() {
    columns
    local storage transport archive
    for storage in $STORAGES; do
        for transport in $TRANSPORTS; do
            for archive in $ARCHIVES; do
                local group=("$storage" "$transport" "$archive")
                text_row "**$(transport_label "$transport"), archive $archive, $(storage_label "$storage")**" true
                text_row "configuration" describe "$storage" "$archive"
                figure_row "chat peak: delivered msg/s with p99 ≤ 50 ms, 0 lost ($CHAT_SESSIONS sessions)" \
                    peak_msgs_per_sec chat_stem "${group[@]}"
                figure_row "p99 at the peak, ms" peak_p99_ms chat_stem "${group[@]}"
                figure_row "half the peak: msg/s offered" half_peak_rate chat_stem "${group[@]}"
                figure_row "p50 at half the peak, ms" half_peak_p50_ms chat_stem "${group[@]}"
                figure_row "p99 at half the peak, ms" half_peak_p99_ms chat_stem "${group[@]}"
                figure_row "server CPU s per 100k messages at half the peak" half_peak_server_cpu_per_100k \
                    chat_stem "${group[@]}"
                text_row "lost messages (must be 0)" chat_lost "${group[@]}"
                text_row "the tool's checks" chat_checks "${group[@]}"
            done
        done
    done
}

# The table of the other scenarios on STORAGE (over TCP, the first archive setting).
others_lost() {
    local total=0 scenario keys
    for scenario in presence muc10 muc100 muc1000; do
        wants "$scenario" || continue
        keys="peak_lost half_peak_lost"
        [ "$scenario" = presence ] && keys=presence_lost
        total=$((total + $(total_of "$keys" "$(stem "$1" "$scenario" "$2")")))
    done
    echo "$total"
}
others_failed() {
    local failed="" scenario
    for scenario in $SCENARIOS; do
        [ "$scenario" = chat ] || ok "$(stem "$1" "$scenario" "$2")" || failed+="$scenario "
    done
    echo "${failed:-none}"
}
others_table() {
    local storage=$1 rows=(
        "idle|tcp_rss_per_session_kib|server RSS per idle TLS session, KiB ((after − before) / N)"
        "idle|tcp_rss_slope_kib|server RSS per idle TLS session, KiB (slope N/2 → N)"
        "idle|tcp_logins_per_sec|logins/s while ramping $IDLE_SESSIONS idle sessions at $RAMP/s"
        "idle|tcp_setup_cpu_ms|server CPU per login, ms (TLS + PLAIN + bind + presence)"
        "logins|tcp_logins_per_sec|login storm: logins/s ($LOGIN_SESSIONS, 200 at once)"
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
    columns
    text_row "configuration" describe "$storage" "${ARCHIVES%% *}"
    local row scenario key label
    for row in "${rows[@]}"; do
        IFS='|' read -r scenario key label <<< "$row"
        wants "$scenario" || continue
        figure_row "$label" "$key" stem "$storage" "$scenario"
    done
    text_row "lost presences and room messages (must be 0)" others_lost "$storage"
    text_row "scenarios that failed (the tool's checks)" others_failed "$storage"
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
# Read at build time: commits made while the run goes on are not in the binary.
JABBERWOCK_REVISION=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)

for storage in $STORAGES; do
    for s in $SERVERS; do
        run_server "$s" "$storage"
    done
done

{
    echo "$(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
    for s in $SERVERS; do echo "- $(server_version "$s")"; done
    if wants chat; then
        echo
        echo "### Chat"
        echo
        chat_table
    fi
    if [ -n "$(for sc in $SCENARIOS; do [ "$sc" = chat ] || echo "$sc"; done)" ]; then
        for storage in $STORAGES; do
            echo
            echo "### Other scenarios: TCP with STARTTLS, archive ${ARCHIVES%% *}, $(storage_label "$storage")"
            echo
            others_table "$storage"
        done
    fi
} | tee "$OUT/results.md"
log "reports: $OUT"
