#!/usr/bin/env bash
# Builds the cairn .deb packages: packaging/build-debs.sh [--version VERSION] [ARCH...]
#
# ARCH is amd64, arm64 or armhf (default: all three). For each one: a release build (arm64 and
# armhf cross-built with Debian's rustc-web, as ../shared/arm-cross.md describes), a smoke test
# of the binary (under qemu-user for ARM): --version, check-config of the packaged
# configuration, `serve` on a free loopback port with one message published and received
# through it; then the package, staged and built with dpkg-deb. Prints the stripped binary and
# .deb sizes. Packages land in target/debian/.
#
# VERSION defaults to the top entry of packaging/debian/changelog; another one (test-deb.sh
# builds an upgrade) gets a changelog entry of its own.
#
# Installs what is missing with apt-get (needs root then): mosquitto-clients for the smoke
# test; for ARM, the arm64/armhf dpkg architectures, rustc-web, cargo-web,
# libstd-rust-web-dev:<arch>, the cross gcc and libc, qemu-user-static.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=packaging/broker.sh
source packaging/broker.sh

OUT=target/debian
CROSS_TARGET_DIR=target/cross
VERSION=""
ARCHES=()
while [ $# -gt 0 ]; do
    case $1 in
        --version) VERSION=$2; shift 2 ;;
        amd64 | arm64 | armhf) ARCHES+=("$1"); shift ;;
        *) echo "usage: $0 [--version VERSION] [amd64|arm64|armhf]..." >&2; exit 2 ;;
    esac
done
[ ${#ARCHES[@]} -gt 0 ] || ARCHES=(amd64 arm64 armhf)

triple() {
    case $1 in
        amd64) echo x86_64-unknown-linux-gnu ;;
        arm64) echo aarch64-unknown-linux-gnu ;;
        armhf) echo armv7-unknown-linux-gnueabihf ;;
    esac
}

gnu_prefix() {
    case $1 in
        arm64) echo aarch64-linux-gnu ;;
        armhf) echo arm-linux-gnueabihf ;;
    esac
}

# The qemu runner of .cargo/config.toml for a target (one place says how to run ARM binaries).
runner() {
    sed -n "/^\[target\.$1\]/,/^\[/s/^runner = \"\(.*\)\"/\1/p" .cargo/config.toml
}

installed() {
    dpkg-query -W -f '${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# Debian's armhf libstd-rust-web-dev, unpacked into rustc-web's sysroot without apt: the route
# for a mirror whose armhf security index is stale (apt-get update fails with armhf enabled).
# Only the libraries (.rlib, .rmeta) are taken, from the package of the same version as the
# installed rustc-web.
unpack_armhf_std() {
    local version pool_url deb dir
    version=$(dpkg-query -W -f '${Version}' rustc-web)
    pool_url="http://deb.debian.org/debian-security/pool/updates/main/r/rustc-web"
    deb=$(mktemp -d)/libstd-rust-web-dev_${version#*:}_armhf.deb
    echo "--- armhf: fetching libstd-rust-web-dev $version from the security pool"
    curl -fsSL -o "$deb" "$pool_url/$(basename "$deb")" \
        || fail "cannot download $pool_url/$(basename "$deb")"
    dir=$(mktemp -d)
    dpkg-deb -x "$deb" "$dir"
    local rlibs="usr/lib/rustlib/armv7-unknown-linux-gnueabihf/lib"
    [ -d "$dir/$rlibs" ] || fail "no $rlibs in $(basename "$deb")"
    mkdir -p "/$rlibs"
    cp "$dir/$rlibs"/*.rlib "$dir/$rlibs"/*.rmeta "/$rlibs/"
    echo "--- armhf: the rlibs are in /$rlibs"
}

# Installs the packages the requested architectures need, when something is missing.
install_prerequisites() {
    local wanted=() arch
    command -v mosquitto_pub >/dev/null && command -v mosquitto_sub >/dev/null \
        || wanted+=(mosquitto-clients)
    local need_armhf_std=false
    for arch in "${ARCHES[@]}"; do
        [ "$arch" = amd64 ] && continue
        wanted+=(rustc-web cargo-web "gcc-$(gnu_prefix "$arch")" "libc6-dev-$arch-cross"
            qemu-user-static)
        if [ "$arch" = armhf ]; then
            need_armhf_std=true
        else
            wanted+=("libstd-rust-web-dev:$arch")
        fi
    done
    local missing=() package
    for package in "${wanted[@]}"; do
        installed "$package" || missing+=("$package")
    done
    local armhf_std_ok=true
    if $need_armhf_std && ! installed libstd-rust-web-dev:armhf \
        && [ ! -f /usr/lib/rustlib/armv7-unknown-linux-gnueabihf/lib/libstd-*.rlib ]; then
        armhf_std_ok=false
    fi
    if [ ${#missing[@]} -eq 0 ] && $armhf_std_ok; then
        return 0
    fi
    [ "$(id -u)" -eq 0 ] || fail "need root to install: ${missing[*]} libstd-rust-web-dev:armhf"
    for arch in "${ARCHES[@]}"; do
        [ "$arch" = amd64 ] || dpkg --add-architecture "$arch"
    done
    echo "--- apt-get update"
    if apt-get update -q; then
        $armhf_std_ok || missing+=(libstd-rust-web-dev:armhf)
        [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
        return 0
    fi
    if ! $need_armhf_std; then
        fail "apt-get update failed"
    fi
    # The known failure: a stale armhf index. Say so, update without armhf, and take armhf's
    # standard library from its package file.
    echo "WARNING: apt-get update failed with armhf enabled (a stale armhf index?); updating" \
        "for amd64 and arm64 only and unpacking armhf's libstd-rust-web-dev by hand" >&2
    apt-get update -q -o APT::Architectures::=amd64 -o APT::Architectures::=arm64 \
        || fail "apt-get update failed without armhf too"
    [ ${#missing[@]} -eq 0 ] \
        || apt_install -o APT::Architectures::=amd64 -o APT::Architectures::=arm64 "${missing[@]}"
    $armhf_std_ok || unpack_armhf_std
}

# Version of the package: the changelog's top entry, or --version.
changelog_version() {
    sed -n '1s/^cairn (\([^)]*\)).*/\1/p' packaging/debian/changelog
}

# Builds the release binary for an architecture and prints its path.
build_binary() {
    local arch=$1 target
    target=$(triple "$arch")
    if [ "$arch" = amd64 ]; then
        # The native toolchain (rustup's or Debian's): CI's release build is reused.
        nice cargo build --release --locked >&2
        echo target/release/cairn
    else
        # Debian's rustc-web, not rustup's rustc (which lacks these targets here).
        RUSTC=/usr/bin/rustc CARGO_TARGET_DIR=$CROSS_TARGET_DIR \
            nice /usr/bin/cargo build --release --locked --target "$target" >&2
        echo "$CROSS_TARGET_DIR/$target/release/cairn"
    fi
}

# The packaged configuration: config/cairn.toml (every key, commented, loopback listener
# only) with data_dir /var/lib/cairn.
packaged_config() {
    local line='data_dir = "./cairn-data"'
    [ "$(grep -c -x -F "$line" config/cairn.toml)" = 1 ] \
        || fail "config/cairn.toml has no line $line"
    sed -e 's|^data_dir = "./cairn-data"$|data_dir = "/var/lib/cairn"|' \
        -e '1s|.*|# Cairn configuration of the Debian package: every key at its built-in default, but data_dir.|' \
        config/cairn.toml
}

# Runs the binary under the architecture's runner (none for amd64): --version, check-config
# of the packaged configuration, and one message through `serve`.
smoke_test() {
    local arch=$1 bin=$2 config=$3 run=()
    if [ "$arch" != amd64 ]; then
        read -r -a run <<<"$(runner "$(triple "$arch")")"
    fi
    echo "--- $arch: smoke test ${run[*]:-(native)}"
    local version
    version=$(timeout 120 "${run[@]}" "$bin" --version) || fail "$arch: --version failed"
    [ "$version" = "cairn $(cargo_version)" ] || fail "$arch: --version says '$version'"
    timeout 120 "${run[@]}" "$bin" check-config --config "$config" >"$WORK/check-config.out" \
        || fail "$arch: check-config of the packaged configuration failed"
    grep -q -x 'data_dir = "/var/lib/cairn"' "$WORK/check-config.out" \
        || fail "$arch: the packaged configuration's data_dir is not /var/lib/cairn"
    local log="$WORK/serve-$arch.log"
    start_broker "$log" timeout 300 "${run[@]}" "$bin" serve --listen 127.0.0.1:0 \
        --data-dir "$WORK/data-$arch"
    publish_retained "cairn/smoke/$arch" "hello from $arch"
    expect_message "cairn/smoke/$arch" "hello from $arch"
    stop_broker "$log"
    echo "$arch: $version; check-config, serve and a publish/subscribe round trip passed"
}

cargo_version() {
    sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1
}

# Stages the package tree and builds the .deb.
package() {
    local arch=$1 bin=$2 manpages=$3
    local stage="$WORK/stage-$arch"
    rm -rf "$stage"
    install -D -m 0755 "$bin" "$stage/usr/bin/cairn"
    install -d -m 0755 "$stage/etc/cairn"
    cp "$WORK/cairn.toml" "$stage/etc/cairn/cairn.toml"
    chmod 0644 "$stage/etc/cairn/cairn.toml"
    install -D -m 0644 packaging/cairn.service "$stage/lib/systemd/system/cairn.service"
    install -D -m 0644 packaging/debian/copyright "$stage/usr/share/doc/cairn/copyright"
    gzip -9 -n -c "$WORK/changelog" >"$stage/usr/share/doc/cairn/changelog.Debian.gz"
    install -d -m 0755 "$stage/usr/share/man/man1"
    local page
    for page in "$manpages"/*.1; do
        gzip -9 -n -c "$page" >"$stage/usr/share/man/man1/$(basename "$page").gz"
    done
    chmod 0644 "$stage"/usr/share/doc/cairn/* "$stage"/usr/share/man/man1/*
    install -d -m 0755 "$stage/DEBIAN"
    install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm \
        "$stage/DEBIAN/"
    echo /etc/cairn/cairn.toml >"$stage/DEBIAN/conffiles"
    local size
    size=$(du -s -k --apparent-size --exclude=DEBIAN "$stage" | cut -f1)
    cat >"$stage/DEBIAN/control" <<EOF
Package: cairn
Version: $VERSION
Architecture: $arch
Maintainer: $(sed -n 's/^ -- \(.*>\)  .*/\1/p' "$WORK/changelog" | head -n1)
Installed-Size: $size
Depends: libc6 (>= 2.34), libgcc-s1, adduser
Section: net
Priority: optional
Description: durable MQTT 3.1.1 and 5.0 broker for edge gateways
 Cairn keeps every session, inflight window and offline queue in an embedded
 database, so a power cut or a reboot loses no acknowledged message, and bridges
 selected topics to a cloud broker over an uplink that comes and goes.
 .
 The package runs it as the cairn system service, listening on 127.0.0.1:1883
 only until a listener is opened in /etc/cairn/cairn.toml.
EOF
    mkdir -p "$OUT"
    local deb="$OUT/cairn_${VERSION}_$arch.deb"
    # Dated by the changelog's top entry, so the same tree gives the same .deb.
    SOURCE_DATE_EPOCH=$(date -d "$(sed -n '/^ -- /{s/.*>  //p;q}' "$WORK/changelog")" +%s) \
        dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
    echo "$deb"
}

started=$(date +%s)
install_prerequisites
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-debs.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

[ -n "$VERSION" ] || VERSION=$(changelog_version)
case $VERSION in
    "$(cargo_version)"-*) ;;
    *) fail "package version $VERSION does not start with Cargo.toml's $(cargo_version)-" ;;
esac
if [ "$VERSION" = "$(changelog_version)" ]; then
    cp packaging/debian/changelog "$WORK/changelog"
else
    {
        echo "cairn ($VERSION) unstable; urgency=medium"
        echo
        echo "  * Rebuild of $(changelog_version) as $VERSION."
        echo
        sed -n '/^ -- /{p;q}' packaging/debian/changelog | sed "s/>  .*/>  $(date -R -u)/"
        echo
        cat packaging/debian/changelog
    } >"$WORK/changelog"
fi
packaged_config >"$WORK/cairn.toml"

echo "--- manual pages (a debug build with the man feature; the shipped binary lacks it)"
mkdir -p "$WORK/man"
nice cargo run --quiet --locked --features man -- man "$WORK/man"

summary=()
for arch in "${ARCHES[@]}"; do
    echo "--- $arch: release build"
    arch_started=$(date +%s)
    bin=$(build_binary "$arch")
    smoke_test "$arch" "$bin" "$WORK/cairn.toml"
    deb=$(package "$arch" "$bin" "$WORK/man")
    summary+=("$(printf '%-6s %12s %12s  %4ss  %s' "$arch" "$(stat -c %s "$bin")" \
        "$(stat -c %s "$deb")" "$(($(date +%s) - arch_started))" "$deb")")
done

echo
echo "arch    binary bytes   .deb bytes  time  package (binary stripped by the release profile)"
printf '%s\n' "${summary[@]}"
echo "total time: $(($(date +%s) - started)) s"
