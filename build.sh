#!/usr/bin/env bash
# FPM Doctor build entry point.
#   ./build.sh test    install missing system packages, then run every test
#   ./build.sh [build] static binary (musl; glibc static fallback) + fpm_doctor.tar.gz in dist/
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# --- test ------------------------------------------------------------------

# The end-to-end tests run the real daemons: nginx, php-fpm 8.2 (Debian 12's
# PHP), Apache 2.4, MariaDB, curl, openssl, and unshare/nsenter from util-linux.
install_test_deps() {
    local want=() nginx=0
    [ -x /usr/sbin/nginx ] || nginx=1
    [ -x /usr/sbin/php-fpm8.2 ] || want+=(php8.2-fpm)
    command -v php8.2 >/dev/null 2>&1 || want+=(php8.2-cli)
    command -v curl >/dev/null 2>&1 || want+=(curl)
    command -v openssl >/dev/null 2>&1 || want+=(openssl)
    { command -v unshare && command -v nsenter && command -v mountpoint; } >/dev/null 2>&1 || want+=(util-linux)
    command -v mount >/dev/null 2>&1 || want+=(mount)
    # e2e_repair's nginx_apache scenario: a real Apache with mod_proxy_fcgi;
    # DA's vhosts use SuexecUserGroup, which needs the suexec binary.
    [ -x /usr/sbin/apache2 ] || want+=(apache2)
    [ -e /usr/lib/apache2/suexec ] || want+=(apache2-suexec-pristine)
    # e2e_mysql: a real MariaDB (DA's database) and its client.
    [ -x /usr/sbin/mariadbd ] || want+=(mariadb-server)
    [ -x /usr/bin/mariadb ] || want+=(mariadb-client)
    # tests/browser.rs drives a headless chromium.
    command -v chromium >/dev/null 2>&1 || want+=(chromium)
    if [ "$nginx" -eq 0 ] && [ "${#want[@]}" -eq 0 ]; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "build.sh: missing test dependencies; run as root so they can be installed" >&2
        exit 1
    fi
    apt-get update -qq
    if [ "$nginx" -eq 1 ]; then
        # nginx-light is enough; the full package is the fallback.
        if apt-cache show nginx-light >/dev/null 2>&1; then want+=(nginx-light); else want+=(nginx); fi
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" </dev/null
    # Debian may start nginx/php-fpm services on install; the tests do not
    # use them: they run their own daemons in a private mount namespace.
}

run_tests() {
    install_test_deps
    # The package test checks the real tarball and its static binary.
    run_build
    cargo test
}

# --- build: static binary + plugin tarball ------------------------------------

TARGET=x86_64-unknown-linux-musl

# A static musl binary; glibc static only as a fallback (FPM Doctor never
# calls NSS, which is what breaks static glibc binaries).
build_binary() {
    if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
        rustup target add "$TARGET" >/dev/null 2>&1 || true
    fi
    if ! command -v musl-gcc >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools </dev/null || true
    fi
    command -v file >/dev/null 2>&1 || { [ "$(id -u)" -eq 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq file </dev/null; } || true
    if rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
        cargo build --release --target "$TARGET"
        BIN="target/$TARGET/release/fpm-doctor"
    else
        echo "build.sh: musl target unavailable, building a static glibc binary" >&2
        RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --target x86_64-unknown-linux-gnu
        BIN="target/x86_64-unknown-linux-gnu/release/fpm-doctor"
    fi
}

# The plugin tarball: plugin.conf at the archive root (DA names the folder
# after the tarball, so no version in the name).
run_build() {
    build_binary
    STAGE=$(mktemp -d)
    trap 'rm -rf "$STAGE"' EXIT
    local stage="$STAGE"
    cp plugin.conf "$stage/"
    local version
    version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
    sed -i "s/^version=.*/version=$version/" "$stage/plugin.conf"
    for d in admin reseller user hooks scripts images menus; do
        mkdir -p "$stage/$d"
        if [ -d "$d" ]; then cp -a "$d/." "$stage/$d/"; fi
    done
    mkdir -p "$stage/bin"
    cp "$BIN" "$stage/bin/fpm-doctor"
    mkdir -p dist
    tar -C "$stage" --owner=0 --group=0 -czf dist/fpm_doctor.tar.gz .
    cp "$BIN" dist/fpm-doctor
    echo "built dist/fpm-doctor ($(stat -c %s dist/fpm-doctor) bytes) and dist/fpm_doctor.tar.gz"
}

case "${1:-build}" in
    test) run_tests ;;
    build) run_build ;;
    *)
        echo "usage: $0 [build|test]" >&2
        exit 2
        ;;
esac
