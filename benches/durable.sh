#!/usr/bin/env bash
# Durable QoS 1 on this machine: Cairn (group commit; fsync on, and off) versus Mosquitto with
# `persistence true` (it acknowledges from RAM and snapshots now and then), driven by the load
# tool's durable scenarios (benches/load/durable.rs). Every run starts a fresh broker on a
# free 127.0.0.1 port; every broker started is stopped again, also on error or Ctrl-C.
#
# 1. Throughput: durable-fan-in (P publishers → one offline persistent subscriber, which then
#    returns and must receive every acknowledged message) for each P in PUBLISHERS, brokers
#    alternating, ROUNDS times; medians of acknowledged msg/s, Cairn(fsync)/Mosquitto, Cairn's
#    messages per commit, and (d) this disk's one-fsync-per-message ceiling.
# 2. SD-card wear: bytes written to storage per acknowledged message (/proc/<pid>/io
#    write_bytes, Cairn's $SYS store bytes, and the bytes reaching the block device under the
#    run's directory, the file system's journal and inodes included), one publisher at WEAR_RATE msg/s and
#    WEAR_PUBLISHERS flat out, for each commit_window_ms in WEAR_WINDOWS, each once with the
#    persistent subscriber offline (it drains afterwards) and once with it online (connected,
#    acknowledging as messages arrive; the store may then skip queue entries entirely).
# 3. Memory and recovery: RSS before and after queuing QUEUED messages for one offline session;
#    then SESSIONS sessions with PER_SESSION messages each, SIGTERM, and the time from process
#    start to the first CONNACK (and the queue length Cairn recovered).
# Exit status 1 if any run failed its checks.
#
# Environment (defaults keep the whole run near 10 minutes on 2 cores):
#   DURATION=4 WARMUP=1     seconds measured / warmed up per throughput run
#   ROUNDS=2                runs per broker and publisher count
#   PUBLISHERS="1 4 16 64"  publisher counts
#   MQTT_VERSION=5          5 or 3.1.1
#   INFLIGHT=32             publisher inflight window; Mosquitto gets max_inflight_messages 32
#                           to match Cairn's default Receive Maximum
#   DRAIN_TIMEOUT=180       seconds the returning subscriber may take to receive everything
#   FSYNC_WRITES=1000       64-byte append + fdatasync rounds for the ceiling
#   WEAR_RATE=100 WEAR_DURATION=10 WEAR_PUBLISHERS=16
#   WEAR_WINDOWS="0 10"     commit_window_ms settings of the wear runs
#   SECTIONS="throughput wear memory"   which of sections 1-3 to run
#   QUEUED=100000 SESSIONS=1000 PER_SESSION=100
#   MOSQUITTO=mosquitto
set -euo pipefail

DURATION=${DURATION:-4}
WARMUP=${WARMUP:-1}
ROUNDS=${ROUNDS:-2}
PUBLISHERS=${PUBLISHERS:-1 4 16 64}
MQTT_VERSION=${MQTT_VERSION:-5}
INFLIGHT=${INFLIGHT:-32}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-180}
FSYNC_WRITES=${FSYNC_WRITES:-1000}
WEAR_RATE=${WEAR_RATE:-100}
WEAR_DURATION=${WEAR_DURATION:-10}
WEAR_PUBLISHERS=${WEAR_PUBLISHERS:-16}
WEAR_WINDOWS=${WEAR_WINDOWS:-0 10}
SECTIONS=${SECTIONS:-throughput wear memory}
QUEUED=${QUEUED:-100000}
SESSIONS=${SESSIONS:-1000}
PER_SESSION=${PER_SESSION:-100}
MOSQUITTO=${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-durable.XXXXXX")
RESULTS="$WORK/results"
LOG_NAME=durable
BROKERS="cairn mosquitto"
VARIANTS="cairn-fsync cairn-nofsync mosquitto"
FAILURES=0
# Longest any one load run may take before it counts as failed, seconds.
RUN_LIMIT=$((2 * DRAIN_TIMEOUT + WEAR_DURATION + 300))
# shellcheck source=benches/brokers.sh
source "$ROOT/benches/brokers.sh"

# configure VARIANT [COMMIT_WINDOW_MS [DATA_DIR]]: the settings of the next start of VARIANT
# (cairn-fsync, cairn-nofsync or mosquitto) and its broker in BROKER_KIND. DATA_DIR is Cairn's
# data directory or Mosquitto's persistence directory; fresh when not given.
configure() {
    local variant=$1 window=${2:-0} data=${3:-$WORK/data.$RANDOM}
    CAIRN_DATA=$data
    MOSQUITTO_PERSISTENCE=$data
    MOSQUITTO_EXTRA="max_inflight_messages 32"
    case $variant in
    cairn-fsync | cairn-nofsync)
        local fsync=true
        [[ $variant == cairn-fsync ]] || fsync=false
        CAIRN_ENV=(CAIRN_SYS_INTERVAL=1 "CAIRN_STORE__FSYNC=$fsync"
            "CAIRN_STORE__COMMIT_WINDOW_MS=$window")
        BROKER_KIND=cairn
        ;;
    mosquitto) BROKER_KIND=mosquitto ;;
    *) die "unknown variant $variant" ;;
    esac
}

# start_variant VARIANT [COMMIT_WINDOW_MS [DATA_DIR]]: configure, start, wait until listening.
start_variant() {
    configure "$@"
    start_broker "$BROKER_KIND"
}

# run_load ID VARIANT ROUND LOAD_ARGS...: one load run against the running broker; its RESULT
# fields become rows "ID VARIANT ROUND KEY VALUE" of $RESULTS.
run_load() {
    local id=$1 variant=$2 round=$3 line stats=()
    shift 3
    [[ $variant == mosquitto ]] || stats=(--store-stats)
    line=$(timeout "$RUN_LIMIT" "$LOAD" "$@" "${stats[@]}" --broker "127.0.0.1:$PORT" --broker-pid "$BROKER_PID" \
        --label "$variant" --mqtt-version "$MQTT_VERSION" --inflight "$INFLIGHT" --qos 1 \
        --drain-timeout "$DRAIN_TIMEOUT" 2>"$WORK/load.err" | grep '^RESULT') || true
    record_result "$id" "$variant" "$round" "$line"
}

# One 64-byte write + fdatasync per message, the ceiling without group commit: prints the
# rate (msg/s) of appends (the file grows: a journal commit each time) and of overwrites in place.
measure_fsync_ceiling() {
    python3 - "$WORK/fsync-probe" "$FSYNC_WRITES" <<'EOF'
import os, sys, time
path, rounds = sys.argv[1], int(sys.argv[2])
record = b"x" * 64

def rate(flags, write):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, 0o600)
    start = time.perf_counter()
    for i in range(rounds):
        write(fd, i)
        os.fdatasync(fd)
    elapsed = time.perf_counter() - start
    os.close(fd)
    return rounds / elapsed

appends = rate(os.O_APPEND, lambda fd, i: os.write(fd, record))
overwrites = rate(0, lambda fd, i: os.pwrite(fd, record, (i % 64) * 64))
print(f"{appends:.0f} {overwrites:.0f}")
EOF
}

throughput_runs() {
    local publishers round variant
    for publishers in $PUBLISHERS; do
        for round in $(seq "$ROUNDS"); do
            for variant in $VARIANTS; do
                log "durable-fan-in, $publishers publisher(s), round $round: $variant"
                start_variant "$variant"
                run_load "fan-in-$publishers" "$variant" "$round" --scenario durable-fan-in \
                    --publishers "$publishers" --duration "$DURATION" --warmup "$WARMUP"
                stop_broker
            done
        done
    done
}

# wear_run ID WINDOW LOAD_ARGS...: one durable-fan-in run on a fresh Cairn with fsync on and
# commit_window_ms WINDOW.
wear_run() {
    local id=$1 window=$2
    shift 2
    start_variant cairn-fsync "$window"
    run_load "$id" cairn-fsync 1 --scenario durable-fan-in --storage "$WORK" "$@"
    stop_broker
}

wear_runs() {
    local window subscriber online
    for window in $WEAR_WINDOWS; do
        for subscriber in offline online; do
            online=()
            [[ $subscriber == offline ]] || online=(--online)
            log "wear: 1 publisher at $WEAR_RATE msg/s, commit_window_ms $window, $subscriber subscriber"
            wear_run "wear-paced-$subscriber-$window" "$window" --publishers 1 --paced \
                --rate "$WEAR_RATE" --duration "$WEAR_DURATION" --warmup 0 "${online[@]}"
            log "wear: $WEAR_PUBLISHERS publishers flat out, commit_window_ms $window, $subscriber subscriber"
            wear_run "wear-full-$subscriber-$window" "$window" --publishers "$WEAR_PUBLISHERS" \
                --duration "$DURATION" --warmup "$WARMUP" "${online[@]}"
        done
    done
}

# probe_first_connack READ_QUEUED: prints "<nanoseconds since the epoch at the first CONNACK>
# <queued>" for the broker at PORT; queued is Cairn's retained $SYS/broker/messages/queued when
# READ_QUEUED is yes, else "-".
probe_first_connack() {
    python3 - "$PORT" "$1" <<'EOF'
import socket, sys, time
port, read_queued = int(sys.argv[1]), sys.argv[2] == "yes"
CONNECT = bytes([0x10, 17, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 5]) + b"probe"
TOPIC = b"$SYS/broker/messages/queued"
SUBSCRIBE = bytes([0x82, 2 + 2 + len(TOPIC) + 1, 0, 1, 0, len(TOPIC)]) + TOPIC + bytes([0])

def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data

def read_packet(sock):
    first = read_exact(sock, 1)[0]
    length, shift = 0, 0
    while True:
        byte = read_exact(sock, 1)[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
    return first, read_exact(sock, length)

deadline = time.monotonic() + 120
while True:
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(CONNECT)
        kind, body = read_packet(sock)
        if kind == 0x20 and body[1] == 0:
            break
        sock.close()
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit("no CONNACK within 120 s")
    time.sleep(0.002)
connack_at = time.time_ns()
queued = "-"
sock.settimeout(3)
try:
    if read_queued:
        sock.sendall(SUBSCRIBE)
    while read_queued:
        kind, body = read_packet(sock)
        if kind >> 4 == 3:
            topic_len = int.from_bytes(body[0:2], "big")
            qos = (kind >> 1) & 3
            queued = body[2 + topic_len + (2 if qos else 0):].decode()
            break
except OSError:
    pass
sock.close()
print(connack_at, queued)
EOF
}

# recovery_run VARIANT: queue SESSIONS × PER_SESSION messages, SIGTERM, then time the restart
# on the same data from process start to the first CONNACK.
recovery_run() {
    local variant=$1 started probe
    log "recovery: $SESSIONS sessions × $PER_SESSION messages on $variant"
    start_variant "$variant" 0 "$WORK/recovery-$variant"
    run_load "queues-$variant" "$variant" 1 --scenario durable-queues \
        --subscribers "$SESSIONS" --count "$PER_SESSION"
    stop_broker
    pick_free_port
    started=$(date +%s%N)
    "start_$BROKER_KIND"
    local read_queued=yes
    [[ $BROKER_KIND == cairn ]] || read_queued=no
    probe=$(probe_first_connack "$read_queued") || die "the restarted $variant accepted no connection"
    stop_broker
    echo "restart-$variant $variant 1 connack_ms $(((${probe% *} - started) / 1000000))" >>"$RESULTS"
    [[ ${probe#* } == - ]] || echo "restart-$variant $variant 1 queued ${probe#* }" >>"$RESULTS"
}

# Memory with QUEUED messages queued for one offline session, on Cairn and on Mosquitto.
memory_runs() {
    local variant
    for variant in cairn-fsync mosquitto; do
        log "memory: $QUEUED messages queued for one offline session on $variant"
        start_variant "$variant"
        run_load memory "$variant" 1 --scenario durable-fan-in --publishers 16 \
            --count $((QUEUED / 16))
        stop_broker
    done
}

print_machine() {
    print_host
    echo "Mosquitto $("$MOSQUITTO" -h 2>/dev/null | sed -n 's/^mosquitto version //p') (persistence true," \
        "max_inflight_messages 32); MQTT $MQTT_VERSION, QoS 1, 64-byte payloads, INFLIGHT=$INFLIGHT"
}

print_throughput() {
    local p fsync nofsync mosq
    echo
    echo "1. durable-fan-in: P publishers -> 1 offline persistent subscriber, then it drains"
    echo "   (medians of $ROUNDS alternating runs, ${DURATION}s measured after ${WARMUP}s warm-up)"
    printf '%4s %11s %11s %11s %10s %9s %9s %9s %10s %10s\n' P cairn-fsync cairn-nofs mosquitto \
        fsync/mosq msg/commit p99-ms-c p99-ms-m drain-c/s drain-m/s
    for p in $PUBLISHERS; do
        fsync=$(value "fan-in-$p" cairn-fsync rate)
        nofsync=$(value "fan-in-$p" cairn-nofsync rate)
        mosq=$(value "fan-in-$p" mosquitto rate)
        printf '%4s %11s %11s %11s %10s %9s %9s %9s %10s %10s\n' "$p" "$fsync" "$nofsync" "$mosq" \
            "$(ratio "$fsync" "$mosq")" "$(value "fan-in-$p" cairn-fsync msgs_per_commit)" \
            "$(ms "$(value "fan-in-$p" cairn-fsync ack_p99_us)")" \
            "$(ms "$(value "fan-in-$p" mosquitto ack_p99_us)")" \
            "$(value "fan-in-$p" cairn-fsync drain_rate)" "$(value "fan-in-$p" mosquitto drain_rate)"
    done
    echo "   (d) one fsync per message: ${FSYNC_CEILING% *} msg/s appending, ${FSYNC_CEILING#* } msg/s" \
        "overwriting in place ($FSYNC_WRITES x 64-byte write + fdatasync on the same disk)"
    echo "   msg/s = PUBACKs received per second; p99 = PUBACK latency; drain = delivery rate to" \
        "the returning subscriber"
}

# per_message ID KEY: the run's KEY divided by its acknowledged messages, as a share, or "-".
per_message() {
    awk -v v="$(value "$1" cairn-fsync "$2")" -v n="$(value "$1" cairn-fsync acked)" 'BEGIN {
        if (v == "-" || n == "-" || n == 0) print "-"; else printf "%.2f", v / n }'
}

print_wear() {
    local window kind subscriber id label format='%-34s %-8s %8s %10s %12s %13s %13s %10s %8s %9s\n'
    echo
    echo "2. SD-card wear, Cairn fsync on: bytes written to storage per acknowledged message"
    # shellcheck disable=SC2059 # the format is the table's, shared by every row
    printf "$format" setting sub msg/s msg/commit io-bytes/msg sys-bytes/msg device-B/msg elided/msg \
        p50-ack p50-deliv
    for window in $WEAR_WINDOWS; do
        for kind in paced full; do
            if [[ $kind == paced ]]; then
                label="1 publisher at $WEAR_RATE msg/s, window ${window}ms"
            else
                label="$WEAR_PUBLISHERS publishers flat out, window ${window}ms"
            fi
            for subscriber in offline online; do
                id="wear-$kind-$subscriber-$window"
                # shellcheck disable=SC2059
                printf "$format" "$label" "$subscriber" "$(value "$id" cairn-fsync rate)" \
                    "$(value "$id" cairn-fsync msgs_per_commit)" \
                    "$(value "$id" cairn-fsync io_bytes_per_msg)" \
                    "$(value "$id" cairn-fsync store_bytes_per_msg)" \
                    "$(value "$id" cairn-fsync device_bytes_per_msg)" \
                    "$(per_message "$id" elided)" \
                    "$(ms "$(value "$id" cairn-fsync ack_p50_us)")" \
                    "$(ms "$(value "$id" cairn-fsync delivery_p50_us)")"
            done
        done
    done
    echo "   io = /proc/<pid>/io write_bytes delta over the publishing phase (online: until the" \
        "subscriber has every message); sys = Cairn's \$SYS/broker/store/bytes_written delta;"
    echo "   device = bytes written to the block device under the run's directory meanwhile (the" \
        "file system's journal and inodes included, and any other process's writes there);"
    echo "   elided/msg = queue entries the store never wrote (\$SYS/broker/store/messages_elided)" \
        "per message; p50-ack = PUBACK latency, p50-deliv = publisher to online subscriber, ms"
}

print_memory() {
    local variant before after acked growth
    echo
    echo "3. Memory with $QUEUED messages queued for one offline persistent session"
    printf '%-14s %9s %15s %14s %15s %9s\n' broker queued "RSS before KiB" "RSS after KiB" \
        "bytes/message" drained
    for variant in cairn-fsync mosquitto; do
        before=$(value memory "$variant" rss_before_kib)
        after=$(value memory "$variant" rss_after_kib)
        acked=$(value memory "$variant" acked)
        growth=$(awk -v b="$before" -v a="$after" -v n="$acked" 'BEGIN {
            if (b == "-" || a == "-" || n == "-" || n == 0) print "-"; else printf "%.0f", (a - b) * 1024 / n }')
        printf '%-14s %9s %15s %14s %15s %9s\n' "$variant" "$acked" "$before" "$after" "$growth" \
            "$(value memory "$variant" drained)"
    done
    echo
    echo "   Recovery: $SESSIONS offline sessions x $PER_SESSION messages, SIGTERM, restart on the" \
        "same data"
    printf '%-14s %9s %14s %22s %16s\n' broker queued "RSS after KiB" "start->CONNACK ms" \
        "queued after"
    for variant in cairn-fsync mosquitto; do
        printf '%-14s %9s %14s %22s %16s\n' "$variant" "$(value "queues-$variant" "$variant" acked)" \
            "$(value "queues-$variant" "$variant" rss_after_kib)" \
            "$(value "restart-$variant" "$variant" connack_ms)" \
            "$(value "restart-$variant" "$variant" queued)"
    done
}

main() {
    install_cleanup
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    [[ -x $MOSQUITTO ]] || die "no mosquitto binary at $MOSQUITTO"
    command -v python3 >/dev/null || die "python3 is needed for the fsync ceiling and the restart probe"
    LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
    build
    : >"$RESULTS"
    FSYNC_CEILING=$(measure_fsync_ceiling)
    if section throughput; then throughput_runs; fi
    if section wear; then wear_runs; fi
    if section memory; then
        memory_runs
        recovery_run cairn-fsync
        recovery_run mosquitto
    fi
    echo
    print_machine
    if section throughput; then print_throughput; fi
    if section wear; then print_wear; fi
    if section memory; then print_memory; fi
    if ((FAILURES > 0)); then
        echo "$FAILURES run(s) FAILED (see the load lines above); their figures are excluded."
    fi
    ((FAILURES == 0))
}

main "$@"
