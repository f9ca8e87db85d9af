#!/usr/bin/env bash
# Cairn versus Mosquitto (and rumqttd, when asked for) on this machine, with the load tool
# (benches/load.rs).
#
# Builds the release binaries, then for every scenario runs each broker fresh on a free
# 127.0.0.1 port, alternating (cairn, mosquitto, cairn, mosquitto, ...), and prints a table of
# medians with Cairn's ratio to each other broker. Every broker it starts is stopped again, also on
# error or Ctrl-C. Exit status 1 if any run failed its checks.
#
# Environment:
#   DURATION=10         seconds measured per run
#   WARMUP=2            seconds of warm-up per run
#   ROUNDS=2            runs per broker and scenario (alternating)
#   MQTT_VERSION=5      5 or 3.1.1 (3.1.1 clients cannot learn Mosquitto's Receive Maximum of
#                       20; QoS 2 beyond it is acknowledged and dropped, so keep INFLIGHT<=20)
#   INFLIGHT=32         QoS 1/2 publisher inflight window (capped by the broker's Receive Maximum)
#   CONNECTIONS=1000    idle connections for idle-memory
#   BROKERS="cairn mosquitto"   which brokers to run, in order: cairn, mosquitto, rumqttd
#                       (e.g. BROKERS="cairn mosquitto rumqttd"; rumqttd keeps everything in
#                       RAM and speaks MQTT 5 only in part: use MQTT_VERSION=3.1.1 with it)
#   MOSQUITTO=mosquitto         Mosquitto binary
#   RUMQTTD=rumqttd             rumqttd binary
set -euo pipefail

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-2}
MQTT_VERSION=${MQTT_VERSION:-5}
INFLIGHT=${INFLIGHT:-32}
CONNECTIONS=${CONNECTIONS:-1000}
BROKERS=${BROKERS:-cairn mosquitto}
MOSQUITTO=${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}
RUMQTTD=${RUMQTTD:-$(command -v rumqttd || echo rumqttd)}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-compare.XXXXXX")
RESULTS="$WORK/results"
LOG_NAME=compare
FAILURES=0
# shellcheck source=benches/brokers.sh
source "$ROOT/benches/brokers.sh"

# Scenario id | load tool arguments | metrics of its RESULT line, ";"-separated key:label:better
SCENARIOS=(
    "fan-in-q0|--scenario fan-in --qos 0|rate:fan-in QoS 0 (msg/s):higher"
    "fan-in-q1|--scenario fan-in --qos 1|rate:fan-in QoS 1 (msg/s):higher"
    "fan-out-q0|--scenario fan-out --qos 0|rate:fan-out QoS 0 (deliveries/s):higher"
    "fan-out-q1|--scenario fan-out --qos 1|rate:fan-out QoS 1 (deliveries/s):higher"
    "latency-q1|--scenario latency --qos 1 --rate 1000|p50_us:latency QoS 1 1000/s p50 (us):lower;p99_us:latency QoS 1 1000/s p99 (us):lower;p999_us:latency QoS 1 1000/s p99.9 (us):lower"
    "idle|--scenario idle-memory --connections $CONNECTIONS|bytes_per_conn:idle memory $CONNECTIONS conns (bytes/conn):lower"
)

# run_once BROKER SCENARIO_ID ROUND LOAD_ARGS: one fresh broker, one load run, one result row.
run_once() {
    local broker=$1 id=$2 round=$3 args=$4 line limit
    limit=$(awk -v d="$DURATION" -v w="$WARMUP" 'BEGIN { printf "%d", d + w + 120 }')
    start_broker "$broker"
    # A run that fails or times out prints no RESULT line, or one without status=ok.
    # shellcheck disable=SC2086 # the scenario's arguments are meant to split
    line=$(timeout "$limit" "$LOAD" $args \
        --broker "127.0.0.1:$PORT" --broker-pid "$BROKER_PID" --label "$broker" \
        --duration "$DURATION" --warmup "$WARMUP" --mqtt-version "$MQTT_VERSION" \
        --inflight "$INFLIGHT" 2>"$WORK/load.err" | grep '^RESULT') || true
    stop_broker
    record_result "$id" "$broker" "$round" "$line"
}

run_all() {
    local entry id args round broker
    : >"$RESULTS"
    for entry in "${SCENARIOS[@]}"; do
        IFS='|' read -r id args _ <<<"$entry"
        for round in $(seq "$ROUNDS"); do
            for broker in $BROKERS; do
                log "$id round $round: $broker"
                run_once "$broker" "$id" "$round" "$args"
            done
        done
    done
}

print_table() {
    local entry id metrics metric key label better broker cairn other
    local -a metric_list brokers others=()
    read -r -a brokers <<<"$BROKERS"
    for broker in "${brokers[@]}"; do
        [[ $broker == cairn ]] || others+=("$broker")
    done
    [[ " $BROKERS " == *" cairn "* ]] || others=()
    echo
    echo "Machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p' | head -n 1); $(uname -sr)"
    echo "Runs: DURATION=${DURATION}s WARMUP=${WARMUP}s ROUNDS=$ROUNDS MQTT $MQTT_VERSION INFLIGHT=$INFLIGHT," \
        "alternating, fresh broker per run; Mosquitto $("$MOSQUITTO" -h 2>/dev/null | sed -n 's/^mosquitto version //p')"
    printf '%-48s' "metric (median)"
    printf ' %12s' "${brokers[@]}"
    for other in ${others[@]+"${others[@]}"}; do printf ' %12s' "cairn/$other"; done
    printf '  %s\n' better
    for entry in "${SCENARIOS[@]}"; do
        IFS='|' read -r id _ metrics <<<"$entry"
        IFS=';' read -r -a metric_list <<<"$metrics"
        for metric in "${metric_list[@]}"; do
            IFS=':' read -r key label better <<<"$metric"
            printf '%-48s' "$label"
            for broker in "${brokers[@]}"; do printf ' %12s' "$(median "$RESULTS" "$id" "$broker" "$key")"; done
            cairn=$(median "$RESULTS" "$id" cairn "$key")
            for other in ${others[@]+"${others[@]}"}; do
                printf ' %12s' "$(ratio "$cairn" "$(median "$RESULTS" "$id" "$other" "$key")")"
            done
            printf '  %s\n' "$better"
        done
    done
    if ((FAILURES > 0)); then
        echo "$FAILURES run(s) FAILED (see the load lines above); their figures are excluded."
    fi
}

main() {
    install_cleanup
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    [[ " $BROKERS " != *" mosquitto "* ]] || [[ -x $MOSQUITTO ]] || die "no mosquitto binary at $MOSQUITTO"
    [[ " $BROKERS " != *" rumqttd "* ]] || command -v "$RUMQTTD" >/dev/null ||
        die "no rumqttd binary at $RUMQTTD (cargo install rumqttd; or set RUMQTTD)"
    build
    run_all
    print_table
    ((FAILURES == 0))
}

main "$@"
