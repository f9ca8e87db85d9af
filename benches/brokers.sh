# Shared by the benchmark scripts (compare.sh, durable.sh, bridge.sh); source it, don't run it.
#
# Builds the release binaries, starts one broker at a time (Cairn, Mosquitto or rumqttd) on a free
# 127.0.0.1 port, waits until it listens, and stops it again (also on error or Ctrl-C, through
# install_cleanup).
#
# The sourcing script sets before use:
#   ROOT        the repository root
#   WORK        a temporary directory, removed by the cleanup
#   LOG_NAME    prefix of log lines (e.g. compare)
#   BROKERS     brokers to run, e.g. "cairn mosquitto" (build skips Cairn when absent)
#   MOSQUITTO   the Mosquitto binary
#   RUMQTTD     the rumqttd binary (only where BROKERS names rumqttd)
#   MQTT_VERSION   5 or 3.1.1: the protocol rumqttd's one listener speaks
#   RESULTS FAILURES   for record_result: the rows file and the count of failed runs
#   SECTIONS LOAD_AT_START   for section and print_host
# and may set:
#   PREBUILT_CAIRN  a cairn binary to measure instead of building one (e.g. a build with frame
#                   pointers, for perf; not CAIRN_…, which Cairn reads as configuration)
# and may set before each start:
#   CAIRN_DATA      Cairn's data directory (default: a fresh one under $WORK)
#   CAIRN_CONFIG    a TOML configuration file for Cairn (default: none, built-in defaults)
#   CAIRN_ENV       array of extra VAR=value settings for Cairn (e.g. CAIRN_STORE__FSYNC=false)
#   MOSQUITTO_PERSISTENCE   a directory: Mosquitto runs with `persistence true` there
#   MOSQUITTO_EXTRA         extra mosquitto.conf lines
#   TLS_CERT TLS_KEY        PEM certificate and key: Cairn and Mosquitto listen with TLS
#                           (rumqttd is not offered TLS; Cairn's listener then comes from a
#                           configuration file of its own, so not with CAIRN_CONFIG)
# Results: BROKER_PID and PORT of the running broker; CAIRN and LOAD after build.
# shellcheck shell=bash

BROKER_PID=""
PORT=""
CAIRN_DATA=""
CAIRN_CONFIG=""
CAIRN_ENV=()
MOSQUITTO_PERSISTENCE=""
MOSQUITTO_EXTRA=""
TLS_CERT=""
TLS_KEY=""

log() { echo "$LOG_NAME: $*" >&2; }
die() {
    log "$*"
    exit 1
}

# stop_process PID: SIGTERM, up to 5 s to exit, then SIGKILL.
stop_process() {
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

stop_broker() {
    [[ -n $BROKER_PID ]] || return 0
    stop_process "$BROKER_PID"
    BROKER_PID=""
}

cleanup() {
    stop_broker
    rm -rf "$WORK"
}

install_cleanup() {
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}

# The executable cargo reports for target $1 in its JSON messages on stdin.
executable_of() {
    grep -F "\"name\":\"$1\"" | grep -o '"executable":"[^"]*"' | tail -n 1 | cut -d'"' -f4
}

build() {
    cd "$ROOT" || die "cannot enter $ROOT"
    log "building release binaries"
    if [[ -n ${PREBUILT_CAIRN:-} ]]; then
        CAIRN=$PREBUILT_CAIRN
        [[ -x $CAIRN ]] || die "PREBUILT_CAIRN=$CAIRN is not an executable"
    elif [[ " $BROKERS " == *" cairn "* ]]; then
        CAIRN=$(cargo build --release --message-format=json-render-diagnostics | executable_of cairn)
        [[ -x $CAIRN ]] || die "cargo build --release produced no cairn binary"
    fi
    LOAD=$(cargo bench --bench load --no-run --message-format=json-render-diagnostics | executable_of load)
    [[ -x $LOAD ]] || die "cargo bench --no-run produced no load binary"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A free port below the kernel's ephemeral range: the load tool's own client sockets (a
# thousand of them for idle-memory) take ephemeral ports, and one of them once took the port
# picked for the next broker between the check and the bind.
pick_free_port() {
    local port first_ephemeral
    read -r first_ephemeral _ </proc/sys/net/ipv4/ip_local_port_range
    (( first_ephemeral > 12000 )) || die "the ephemeral port range starts at $first_ephemeral; no room below it"
    for _ in $(seq 100); do
        port=$((10000 + RANDOM % (first_ephemeral - 10000)))
        if ! port_in_use "$port"; then
            PORT=$port
            return
        fi
    done
    die "found no free port on 127.0.0.1"
}

# await_listening NAME PID PORT LOG: waits until process PID (NAME, logging to LOG) listens on
# PORT; dies when it exits first or after 10 s.
await_listening() {
    for _ in $(seq 100); do
        kill -0 "$2" 2>/dev/null || die "$1 exited at start-up; its log: $(cat "$4")"
        port_in_use "$3" && return
        sleep 0.1
    done
    die "$1 is not listening on 127.0.0.1:$3 after 10 s"
}

wait_until_listening() { await_listening "$1" "$BROKER_PID" "$PORT" "$WORK/$1.log"; }

start_cairn() {
    local data=${CAIRN_DATA:-$WORK/cairn-data.$RANDOM} config=${CAIRN_CONFIG:-}
    local listen=(--listen "127.0.0.1:$PORT")
    mkdir -p "$data"
    if [[ -n $TLS_CERT ]]; then
        [[ -z $config ]] || die "TLS_CERT and CAIRN_CONFIG cannot be used together"
        config=$WORK/cairn-tls.toml
        printf '[[listeners]]\nbind = "127.0.0.1:%s"\nkind = "tls"\n[listeners.tls]\ncert = "%s"\nkey = "%s"\n' \
            "$PORT" "$TLS_CERT" "$TLS_KEY" >"$config"
        listen=()
    fi
    # Queue limits as large as Mosquitto's below: overflow must not decide the comparison.
    env ${CAIRN_ENV[@]+"${CAIRN_ENV[@]}"} CAIRN_LIMITS__MAX_QUEUED_MESSAGES=10000000 \
        CAIRN_LIMITS__MAX_QUEUED_BYTES=1000000000000 CAIRN_LIMITS__MAX_QUEUED_BYTES_TOTAL=1000000000000 \
        "$CAIRN" serve ${config:+--config "$config"} ${listen[@]+"${listen[@]}"} \
        --data-dir "$data" >"$WORK/cairn.log" 2>&1 &
    BROKER_PID=$!
}

start_mosquitto() {
    local conf="$WORK/mosquitto.conf" persistence="persistence false"
    if [[ -n $MOSQUITTO_PERSISTENCE ]]; then
        mkdir -p "$MOSQUITTO_PERSISTENCE"
        persistence="persistence true
persistence_location $MOSQUITTO_PERSISTENCE/"
    fi
    local tls=""
    [[ -z $TLS_CERT ]] || tls="certfile $TLS_CERT
keyfile $TLS_KEY"
    cat >"$conf" <<EOF
listener $PORT 127.0.0.1
$tls
allow_anonymous true
$persistence
max_queued_messages 10000000
max_queued_bytes 0
log_dest stderr
log_type error
log_type warning
user $(id -un)
$MOSQUITTO_EXTRA
EOF
    "$MOSQUITTO" -c "$conf" >"$WORK/mosquitto.log" 2>&1 &
    BROKER_PID=$!
}

# rumqttd (crates.io: `cargo install rumqttd`), in RAM like Mosquitto without persistence: one
# listener of MQTT_VERSION's protocol, limits as large as the others' (connections, payloads
# of a megabyte, 100 messages in flight per connection, its default).
start_rumqttd() {
    local conf="$WORK/rumqttd.toml" listener=v4
    [[ $MQTT_VERSION == 5 ]] && listener=v5
    cat >"$conf" <<EOF
id = 0
[router]
id = 0
max_connections = 20010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[$listener.1]
name = "$listener-1"
listen = "127.0.0.1:$PORT"
next_connection_delay_ms = 0
[$listener.1.connections]
connection_timeout_ms = 60000
max_payload_size = 1048576
max_inflight_count = 100
dynamic_filters = true
EOF
    "$RUMQTTD" -q -c "$conf" >"$WORK/rumqttd.log" 2>&1 &
    BROKER_PID=$!
}

# start_broker NAME: a fresh NAME (cairn, mosquitto or rumqttd) listening on a free port.
start_broker() {
    pick_free_port
    "start_$1"
    wait_until_listening "$1"
}

# record_result ID BROKER ROUND LINE: prints the load tool's RESULT LINE (a missing one counts
# as failed). A failed run counts in FAILURES and shows the tool's stderr ($WORK/load.err);
# otherwise each field of LINE becomes a row "ID BROKER ROUND KEY VALUE" of $RESULTS.
record_result() {
    local id=$1 broker=$2 round=$3 line=${4:-RESULT status=failed} field
    echo "$line" >&2
    if [[ $line != *status=ok* ]]; then
        FAILURES=$((FAILURES + 1))
        sed 's/^/  load: /' "$WORK/load.err" >&2
        return
    fi
    for field in $line; do
        [[ $field == *=* ]] && echo "$id $broker $round ${field%%=*} ${field#*=}" >>"$RESULTS"
    done
}

# median FILE ID BROKER KEY: the median of column 5 over the rows "ID BROKER ROUND KEY VALUE"
# of FILE, or "-" without any.
median() {
    awk -v id="$2" -v broker="$3" -v key="$4" '$1 == id && $2 == broker && $4 == key { print $5 }' "$1" |
        sort -g |
        awk '{ v[NR] = $1 } END {
            if (NR == 0) { print "-"; exit }
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            if (m == int(m)) printf "%d\n", m; else printf "%.1f\n", m
        }'
}

# section NAME: whether $SECTIONS asks for section NAME.
section() { [[ " $SECTIONS " == *" $1 "* ]]; }

# value ID BROKER KEY: the median over rounds in $RESULTS, or "-".
value() { median "$RESULTS" "$@"; }

# ms MICROS: microseconds as milliseconds with one decimal.
ms() { awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else printf "%.1f", v / 1000 }'; }

# print_host: CPUs, kernel, memory, the disk under $WORK and the load average at the start
# ($LOAD_AT_START) and now.
print_host() {
    echo "Machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p' | head -n 1); $(uname -sr);" \
        "$(free -g | awk '/^Mem:/ { print $2 " GiB RAM" }')"
    echo "Disk under $WORK: $(df -h "$WORK" | awk 'NR == 2 { print $1 ", " $2 " (" $5 " used)" }');" \
        "$(findmnt -n -T "$WORK" -o FSTYPE,OPTIONS)"
    echo "Load average at start: $LOAD_AT_START; at end: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# ratio A B: A / B with two decimals, or "-" when either is missing or B is 0.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a == "-" || b == "-" || a == "" || b == "" || b == 0) print "-"; else printf "%.2f", a / b }'
}
