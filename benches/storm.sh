#!/usr/bin/env bash
# A reboot storm on this machine: Cairn versus Mosquitto with the load tool's reboot-storm
# scenario (benches/load/idle.rs). After a gateway reboots every sensor reconnects at once:
# CLIENTS MQTT 3.1.1 clients, CONCURRENCY at a time, each connecting with Clean Session 0 and
# subscribing once at QoS 1 to its own topic, then idle. Reports clients per second through
# CONNACK and SUBACK, the CPU time the broker used per client meanwhile (user and system, all
# its threads, from /proc/<pid>/stat: on two cores shared with the load tool the rate follows
# it), the broker's RSS growth per connection (VmRSS before and after), and the bytes it
# caused to be written to storage per client until then (the SD-card wear: /proc/<pid>/io
# write_bytes, the file's pages as the broker dirtied them) and the bytes that reached the
# block device holding the run's directory meanwhile (what the file system adds, its journal
# and inodes, included; and whatever other processes write to that device), and the clients'
# latencies from TCP connect to CONNACK and from SUBSCRIBE to SUBACK (p50): where a client's
# time goes, the broker's queue of work or a commit.
#
# Cairn runs its release build with the default configuration (fsync on, 20 ms commit
# window) apart from the port, the data directory and queue limits; Mosquitto with
# `persistence true` (it acknowledges from RAM and snapshots later). Each run starts a fresh
# broker on a free 127.0.0.1 port, brokers alternating, ROUNDS times; every broker started is
# stopped again, also on error or Ctrl-C. Prints medians and the ratio Cairn/Mosquitto.
# Exit status 1 if any run failed.
#
# Environment:
#   CLIENTS=10000 CONCURRENCY=100 ROUNDS=2
#   SETTLE=2                seconds after the last SUBACK before reading the RSS
#   COMMAND_EACH=0          1: then one QoS 1 message to every client's own topic (a command
#                           to each sensor, all sent at once by one publisher), received and
#                           acknowledged, and the RSS read again after SETTLE. The publisher is
#                           one more connection: keep CLIENTS below Cairn's max_connections
#                           (10000 by default), e.g. CLIENTS=9900.
#   SHUFFLE=0               1: the clients connect in a scrambled order of their client
#                           identifiers (real sensors' identifiers do not arrive sorted; a
#                           store's writes depend on the order)
#   TLS=0                   1: the brokers listen with TLS (a self-signed ECDSA P-256
#                           certificate made with `openssl` for the run) and every client's
#                           handshake comes first: the storm of sensors that connect securely
#   RESUME=0                1: then the broker is stopped (SIGTERM) and started again on its
#                           data, and the same clients storm again: they resume their sessions,
#                           as after a gateway reboot (shown as a second table)
#   BROKERS="cairn mosquitto"
#   MOSQUITTO=mosquitto
#   TMPDIR=/tmp             the brokers' data go in a directory made here: the file system and
#                           the device measured (e.g. a journalling ext4, as on a Raspberry Pi)
set -euo pipefail

CLIENTS=${CLIENTS:-10000}
CONCURRENCY=${CONCURRENCY:-100}
ROUNDS=${ROUNDS:-2}
SETTLE=${SETTLE:-2}
COMMAND_EACH=${COMMAND_EACH:-0}
SHUFFLE=${SHUFFLE:-0}
RESUME=${RESUME:-0}
TLS=${TLS:-0}
BROKERS=${BROKERS:-cairn mosquitto}
MOSQUITTO=${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-storm.XXXXXX")
RESULTS="$WORK/results"
LOG_NAME=storm
FAILURES=0
# shellcheck source=benches/brokers.sh
source "$ROOT/benches/brokers.sh"

# run_once BROKER ROUND: one fresh broker, one storm (and with RESUME=1 a restart and the same
# clients again), one result row per RESULT field.
run_once() {
    local broker=$1 round=$2
    CAIRN_DATA=$WORK/cairn-data.$round
    MOSQUITTO_PERSISTENCE=$WORK/mosquitto-data.$round
    rm -rf "$CAIRN_DATA" "$MOSQUITTO_PERSISTENCE"
    start_broker "$broker"
    record_result storm "$broker" "$round" "$(storm_line "$broker" "$round")"
    if [[ $RESUME == 1 ]]; then
        stop_broker
        start_broker "$broker"
        record_result resumed "$broker" "$round" "$(storm_line "$broker" "$round")"
    fi
    stop_broker
}

# storm_line BROKER ROUND: the load tool's RESULT line of one storm on the running broker. The
# client identifiers are the same for both storms of a run, and for every broker (each keeps
# them in memory: a longer one would cost that broker more bytes per connection).
storm_line() {
    local broker=$1 round=$2 options=(--client-prefix "storm-$round" --storage "$WORK")
    [[ $COMMAND_EACH != 1 ]] || options+=(--command-each)
    [[ $SHUFFLE != 1 ]] || options+=(--shuffle)
    [[ $TLS != 1 ]] || options+=(--tls-ca "$TLS_CERT")
    timeout 600 "$LOAD" --scenario reboot-storm --mqtt-version 3.1.1 --qos 1 \
        --connections "$CLIENTS" --concurrency "$CONCURRENCY" --settle "$SETTLE" \
        --broker "127.0.0.1:$PORT" --broker-pid "$BROKER_PID" --label "$broker" \
        "${options[@]}" 2>"$WORK/load.err" | grep '^RESULT' || true
}

print_table() {
    local clients="identifiers in sorted order"
    [[ $SHUFFLE != 1 ]] || clients="identifiers in scrambled order"
    [[ $TLS != 1 ]] || clients+="; over TLS (ECDSA P-256 certificate, rustls and OpenSSL)"
    echo
    echo "Machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p' | head -n 1); $(uname -sr); load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "Runs: $CLIENTS clients, $CONCURRENCY at a time, MQTT 3.1.1 Clean Session 0, one QoS 1 SUBSCRIBE each;" \
        "ROUNDS=$ROUNDS alternating, fresh broker per run; Mosquitto" \
        "$("$MOSQUITTO" -h 2>/dev/null | sed -n 's/^mosquitto version //p') with persistence;" \
        "$clients"
    print_section storm "new sessions"
    [[ $RESUME != 1 ]] || print_section resumed "after a restart (SIGTERM, start on the same data): the same clients resume their sessions"
    if ((FAILURES > 0)); then
        echo "$FAILURES run(s) FAILED (see the load lines above); their figures are excluded."
    fi
}

# print_section ID TITLE: the medians of the runs recorded as ID.
print_section() {
    local id=$1 key label better cairn mosq
    echo "$2:"
    printf '%-44s %12s %12s %12s  %s\n' "metric (median)" cairn mosquitto cairn/mosq better
    local metrics=("rate:clients connected+subscribed per second:higher"
        "cpu_us_per_client:broker CPU time per client (µs):lower"
        "bytes_per_conn:RSS growth per connection (bytes):lower"
        "written_per_client:bytes written to storage per client:lower"
        "device_written_per_client:bytes reaching the storage device per client:lower"
        "connack_p50_us:TCP connect to CONNACK, p50 (µs):lower"
        "suback_p50_us:SUBSCRIBE to SUBACK, p50 (µs):lower")
    [[ $COMMAND_EACH != 1 ]] ||
        metrics+=("bytes_per_conn_commanded:RSS growth per connection after a command each:lower")
    for metric in "${metrics[@]}"; do
        IFS=':' read -r key label better <<<"$metric"
        cairn=$(median "$RESULTS" "$id" cairn "$key")
        mosq=$(median "$RESULTS" "$id" mosquitto "$key")
        printf '%-44s %12s %12s %12s  %s\n' "$label" "$cairn" "$mosq" "$(ratio "$cairn" "$mosq")" "$better"
    done
}

# make_certificate: a self-signed certificate for 127.0.0.1 and its key, as TLS_CERT and
# TLS_KEY (brokers.sh gives them to every broker; the load tool trusts the certificate).
make_certificate() {
    command -v openssl >/dev/null || die "TLS=1 needs openssl on PATH"
    TLS_CERT=$WORK/tls-cert.pem
    TLS_KEY=$WORK/tls-key.pem
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=cairn-storm" -addext "subjectAltName=IP:127.0.0.1" \
        -addext "basicConstraints=critical,CA:FALSE" \
        -keyout "$TLS_KEY" -out "$TLS_CERT" 2>"$WORK/openssl.err" ||
        die "openssl could not make a certificate: $(cat "$WORK/openssl.err")"
}

main() {
    install_cleanup
    # Every client is a socket in the load tool and one more in the broker (which inherits it).
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    (($(ulimit -n) > CLIENTS + 100)) || die "ulimit -n is $(ulimit -n); $CLIENTS clients need more (raise the hard limit)"
    [[ " $BROKERS " != *" mosquitto "* ]] || [[ -x $MOSQUITTO ]] || die "no mosquitto binary at $MOSQUITTO"
    build
    [[ $TLS != 1 ]] || make_certificate
    : >"$RESULTS"
    for round in $(seq "$ROUNDS"); do
        for broker in $BROKERS; do
            log "round $round: $broker"
            run_once "$broker" "$round"
        done
    done
    print_table
    ((FAILURES == 0))
}

main "$@"
