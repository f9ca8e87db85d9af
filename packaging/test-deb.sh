#!/usr/bin/env bash
# Life cycle of the amd64 package on this machine (root; no running systemd needed):
# packaging/test-deb.sh
#
# Builds the package twice (the changelog's version, then VERSION+test2 as the upgrade) with
# build-debs.sh, then: dpkg -i checks files, owners, modes, the cairn user, the enabled unit
# and the unit's hardening (systemd-analyze, when present); a password file that `cairn passwd
# -c` makes as root is readable by the cairn user; a broker run as cairn stores a retained
# message and a queued message for a persistent session; the configuration is changed
# locally; the upgrade keeps both, and the session gets its message from the new binary; remove
# keeps data, configuration and user; purge deletes them. Whatever happens, cairn is purged at
# the end. Exit status 1 on the first failed check.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=packaging/broker.sh
source packaging/broker.sh

[ "$(id -u)" -eq 0 ] || fail "test-deb.sh installs packages: run it as root"
if dpkg-query -W -f '${Status}' cairn 2>/dev/null | grep -q installed; then
    fail "a cairn package is installed here already; purge it first (dpkg --purge cairn)"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-test-deb.XXXXXX")
cleanup() {
    dpkg --purge cairn >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

first=$(sed -n '1s/^cairn (\([^)]*\)).*/\1/p' packaging/debian/changelog)
second="$first+test2"
packaging/build-debs.sh amd64
packaging/build-debs.sh --version "$second" amd64
first_deb="target/debian/cairn_${first}_amd64.deb"
second_deb="target/debian/cairn_${second}_amd64.deb"

CHECKS=0
check() {
    local what=$1
    shift
    "$@" || fail "$what"
    CHECKS=$((CHECKS + 1))
}

# owner_mode PATH: "user:group mode"
owner_mode() {
    stat -c '%U:%G %a' "$1"
}

expect_owner_mode() {
    local path=$1 expected=$2 actual
    actual=$(owner_mode "$path" 2>/dev/null || echo missing)
    check "$path is $actual, expected $expected" [ "$actual" = "$expected" ]
}

# run_broker LOG: the installed binary, as the cairn user, with the installed configuration
# (its data in /var/lib/cairn) but on a free loopback port.
run_broker() {
    start_broker "$1" setpriv --reuid=cairn --regid=cairn --init-groups -- \
        timeout 300 /usr/bin/cairn serve \
            --config /etc/cairn/cairn.toml --listen 127.0.0.1:0
}

echo "--- install $first_deb"
dpkg -i "$first_deb" </dev/null
check "cairn $first is installed" \
    [ "$(dpkg-query -W -f '${Version}' cairn)" = "$first" ]
expect_owner_mode /usr/bin/cairn "root:root 755"
expect_owner_mode /etc/cairn/cairn.toml "root:root 644"
expect_owner_mode /lib/systemd/system/cairn.service "root:root 644"
expect_owner_mode /var/lib/cairn "cairn:cairn 750"
expect_owner_mode /usr/share/doc/cairn/copyright "root:root 644"
expect_owner_mode /usr/share/doc/cairn/changelog.Debian.gz "root:root 644"
expect_owner_mode /usr/share/man/man1/cairn.1.gz "root:root 644"
expect_owner_mode /usr/share/man/man1/cairn-serve.1.gz "root:root 644"
check "the changelog is gzipped Debian format" \
    bash -c "zcat /usr/share/doc/cairn/changelog.Debian.gz | head -n1 | grep -q '^cairn ($first) '"
if command -v man >/dev/null; then
    check "the man page renders" \
        bash -c "man -l /usr/share/man/man1/cairn.1.gz 2>/dev/null | grep -q 'check-config'"
fi
check "/etc/cairn/cairn.toml is a conffile" \
    bash -c "dpkg-query -W -f '\${Conffiles}' cairn | grep -q '/etc/cairn/cairn.toml'"
check "cairn is a system user with no login shell" \
    bash -c '[ "$(id -u cairn)" -lt 1000 ] && [ "$(getent passwd cairn | cut -d: -f7)" = /usr/sbin/nologin ]'
check "the cairn group exists and is cairn's primary group" \
    [ "$(id -gn cairn)" = cairn ]
check "the service is enabled" \
    [ -L /etc/systemd/system/multi-user.target.wants/cairn.service ]
check "the packaged configuration checks out" \
    bash -c "/usr/bin/cairn check-config --config /etc/cairn/cairn.toml | grep -q -x 'data_dir = \"/var/lib/cairn\"'"
binds=$(/usr/bin/cairn check-config --config /etc/cairn/cairn.toml | grep '^bind = ')
check "the packaged configuration listens on loopback only: $binds" \
    [ "$binds" = 'bind = "127.0.0.1:1883"' ]
/usr/bin/cairn passwd -c -b /etc/cairn/passwd alice s3cret || fail "cairn passwd -c failed"
expect_owner_mode /etc/cairn/passwd "root:cairn 640"
check "the service's user can read a password file cairn passwd -c made" \
    setpriv --reuid=cairn --regid=cairn --init-groups -- test -r /etc/cairn/passwd
rm /etc/cairn/passwd
if command -v systemd-analyze >/dev/null; then
    verify=$(systemd-analyze verify /lib/systemd/system/cairn.service 2>&1) || true
    check "systemd-analyze verify is clean: $verify" [ -z "$verify" ]
    exposure=$(systemd-analyze security --offline=true /lib/systemd/system/cairn.service 2>/dev/null \
        | sed -n 's/.*Overall exposure level for cairn.service: \([0-9.]*\).*/\1/p')
    echo "systemd-analyze security --offline=true: exposure $exposure"
    check "exposure $exposure is at most 2.0" awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 2.0) }'
fi

echo "--- a broker run as cairn stores a retained message and a session's queued message"
run_broker "$WORK/before.log"
timeout 60 mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -q 1 -c -i keeper -t upgrade/queued -E \
    || fail "the persistent subscription failed"
publish_retained upgrade/retained "kept across the upgrade"
timeout 60 mosquitto_pub -h 127.0.0.1 -p "$BROKER_PORT" -q 1 -t upgrade/queued -m "queued before" \
    || fail "publishing the queued message failed"
stop_broker "$WORK/before.log"
check "the store belongs to cairn" [ "$(stat -c %U:%G /var/lib/cairn/cairn.redb)" = cairn:cairn ]
sed -i 's/^sys_interval = 10$/sys_interval = 30/' /etc/cairn/cairn.toml
check "the changed configuration checks out" \
    bash -c "/usr/bin/cairn check-config --config /etc/cairn/cairn.toml | grep -q -x 'sys_interval = 30'"
changed=$(sha256sum /etc/cairn/cairn.toml)

echo "--- upgrade to $second_deb"
dpkg -i "$second_deb" </dev/null
check "cairn $second is installed" \
    [ "$(dpkg-query -W -f '${Version}' cairn)" = "$second" ]
check "the admin's configuration survived the upgrade" \
    [ "$(sha256sum /etc/cairn/cairn.toml)" = "$changed" ]
expect_owner_mode /var/lib/cairn "cairn:cairn 750"
run_broker "$WORK/after.log"
expect_message upgrade/retained "kept across the upgrade"
expect_message upgrade/queued "queued before" -c -i keeper
stop_broker "$WORK/after.log"

echo "--- remove"
dpkg -r cairn </dev/null
check "remove deletes the binary" [ ! -e /usr/bin/cairn ]
check "remove deletes the unit" [ ! -e /lib/systemd/system/cairn.service ]
check "remove keeps the store" [ -s /var/lib/cairn/cairn.redb ]
check "remove keeps the configuration" [ "$(sha256sum /etc/cairn/cairn.toml)" = "$changed" ]
check "remove keeps the cairn user" bash -c "getent passwd cairn >/dev/null"

echo "--- purge"
dpkg --purge cairn </dev/null
check "purge deletes the data" [ ! -e /var/lib/cairn ]
check "purge deletes the configuration" [ ! -e /etc/cairn ]
check "purge deletes the cairn user" bash -c '! getent passwd cairn'
check "purge deletes the cairn group" bash -c '! getent group cairn'
check "purge deletes the enablement link" \
    [ ! -e /etc/systemd/system/multi-user.target.wants/cairn.service ]
check "nothing of cairn is known to dpkg" bash -c '! dpkg-query -W cairn 2>/dev/null | grep -q .'

echo "test-deb.sh: $CHECKS checks passed (install $first, upgrade to $second, remove, purge)"
