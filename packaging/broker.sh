# Shell helpers shared by build-debs.sh and test-deb.sh (sourced, not run): start a cairn
# broker in the background on a free loopback port, pass one message through it with
# Mosquitto's clients, and stop it.
#
# Needs mosquitto_pub and mosquitto_sub (Debian package mosquitto-clients).

# Prints a message and exits 1.
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# start_broker LOG COMMAND...: runs COMMAND (a `cairn serve ... --listen 127.0.0.1:0`, maybe
# behind a runner) in the background with its stderr in LOG, waits up to 120 s for its
# "broker ready" line and sets BROKER_PID and BROKER_PORT.
start_broker() {
    local log=$1
    shift
    "$@" 2>"$log" &
    BROKER_PID=$!
    local waited=0
    while ! grep -q "broker ready" "$log"; do
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            cat "$log" >&2
            fail "the broker exited before it was ready: $*"
        fi
        if [ "$waited" -ge 1200 ]; then
            cat "$log" >&2
            fail "the broker was not ready after 120 s: $*"
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    BROKER_PORT=$(grep "broker ready" "$log" | grep -o '127\.0\.0\.1:[0-9]*' | head -n1 | cut -d: -f2)
    [ -n "$BROKER_PORT" ] || fail "no listening address in the ready line: $(cat "$log")"
}

# stop_broker LOG: SIGTERM, then the broker must exit 0 within 60 s.
stop_broker() {
    local log=$1
    kill -TERM "$BROKER_PID"
    local status=0
    wait "$BROKER_PID" || status=$?
    if [ "$status" -ne 0 ]; then
        cat "$log" >&2
        fail "the broker exited with status $status on SIGTERM"
    fi
}

# publish_retained TOPIC PAYLOAD: QoS 1 and retained, so a later subscriber receives it
# (PUBACK comes after the store's commit).
publish_retained() {
    timeout 60 mosquitto_pub -h 127.0.0.1 -p "$BROKER_PORT" -q 1 -r -t "$1" -m "$2" \
        || fail "mosquitto_pub to port $BROKER_PORT failed"
}

# expect_message TOPIC PAYLOAD [mosquitto_sub options...]: the first message on TOPIC must be
# PAYLOAD, within 30 s.
expect_message() {
    local topic=$1 payload=$2
    shift 2
    local got
    got=$(timeout 60 mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -q 1 -t "$topic" -C 1 -W 30 "$@") \
        || fail "no message on $topic from port $BROKER_PORT"
    [ "$got" = "$payload" ] || fail "on $topic: expected '$payload', got '$got'"
}
