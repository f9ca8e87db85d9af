#!/usr/bin/env bash
# A gateway's bridge on this machine: Cairn's bridge versus Mosquitto's own bridge (Mosquitto as
# the gateway), both bridging `bench/#` out at QoS 1 to the same kind of upstream, a Mosquitto
# on 127.0.0.1 with `persistence true` and `max_queued_messages 0`. Driven by the load tool's
# bridge scenarios (benches/load/bridge.rs); gateways alternate round by round. Every broker
# started is stopped again, also on error or Ctrl-C.
#
# 1. Drain of a backlog: the upstream runs once so a persistent subscriber (clean session
#    false, `bench/#` QoS 1) can create its session there, then stops; the gateway starts with
#    its uplink down and PUBLISHERS publishers send MESSAGES QoS 1 messages to it (every one
#    acknowledged); then the upstream starts again on its saved state and the subscriber
#    reconnects as soon as it listens. Measured: the time from the upstream's start until the
#    subscriber has all MESSAGES (count, order per publisher, duplicates reported but allowed
#    for QoS 1), as msg/s, and the ratio Cairn/Mosquitto; also from the first message to the
#    last (the reconnect delay left out); and the CPU time the gateway and the upstream used
#    per message meanwhile (on 2 cores they share the machine with the subscriber, so the
#    gateway's CPU per message bounds the rate as much as its own speed does), and how often
#    each went to sleep (a wake-up costs both sides: the sender's write wakes the sleeper).
# 2. Local PUBACK latency during that drain: one more publisher on the gateway sends QoS 1 at
#    LOCAL_RATE msg/s to `local/latency` (not bridged); its PUBACK latency p50/p99 from the
#    first drained message to the last (and before, with the uplink down).
# 3. Storage writes per bridged message: the upstream up, a subscriber online there, one
#    publisher at WEAR_RATE msg/s; once messages flow and WEAR_WARMUP seconds have passed, the
#    gateway's /proc/<pid>/io write_bytes over WEAR_DURATION seconds per acknowledged message.
#    Mosquitto as the gateway runs twice: `persistence false` and `persistence true` (its
#    default autosave_interval, 1800 s).
# 4. Receive Maximum kept: the load tool itself plays the upstream (bridge-window), announcing
#    Receive Maximum UPSTREAM_RECEIVE_MAXIMUM (65,535 for 0) and acknowledging in batches 50 ms
#    after the first unacknowledged PUBLISH; the gateway, filled with WINDOW_MESSAGES while its
#    uplink was down, connects to it. Measured: the most PUBLISHes the bridge had
#    unacknowledged at once, which MQTT 5 bounds by the Receive Maximum [MQTT-3.3.4-7].
# Cairn's bridge: `[bridges.queue] max_messages = 1000000`, `reconnect_min = 1`,
# `reconnect_max = 2`, `max_inflight = BRIDGE_INFLIGHT`, otherwise defaults (fsync on,
# commit_window_ms 20). The upstream Mosquitto: `persistence true`, `max_queued_messages 0`,
# `max_inflight_messages UPSTREAM_RECEIVE_MAXIMUM` (its default, 20, is the Receive Maximum it
# announces; 0 announces none, which MQTT 5 reads as 65,535).
# Mosquitto's bridge: `cleansession false`, `restart_timeout 1 2`, `max_queued_messages 0`,
# `notifications false` (Cairn sends no state topic by default), `set_tcp_nodelay true` (see
# MOSQUITTO_GATEWAY_EXTRA), `persistence false` for the drain. Both speak BRIDGE_PROTOCOL
# upstream. Exit status 1 if any run failed its checks.
#
# Environment (defaults keep the whole run near 4 minutes on 2 cores):
#   ROUNDS=3                rounds; each runs every gateway once per section
#   MESSAGES=100000         backlog of the drain (split evenly over PUBLISHERS)
#   PUBLISHERS=1            publishers of the backlog
#   INFLIGHT=32             their inflight window (capped by the gateway's Receive Maximum)
#   LOCAL_RATE=500          msg/s of the latency publisher during the drain
#   WEAR_RATE=100 WEAR_WARMUP=3 WEAR_DURATION=10
#   UPLINK_DELAY_MS=0       sections 1-3 through a proxy (the load tool's) that delays each
#                           direction of the uplink by this much, as a WAN does: a cloud's
#                           PUBACK then comes a round trip (twice this) after the PUBLISH
#   BRIDGE_PROTOCOL=5       MQTT version of both bridges upstream: 5 or 3.1.1
#   MQTT_VERSION=5          MQTT version of the load tool's clients: 5 or 3.1.1
#   DRAIN_TIMEOUT=300       seconds the drain (and each wait in it) may take
#   UPSTREAM_RECEIVE_MAXIMUM=20   the upstream's max_inflight_messages (sections 1, 2 and 4)
#   BRIDGE_INFLIGHT=32      Cairn's bridge `max_inflight`, its own cap on the window
#   WINDOW_MESSAGES=2000    backlog of section 4
#   SECTIONS="drain wear window"  which runs to do (drain covers 1 and 2, wear is 3, window 4;
#                           window needs BRIDGE_PROTOCOL=5: a 3.1.1 server announces no limit)
#   GATEWAYS="cairn mosquitto"
#   MOSQUITTO_GATEWAY_EXTRA="set_tcp_nodelay true"   extra mosquitto.conf lines of Mosquitto
#                           as the gateway. Cairn turns Nagle's algorithm off on its sockets;
#                           Mosquitto's default keeps it on, and its PUBACKs then wait for the
#                           publisher's next message (a 2 ms p50 at 500 msg/s); "" measures that.
#   PIN=0                   1: the gateway alone on CPU 0, the upstream and the load tool
#                           on CPU 1 (taskset): a gateway with a core of its own, as when its
#                           upstream is another machine, and no scheduling between the two
#   MOSQUITTO=mosquitto
set -euo pipefail

ROUNDS=${ROUNDS:-3}
MESSAGES=${MESSAGES:-100000}
PUBLISHERS=${PUBLISHERS:-1}
INFLIGHT=${INFLIGHT:-32}
LOCAL_RATE=${LOCAL_RATE:-500}
WEAR_RATE=${WEAR_RATE:-100}
WEAR_WARMUP=${WEAR_WARMUP:-3}
WEAR_DURATION=${WEAR_DURATION:-10}
UPSTREAM_RECEIVE_MAXIMUM=${UPSTREAM_RECEIVE_MAXIMUM:-20}
BRIDGE_INFLIGHT=${BRIDGE_INFLIGHT:-32}
WINDOW_MESSAGES=${WINDOW_MESSAGES:-2000}
UPLINK_DELAY_MS=${UPLINK_DELAY_MS:-0}
BRIDGE_PROTOCOL=${BRIDGE_PROTOCOL:-5}
MQTT_VERSION=${MQTT_VERSION:-5}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-300}
SECTIONS=${SECTIONS:-drain wear window}
GATEWAYS=${GATEWAYS:-cairn mosquitto}
MOSQUITTO_GATEWAY_EXTRA=${MOSQUITTO_GATEWAY_EXTRA-set_tcp_nodelay true}
MOSQUITTO=${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}
PIN=${PIN:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-bridge.XXXXXX")
RESULTS="$WORK/results"
LOG_NAME=bridge
BROKERS=$GATEWAYS
FAILURES=0
# Longest any one load run may take before it counts as failed, seconds.
RUN_LIMIT=$((3 * DRAIN_TIMEOUT + WEAR_WARMUP + WEAR_DURATION + 60))
# shellcheck source=benches/brokers.sh
source "$ROOT/benches/brokers.sh"

UPSTREAM_PID=""
UPSTREAM_PORT=""
# What the upstream's and the load tool's commands run under: on CPU 1 with PIN=1.
ON_UPSTREAM_CPU=()
[[ $PIN != 1 ]] || ON_UPSTREAM_CPU=(taskset -c 1)
# The load tool's arguments for the delaying proxy (see delay_uplink); empty without one.
PROXY=()
# Where the gateways' bridges connect: the upstream, or the delaying proxy in front of it.
BRIDGE_PORT=""
# The drain's load tool while it runs in the background.
DRAIN_PID=""

# start_upstream DIR: the upstream Mosquitto on UPSTREAM_PORT, its persistence file in DIR
# (kept across its restarts).
start_upstream() {
    mkdir -p "$1"
    cat >"$1/mosquitto.conf" <<EOF
listener $UPSTREAM_PORT 127.0.0.1
allow_anonymous true
persistence true
persistence_location $1/
max_queued_messages 0
max_inflight_messages $UPSTREAM_RECEIVE_MAXIMUM
log_dest stderr
log_type error
log_type warning
user $(id -un)
EOF
    ${ON_UPSTREAM_CPU[@]+"${ON_UPSTREAM_CPU[@]}"} "$MOSQUITTO" -c "$1/mosquitto.conf" \
        >>"$WORK/upstream.log" 2>&1 &
    UPSTREAM_PID=$!
    await_listening upstream "$UPSTREAM_PID" "$UPSTREAM_PORT" "$WORK/upstream.log"
}

# stop_upstream: SIGTERM (Mosquitto saves its persistence file), as any broker is stopped.
stop_upstream() {
    [[ -n $UPSTREAM_PID ]] || return 0
    stop_process "$UPSTREAM_PID"
    UPSTREAM_PID=""
}

# delay_uplink: with UPLINK_DELAY_MS, the gateways' bridges connect to a free port of their
# own, where the load tool's run (given PROXY) puts its delaying proxy in front of the upstream.
delay_uplink() {
    PROXY=()
    ((UPLINK_DELAY_MS > 0)) || return 0
    pick_free_port
    while [[ $PORT == "$UPSTREAM_PORT" ]]; do pick_free_port; done
    BRIDGE_PORT=$PORT
    PROXY=(--delay-proxy "127.0.0.1:$BRIDGE_PORT" --uplink-delay
        "$(awk -v ms="$UPLINK_DELAY_MS" 'BEGIN { print ms / 1000 }')")
}

# A free port for the upstream, which keeps it across its restarts.
pick_upstream_port() {
    pick_free_port
    UPSTREAM_PORT=$PORT
    BRIDGE_PORT=$PORT
}

# The Cairn configuration of the gateway: one bridge to the upstream.
write_cairn_config() {
    CAIRN_CONFIG="$WORK/cairn.toml"
    cat >"$CAIRN_CONFIG" <<EOF
[[bridges]]
name = "bench"
addresses = ["127.0.0.1:$BRIDGE_PORT"]
protocol = "$BRIDGE_PROTOCOL"
client_id = "cairn-gateway"
reconnect_min = 1
reconnect_max = 2
max_inflight = $BRIDGE_INFLIGHT
[bridges.queue]
max_messages = 1000000
max_bytes = 1073741824
[[bridges.topics]]
filter = "bench/#"
direction = "out"
qos = 1
EOF
}

# The mosquitto.conf lines of Mosquitto's bridge to the upstream.
mosquitto_bridge() {
    local version=mqttv50
    [[ $BRIDGE_PROTOCOL == 5 ]] || version=mqttv311
    cat <<EOF
max_queued_messages 0
connection bench
address 127.0.0.1:$BRIDGE_PORT
bridge_protocol_version $version
clientid mosquitto-gateway
cleansession false
restart_timeout 1 2
notifications false
topic bench/# out 1
EOF
}

# start_gateway VARIANT: cairn, mosquitto (persistence false) or mosquitto-persistent, on a
# free port other than the upstream's; sets GATEWAY to the broker it runs.
start_gateway() {
    CAIRN_DATA=""
    MOSQUITTO_PERSISTENCE=""
    case $1 in
    cairn)
        GATEWAY=cairn
        CAIRN_ENV=(CAIRN_SYS_INTERVAL=1)
        write_cairn_config
        ;;
    mosquitto | mosquitto-persistent)
        GATEWAY=mosquitto
        MOSQUITTO_EXTRA="$MOSQUITTO_GATEWAY_EXTRA
$(mosquitto_bridge)"
        [[ $1 == mosquitto ]] || MOSQUITTO_PERSISTENCE="$WORK/gateway-data.$RANDOM"
        ;;
    *) die "unknown gateway $1" ;;
    esac
    pick_free_port
    while [[ $PORT == "$UPSTREAM_PORT" || $PORT == "$BRIDGE_PORT" ]]; do pick_free_port; done
    "start_$GATEWAY"
    wait_until_listening "$GATEWAY"
    # Every thread it has (those it starts later inherit the mask).
    [[ $PIN != 1 ]] || taskset -a -p -c 0 "$BROKER_PID" >/dev/null ||
        die "taskset could not move the gateway to CPU 0"
}

# The load tool's arguments common to every run (after pick_upstream_port).
common_args() {
    COMMON=(--upstream "127.0.0.1:$UPSTREAM_PORT" --mqtt-version "$MQTT_VERSION" --qos 1
        --drain-timeout "$DRAIN_TIMEOUT")
}

# load ARGS...: the load tool against the gateway (when running) and the upstream, its
# RESULT line on stdout ("" when it printed none).
load() {
    common_args
    timeout "$RUN_LIMIT" ${ON_UPSTREAM_CPU[@]+"${ON_UPSTREAM_CPU[@]}"} "$LOAD" "$@" "${COMMON[@]}" \
        2>"$WORK/load.err" | grep '^RESULT' || true
}

# cpu_ticks PID: user + system CPU time process PID has used so far, in clock ticks (0 if gone).
cpu_ticks() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    # Fields after the command name, which ends with ") ": utime and stime are the 12th and 13th.
    awk '{ print $12 + $13 }' <<<"${stat##*) }"
}

# sleeps PID: how often the threads of process PID have gone to sleep so far (their voluntary
# context switches), or 0 if it is gone.
sleeps() {
    cat /proc/"$1"/task/*/status 2>/dev/null |
        awk '/^voluntary_ctxt_switches:/ { n += $2 } END { print n + 0 }'
}

# field LINE KEY: the value of KEY in a RESULT line, or "".
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

# await_ready FILE PID: waits until FILE exists while process PID runs (60 s at most).
await_ready() {
    for _ in $(seq 600); do
        [[ -e $1 ]] && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# drain_run GATEWAY ROUND: sections 1 and 2 once on GATEWAY.
drain_run() {
    local gateway=$1 round=$2 line started="" ready="$WORK/ready" output="$WORK/drain.out"
    local per_publisher=$((MESSAGES / PUBLISHERS)) upstream_dir="$WORK/upstream-$gateway-$round"
    log "drain of $MESSAGES messages, round $round: $gateway"
    pick_upstream_port
    delay_uplink
    start_upstream "$upstream_dir"
    line=$(load --scenario bridge-session --label "$gateway")
    stop_upstream
    [[ $line == *status=ok* ]] || { record_result "drain" "$gateway" "$round" "$line"; return; }
    start_gateway "$gateway"
    line=$(load --scenario bridge-fill --broker "127.0.0.1:$PORT" --broker-pid "$BROKER_PID" \
        --label "$gateway" --publishers "$PUBLISHERS" --count "$per_publisher" --inflight "$INFLIGHT")
    record_result "fill" "$gateway" "$round" "$line"
    if [[ $line != *status=ok* ]]; then
        stop_broker
        return
    fi
    rm -f "$ready"
    common_args
    timeout "$RUN_LIMIT" ${ON_UPSTREAM_CPU[@]+"${ON_UPSTREAM_CPU[@]}"} "$LOAD" \
        --scenario bridge-drain --broker "127.0.0.1:$PORT" \
        --label "$gateway" --publishers "$PUBLISHERS" --count "$per_publisher" \
        --rate "$LOCAL_RATE" --warmup 2 --ready-file "$ready" "${COMMON[@]}" ${PROXY[@]+"${PROXY[@]}"} \
        >"$output" 2>"$WORK/load.err" &
    DRAIN_PID=$!
    local gateway_cpu_before=0 gateway_cpu_after=0 upstream_cpu=0
    local gateway_sleeps_before=0 gateway_sleeps_after=0 upstream_sleeps=0
    if await_ready "$ready" "$DRAIN_PID"; then
        gateway_cpu_before=$(cpu_ticks "$BROKER_PID")
        gateway_sleeps_before=$(sleeps "$BROKER_PID")
        started=$(date +%s%N)
        start_upstream "$upstream_dir"
    fi
    wait "$DRAIN_PID" || true
    DRAIN_PID=""
    gateway_cpu_after=$(cpu_ticks "$BROKER_PID")
    gateway_sleeps_after=$(sleeps "$BROKER_PID")
    if [[ -n $UPSTREAM_PID ]]; then
        upstream_cpu=$(cpu_ticks "$UPSTREAM_PID")
        upstream_sleeps=$(sleeps "$UPSTREAM_PID")
    fi
    line=$(grep '^RESULT' "$output" || true)
    record_result "drain" "$gateway" "$round" "$line"
    if [[ $line == *status=ok* ]]; then
        local last first expected
        last=$(field "$line" last_ns)
        first=$(field "$line" first_ns)
        expected=$(field "$line" expected)
        awk -v id=drain -v g="$gateway" -v r="$round" -v s="$started" -v f="$first" -v l="$last" \
            -v n="$expected" -v gc=$((gateway_cpu_after - gateway_cpu_before)) \
            -v uc="$upstream_cpu" -v hz="$(getconf CLK_TCK)" \
            -v gs=$((gateway_sleeps_after - gateway_sleeps_before)) -v us="$upstream_sleeps" 'BEGIN {
                printf "%s %s %s start_ms %.0f\n", id, g, r, (l - s) / 1e6
                printf "%s %s %s start_rate %.0f\n", id, g, r, n / ((l - s) / 1e9)
                printf "%s %s %s first_ms %.0f\n", id, g, r, (f - s) / 1e6
                printf "%s %s %s flow_rate %.0f\n", id, g, r, n / ((l - f) / 1e9)
                printf "%s %s %s gateway_cpu_us %.1f\n", id, g, r, gc / hz * 1e6 / n
                printf "%s %s %s upstream_cpu_us %.1f\n", id, g, r, uc / hz * 1e6 / n
                printf "%s %s %s gateway_sleeps %.1f\n", id, g, r, gs * 100 / n
                printf "%s %s %s upstream_sleeps %.1f\n", id, g, r, us * 100 / n
            }' >>"$RESULTS"
    fi
    stop_broker
    stop_upstream
}

# wear_run VARIANT ROUND: section 3 once on VARIANT (cairn, mosquitto, mosquitto-persistent).
wear_run() {
    local variant=$1 round=$2 line stats=()
    log "storage writes at $WEAR_RATE msg/s, round $round: $variant"
    [[ $variant != cairn ]] || stats=(--store-stats)
    pick_upstream_port
    delay_uplink
    start_upstream "$WORK/upstream-wear-$variant-$round"
    start_gateway "$variant"
    line=$(load --scenario bridge-wear --broker "127.0.0.1:$PORT" --broker-pid "$BROKER_PID" \
        --label "$variant" --rate "$WEAR_RATE" --warmup "$WEAR_WARMUP" --duration "$WEAR_DURATION" \
        ${stats[@]+"${stats[@]}"} ${PROXY[@]+"${PROXY[@]}"})
    record_result "wear" "$variant" "$round" "$line"
    stop_broker
    stop_upstream
}

# window_run GATEWAY ROUND: section 4 once on GATEWAY.
window_run() {
    local gateway=$1 round=$2 line announced=$UPSTREAM_RECEIVE_MAXIMUM
    ((announced > 0)) || announced=65535
    log "Receive Maximum $announced kept, round $round: $gateway"
    pick_upstream_port
    start_gateway "$gateway"
    line=$(load --scenario bridge-fill --broker "127.0.0.1:$PORT" --broker-pid "$BROKER_PID" \
        --label "$gateway" --publishers 1 --count "$WINDOW_MESSAGES" --inflight "$INFLIGHT")
    if [[ $line == *status=ok* ]]; then
        line=$(load --scenario bridge-window --label "$gateway" --publishers 1 \
            --count "$WINDOW_MESSAGES" --receive-maximum "$announced")
    fi
    record_result "window" "$gateway" "$round" "$line"
    stop_broker
}

# range ID GATEWAY KEY: "min-max" over rounds, or "-".
range() {
    awk -v id="$1" -v g="$2" -v key="$3" '$1 == id && $2 == g && $4 == key {
            if (n == 0 || $5 < lo) lo = $5
            if (n == 0 || $5 > hi) hi = $5
            n++
        }
        END { if (n) printf "%g-%g\n", lo, hi; else print "-" }' "$RESULTS"
}

# secs MILLIS: milliseconds as seconds with two decimals.
secs() { awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else printf "%.2f", v / 1000 }'; }

# sum FILE ID GATEWAY KEY: the sum of column 5 over the rows of FILE, or "-".
sum() {
    awk -v id="$2" -v g="$3" -v key="$4" '$1 == id && $2 == g && $4 == key { s += $5; n++ }
        END { if (n) print s; else print "-" }' "$1"
}

print_machine() {
    print_host
    echo "Mosquitto $("$MOSQUITTO" -h 2>/dev/null | sed -n 's/^mosquitto version //p'); bridges speak" \
        "MQTT $BRIDGE_PROTOCOL upstream, the load tool MQTT $MQTT_VERSION; QoS 1, 64-byte payloads"
}

print_drain() {
    local gateway format='%-10s %9s %8s %11s %9s %10s %13s %5s %7s %7s %8s %8s %7s %7s %9s %9s\n'
    echo
    echo "1-2. Drain of $MESSAGES messages ($PUBLISHERS publisher(s), $INFLIGHT in flight) to the" \
        "upstream; local PUBACK latency at $LOCAL_RATE msg/s (medians of $ROUNDS rounds)"
    echo "   The upstream's max_inflight_messages: $UPSTREAM_RECEIVE_MAXIMUM; Cairn's bridge" \
        "max_inflight: $BRIDGE_INFLIGHT"
    [[ $PIN != 1 ]] || echo "   PIN=1: the gateway alone on CPU 0, the upstream and the load tool on CPU 1"
    print_uplink
    # shellcheck disable=SC2059 # the format is the table's, shared by every row
    printf "$format" gateway fill-msg/s start-s drain-msg/s connect-s flow-msg/s flow-range dups \
        p50-ms p99-ms idle-p50 idle-p99 gw-cpu up-cpu gw-sleeps up-sleeps
    for gateway in $GATEWAYS; do
        # shellcheck disable=SC2059
        printf "$format" "$gateway" "$(value fill "$gateway" rate)" \
            "$(secs "$(value drain "$gateway" start_ms)")" "$(value drain "$gateway" start_rate)" \
            "$(secs "$(value drain "$gateway" first_ms)")" "$(value drain "$gateway" flow_rate)" \
            "$(range drain "$gateway" flow_rate)" \
            "$(sum "$RESULTS" drain "$gateway" duplicates)" \
            "$(ms "$(value drain "$gateway" local_p50_us)")" "$(ms "$(value drain "$gateway" local_p99_us)")" \
            "$(ms "$(value drain "$gateway" idle_p50_us)")" "$(ms "$(value drain "$gateway" idle_p99_us)")" \
            "$(value drain "$gateway" gateway_cpu_us)" "$(value drain "$gateway" upstream_cpu_us)" \
            "$(value drain "$gateway" gateway_sleeps)" "$(value drain "$gateway" upstream_sleeps)"
    done
    echo "   Cairn/Mosquitto drain msg/s: $(ratio "$(value drain cairn start_rate)" \
        "$(value drain mosquitto start_rate)") (from the upstream's start);" \
        "$(ratio "$(value drain cairn flow_rate)" "$(value drain mosquitto flow_rate)")" \
        "(first to last message)"
    echo "   start-s = upstream start to the last message; drain-msg/s = $MESSAGES / start-s;" \
        "connect-s = upstream start to the first message (the bridge's reconnect delay);"
    echo "   flow-msg/s = $MESSAGES / (first to last message), flow-range its lowest-highest round;" \
        "dups = duplicates over all rounds;" \
        "p50/p99 = local PUBACK latency during the drain, idle = before it (uplink down), ms;"
    echo "   gw-cpu, up-cpu = CPU time (user + system) of the gateway and of the upstream from the" \
        "upstream's start to the last message, microseconds per message;"
    echo "   gw-sleeps, up-sleeps = times their threads went to sleep (voluntary context switches)" \
        "meanwhile, per 100 messages: each is a wake-up the kernel pays for"
}

print_wear() {
    local variant format='%-22s %6s %6s %12s %13s %8s %8s %8s %11s %11s\n'
    echo
    echo "3. Storage writes per bridged message, one publisher at $WEAR_RATE msg/s, uplink up" \
        "(${WEAR_DURATION}s after ${WEAR_WARMUP}s; medians of $ROUNDS rounds)"
    print_uplink
    # shellcheck disable=SC2059
    printf "$format" gateway msg/s acked io-bytes/msg io-range elided ack-p50 ack-p99 \
        bridged-p50 bridged-p99
    for variant in $(wear_variants); do
        # shellcheck disable=SC2059
        printf "$format" "$variant" "$(value wear "$variant" rate)" "$(value wear "$variant" acked)" \
            "$(value wear "$variant" io_bytes_per_msg)" "$(range wear "$variant" io_bytes_per_msg)" \
            "$(value wear "$variant" elided_per_msg)" \
            "$(ms "$(value wear "$variant" ack_p50_us)")" "$(ms "$(value wear "$variant" ack_p99_us)")" \
            "$(ms "$(value wear "$variant" bridged_p50_us)")" \
            "$(ms "$(value wear "$variant" bridged_p99_us)")"
    done
    echo "   io = /proc/<pid>/io write_bytes of the gateway (range = lowest-highest round);" \
        "elided = Cairn's queue entries never written (\$SYS/broker/store/messages_elided)"
    echo "   per message; ack = PUBACK latency at the gateway, bridged = publisher to upstream" \
        "subscriber, ms; mosquitto-persistent = persistence true"
}

print_uplink() {
    ((UPLINK_DELAY_MS == 0)) ||
        echo "   The uplink delayed by $UPLINK_DELAY_MS ms each way (round trip $((2 * UPLINK_DELAY_MS)) ms)"
}

print_window() {
    local gateway format='%-10s %16s %20s %10s\n'
    echo
    echo "4. Receive Maximum kept while a backlog of $WINDOW_MESSAGES messages goes to an upstream" \
        "that acknowledges in batches 50 ms apart ($ROUNDS rounds)"
    # shellcheck disable=SC2059
    printf "$format" gateway receive-maximum most-unacknowledged received
    for gateway in $GATEWAYS; do
        # shellcheck disable=SC2059
        printf "$format" "$gateway" "$(value window "$gateway" receive_maximum)" \
            "$(range window "$gateway" most_unacknowledged)" "$(value window "$gateway" received)"
    done
    echo "   most-unacknowledged = the most QoS 1 PUBLISHes the bridge had sent and not had" \
        "acknowledged at once (lowest-highest round); MQTT 5 allows receive-maximum [MQTT-3.3.4-7]"
}

# The gateway variants of section 3.
wear_variants() {
    local gateway
    for gateway in $GATEWAYS; do
        if [[ $gateway == mosquitto ]]; then echo mosquitto mosquitto-persistent; else echo "$gateway"; fi
    done
}

main() {
    trap '[[ -z $DRAIN_PID ]] || stop_process "$DRAIN_PID"; stop_upstream; cleanup' EXIT
    trap 'exit 130' INT TERM
    [[ -x $MOSQUITTO ]] || die "no mosquitto binary at $MOSQUITTO"
    [[ $PIN != 1 ]] || { command -v taskset >/dev/null && (($(nproc) >= 2)); } ||
        die "PIN=1 needs taskset and two CPUs"
    (( MESSAGES % PUBLISHERS == 0 )) || die "MESSAGES=$MESSAGES is not a multiple of PUBLISHERS=$PUBLISHERS"
    ! section window || [[ $BRIDGE_PROTOCOL == 5 ]] ||
        die "section window needs BRIDGE_PROTOCOL=5 (a 3.1.1 server announces no Receive Maximum)"
    LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
    build
    : >"$RESULTS"
    local round gateway
    for round in $(seq "$ROUNDS"); do
        if section drain; then
            for gateway in $GATEWAYS; do drain_run "$gateway" "$round"; done
        fi
        if section wear; then
            for gateway in $(wear_variants); do wear_run "$gateway" "$round"; done
        fi
        if section window; then
            for gateway in $GATEWAYS; do window_run "$gateway" "$round"; done
        fi
    done
    echo
    print_machine
    if section drain; then print_drain; fi
    if section wear; then print_wear; fi
    if section window; then print_window; fi
    if ((FAILURES > 0)); then
        echo "$FAILURES run(s) FAILED (see the load lines above); their figures are excluded."
    fi
    ((FAILURES == 0))
}

main "$@"
