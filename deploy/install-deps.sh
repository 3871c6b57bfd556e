#!/usr/bin/env bash
# Installs everything patroxy's build, tests, demo and benchmarks need, from
# Debian 12's own repositories. Safe to run again: apt-get skips what is there.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: run as root (apt-get needs it)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
packages=(
    # build
    build-essential cmake ninja-build pkg-config git
    libboost-dev libboost-program-options-dev
    libpq-dev libssl-dev nlohmann-json3-dev libyaml-cpp-dev prometheus-cpp-dev catch2
    clang libclang-rt-14-dev
    # the real cluster the demo and the integration tests run
    postgresql-15 postgresql-client-15 patroni etcd-server etcd-client
    # urllib3 only recommends idna, but needs it to check a TLS etcd's name
    python3-idna
    # references and tools for tests and benchmarks
    haproxy keepalived iproute2 nftables procps psmisc curl openssl tcpdump
    gnuplot-nox prometheus chromium
    # the Debian package (tests/package_test.sh): dpkg-buildpackage with
    # debhelper 13, lintian on the result, man for systemd-analyze verify's
    # Documentation= check, setpriv (util-linux) and prlimit to run the
    # installed binary as the unit does
    debhelper dpkg-dev lintian man-db util-linux python3
)
apt-get update -q
apt-get install -y -q --no-install-recommends "${packages[@]}"
# Debian starts a default PostgreSQL cluster on :5432 and an etcd on :2379 on
# install; the lab runs its own, so the packaged services must not hold ports.
for svc in etcd postgresql haproxy keepalived prometheus prometheus-node-exporter; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
        systemctl stop "$svc" || true
        systemctl disable "$svc" >/dev/null 2>&1 || true
    fi
done
