#!/usr/bin/env bash
# The Debian package, as an operator meets it. Three steps, run by CTest in
# this order (label `package`, as root):
#
#   package_test.sh build OUT   dpkg-buildpackage -us -uc -b from a copy of the
#                               tree (unit tests at build time), lintian (no
#                               errors), dpkg -i, what it installed, the
#                               installed --check-config, systemd-analyze verify
#   package_test.sh lab OUT     the installed binary started the way the unit
#                               starts it (user patroxy, only CAP_NET_RAW and
#                               CAP_NET_ADMIN, no new privileges, LimitNOFILE,
#                               $NOTIFY_SOCKET) in front of a lab cluster of its
#                               own: READY=1, routing, the stats page, `patroxy
#                               status` with the file's credentials, a reload, a
#                               binary upgrade (MAINPID=), a stop; then in a
#                               network namespace it makes, the VIP held and
#                               released
#   package_test.sh purge OUT   dpkg -r keeps the conffile, dpkg -P removes
#                               everything but the patroxy user
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
step=${1:?build, lab or purge}
out=${2:?output folder}
mkdir -p "$out"
fail() { echo "FAIL: $*" >&2; exit 1; }
# LimitNOFILE=65536 as the unit sets it, where this root may raise the hard
# limit (a sandbox without CAP_SYS_RESOURCE may not: then the limit it has).
if prlimit --nofile=65536:65536 true 2>/dev/null; then
    nofile=(prlimit --nofile=65536:65536)
else
    nofile=()
    echo "note: cannot raise the descriptor limit to the unit's 65536 here; running with $(ulimit -Hn)"
fi
say() { echo "== $*"; }
[ "$(id -u)" -eq 0 ] || { echo "package tests need root (dpkg -i, setpriv, netns)"; exit 77; }

build() {
    local src=$out/src
    if [ -n "${PACKAGE_REUSE:-}" ] && ls "$src"/patroxy_*.changes >/dev/null 2>&1; then
        # A developer's second run: the package built last time, checked and installed again.
        say "PACKAGE_REUSE: the package already in $src"
    else
        build_package "$src"
    fi
    install_and_check "$src"
}

# Which build-time tests failed and what each assertion said, last, where a
# CI log that keeps only the ends of long output still shows it.
build_failures() {
    echo "-- build-time tests that failed:"
    grep -E '^[[:space:]]+[0-9]+ - .*\((Failed|Timeout|SEGFAULT|Subprocess aborted|Exception|Not Run)\)' "$1" || echo "(none: the build itself failed)"
    echo "-- what they said:"
    grep -E -A6 ': FAILED:$' "$1" | head -40 || true
}

build_package() {
    local src=$1
    rm -rf "$src" && mkdir -p "$src/patroxy"
    # What git tracks (and what is new but not ignored): no build folders.
    if git -C "$here" rev-parse >/dev/null 2>&1; then
        (cd "$here" && git ls-files -co --exclude-standard -z | grep -zv '^build/' | tar --null -cf - -T -) |
            tar -C "$src/patroxy" -xf -
    else
        tar -C "$here" --exclude=./build -cf - . | tar -C "$src/patroxy" -xf -
    fi
    say "dpkg-buildpackage -us -uc -b (DEB_BUILD_OPTIONS=parallel=2; unit tests at build time)"
    local t0=$SECONDS
    (cd "$src/patroxy" && DEB_BUILD_OPTIONS=parallel=2 dpkg-buildpackage -us -uc -b) > "$out/dpkg-buildpackage.log" 2>&1 ||
        { tail -60 "$out/dpkg-buildpackage.log"; build_failures "$out/dpkg-buildpackage.log"
          fail "dpkg-buildpackage failed (log: $out/dpkg-buildpackage.log)"; }
    echo "package built in $((SECONDS - t0)) s"
    grep -E '^[0-9]+% tests passed|tests passed, ' "$out/dpkg-buildpackage.log" || fail "no build-time test summary"
    # The build honours the distribution's flags (hardening=+all): PIE, RELRO, BIND_NOW, fortify.
    grep -q -- '-fstack-protector-strong' "$out/dpkg-buildpackage.log" || fail "the build did not use dpkg-buildflags' CXXFLAGS"
}

install_and_check() {
    local src=$1 deb
    deb=$(ls "$src"/patroxy_*.deb | grep -v dbgsym | head -1)
    [ -f "$deb" ] || fail "no .deb in $src"
    cp "$deb" "$out/"
    deb=$out/$(basename "$deb")

    say "lintian"
    local lint
    lint=$(lintian --display-info --show-overrides "$src"/patroxy_*.changes 2>&1 || true)
    echo "$lint" | tee "$out/lintian.txt"
    ! grep -q '^E:' <<< "$lint" || fail "lintian reports errors"
    ! grep -q '^W:' <<< "$lint" || fail "lintian reports warnings that are neither fixed nor overridden with a reason"

    say "dpkg -i $(basename "$deb")"
    dpkg -i "$deb"
    for f in /usr/sbin/patroxy /etc/patroxy/patroxy.yml /lib/systemd/system/patroxy.service \
             /usr/share/man/man8/patroxy.8.gz /usr/share/man/man5/patroxy.yml.5.gz \
             /usr/share/patroxy/patroxy-dashboard.json /usr/share/patroxy/prometheus-scrape.yml \
             /usr/share/doc/patroxy/examples/patroxy.example.yml /usr/lib/sysusers.d/patroxy.conf; do
        [ -e "$f" ] || fail "$f is not installed"
    done
    dpkg-query -W -f='${Conffiles}\n' patroxy | grep -q '/etc/patroxy/patroxy.yml' || fail "patroxy.yml is not a conffile"
    getent passwd patroxy | grep -q ':/usr/sbin/nologin$' || fail "no patroxy system user with nologin"
    [ "$(getent passwd patroxy | cut -d: -f3)" -lt 1000 ] || fail "the patroxy user is not a system user"
    [ "$(stat -c '%a %U:%G' /etc/patroxy/patroxy.yml)" = "640 root:patroxy" ] ||
        fail "patroxy.yml is $(stat -c '%a %U:%G' /etc/patroxy/patroxy.yml), not 640 root:patroxy (it may hold passwords)"
    grep -A1 '^vip:' /etc/patroxy/patroxy.yml | grep -q 'enabled: false' || fail "the installed configuration enables the VIP"
    man -w patroxy >/dev/null && man -w patroxy.yml >/dev/null || fail "man cannot find patroxy(8) or patroxy.yml(5)"
    zcat /usr/share/man/man5/patroxy.yml.5.gz | grep -q 'vip.peer_probe_interval' || fail "patroxy.yml(5) lacks the keys"
    # Not started on install: the example names the seed's hosts.
    ! pgrep -f '^/usr/sbin/patroxy' >/dev/null || fail "installing started /usr/sbin/patroxy"

    say "the installed --check-config on the installed configuration, as the unit runs it"
    "${nofile[@]}" setpriv --reuid=patroxy --regid=patroxy --init-groups --no-new-privs \
        /usr/sbin/patroxy --check-config /etc/patroxy/patroxy.yml || fail "--check-config of the installed file"

    say "systemd-analyze verify patroxy.service"
    local v
    v=$(systemd-analyze verify /lib/systemd/system/patroxy.service 2>&1) || fail "systemd-analyze verify: $v"
    echo "${v:-(clean)}" | tee "$out/systemd-analyze-verify.txt"
    [ -z "$v" ] || fail "systemd-analyze verify is not clean"
    # What the issue asks of the unit, line by line.
    local u=/lib/systemd/system/patroxy.service
    for want in '^Type=notify$' '^NotifyAccess=all$' '^User=patroxy$' '^NoNewPrivileges=yes$' '^ProtectSystem=strict$' \
                '^ProtectHome=yes$' '^PrivateTmp=yes$' '^AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN$' \
                '^CapabilityBoundingSet=CAP_NET_RAW CAP_NET_ADMIN$' '^LimitNOFILE=' \
                '^RestrictAddressFamilies=.*AF_NETLINK.*AF_PACKET' '^ExecReload=/usr/sbin/patroxy --check-config' \
                '^ExecReload=/bin/kill -HUP \$MAINPID$' '^TimeoutStopSec=60s$'; do
        grep -Eq "$want" "$u" || fail "the unit lacks $want"
    done
    systemd-analyze security --offline=true "$u" 2>/dev/null | tail -1 || true
}

# A datagram socket where $NOTIFY_SOCKET points, as systemd keeps one: every
# message received goes to a file, one per line (\n as |).
start_notify() {
    local sock=$1 log=$2
    python3 - "$sock" "$log" >/dev/null 2>&1 <<'EOF' &
import os, socket, sys, time
path, log = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o666)
s.settimeout(1.0)
end = time.time() + 240
with open(log, "a", buffering=1) as f:
    while time.time() < end:
        try:
            m = s.recv(4096)
        except socket.timeout:
            continue
        f.write(m.decode(errors="replace").replace("\n", "|") + "\n")
EOF
    echo $!
}

# The unit's way: user patroxy, only the unit's capabilities, no new privileges.
# exec: started with `&`, $! is then the patroxy process itself.
as_unit() {
    exec "${nofile[@]}" setpriv --reuid=patroxy --regid=patroxy --init-groups \
        --inh-caps=-all,+net_raw,+net_admin --ambient-caps=-all,+net_raw,+net_admin \
        --bounding-set=-all,+net_raw,+net_admin --no-new-privs "$@"
}

wait_for() {  # wait_for SECONDS COMMAND...: true once COMMAND succeeds, polled every 0.2 s
    local limit=$1; shift
    local i
    for ((i = 0; i < limit * 5; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}

lab() {
    command -v /usr/sbin/patroxy >/dev/null || fail "patroxy is not installed (the build step installs it)"
    . "$here/lab/lab.env"
    # Not local: the EXIT trap runs after this function has returned.
    work=$(mktemp -d /tmp/patroxy-pkg.XXXXXX)
    chmod 755 "$work"
    mkdir -p "$work/run" && chown patroxy:patroxy "$work/run"
    pids=() ns=pxpkg$$
    cleanup() {
        # Ours only, by id: those started here, and a next process an upgrade started.
        local p
        for p in "${pids[@]}" $(grep -o 'MAINPID=[0-9]*' "$work/notify.log" 2>/dev/null | cut -d= -f2); do
            kill "$p" 2>/dev/null || true
        done
        ip netns del "$ns" 2>/dev/null || true
        "$here/lab/cluster.sh" down >/dev/null 2>&1 || true
        rm -rf "$work"
    }
    trap cleanup EXIT
    "$here/lab/cluster.sh" down >/dev/null 2>&1 || true
    say "lab/cluster.sh up"
    "$here/lab/cluster.sh" up >/dev/null

    sed -e 's/port: 5000}/port: 25000}/' -e 's/port: 5001}/port: 25001}/' -e 's/port: 7000$/port: 27000/' \
        "$here/lab/patroxy.yml" > "$work/patroxy.yml"
    printf '  auth: {username: ops, password: "pkg-secret"}\ncontrol_socket: %s/run/patroxy.sock\n' "$work" >> "$work/patroxy.yml"
    grep -q '^stats:' "$work/patroxy.yml" && tail -4 "$work/patroxy.yml" | grep -q 'port: 27000' ||
        fail "the lab configuration changed shape: the stats port is not the last key before auth"
    chmod 644 "$work/patroxy.yml"
    /usr/sbin/patroxy --check-config "$work/patroxy.yml"

    local nlog=$work/notify.log
    pids+=("$(start_notify "$work/notify.sock" "$nlog")")
    wait_for 10 test -S "$work/notify.sock" || fail "the notify socket did not appear"
    say "the installed patroxy as user patroxy with CAP_NET_RAW and CAP_NET_ADMIN only, Type=notify"
    (NOTIFY_SOCKET=$work/notify.sock as_unit /usr/sbin/patroxy -c "$work/patroxy.yml" 2> "$work/patroxy.log") &
    local px=$!
    pids+=("$px")
    wait_for 30 grep -q '^READY=1' "$nlog" || { cat "$work/patroxy.log"; fail "no READY=1 within 30 s"; }
    grep '^READY=1' "$nlog" | head -1
    grep -q '^READY=1|STATUS=leader pg' "$nlog" || fail "READY=1 came before a leader was known: $(head -1 "$nlog")"
    local st=/proc/$px/status
    [ "$(stat -c %U "/proc/$px")" = patroxy ] || fail "patroxy does not run as user patroxy"
    grep -q '^CapEff:[[:space:]]*0000000000003000$' "$st" || fail "effective capabilities: $(grep CapEff "$st")"
    grep -q '^CapBnd:[[:space:]]*0000000000003000$' "$st" || fail "bounding set: $(grep CapBnd "$st")"
    grep -q '^NoNewPrivs:[[:space:]]*1$' "$st" || fail "no_new_privs is not set"

    export PGPASSWORD=$LAB_SUPERUSER_PASSWORD PGUSER=$LAB_SUPERUSER PGHOST=127.0.0.1 PGDATABASE=$LAB_DATABASE PGSSLMODE=disable
    say "routing through the installed binary"
    wait_for 20 psql -X -At -p 25000 -c 'select 1' || fail "no session through :25000"
    [ "$(psql -X -At -p 25000 -c 'select pg_is_in_recovery()')" = f ] || fail ":25000 does not reach the leader"
    wait_for 20 psql -X -At -p 25001 -c 'select 1' || fail "no session through :25001"
    [ "$(psql -X -At -p 25001 -c 'select pg_is_in_recovery()')" = t ] || fail ":25001 does not reach a replica"

    say "the stats page, /status.json, and patroxy status with the file's credentials"
    [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:27000/status.json)" = 401 ] || fail "the stats port is not behind auth"
    curl -sf -u ops:pkg-secret http://127.0.0.1:27000/ | grep -q '<html' || fail "no stats page"
    curl -sf -u ops:pkg-secret http://127.0.0.1:27000/status.json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["cluster"]["leader"], d["cluster"]' ||
        fail "/status.json names no leader"
    local status
    status=$(/usr/sbin/patroxy status -c "$work/patroxy.yml") || fail "patroxy status exited $? with a leader"
    echo "$status"
    grep -q '^+ Cluster: postgres-cluster (leader pg' <<< "$status" || fail "patroxy status shows no leader"
    /usr/sbin/patroxy sessions -c "$work/patroxy.yml" >/dev/null || fail "patroxy sessions failed"

    say "reload (what ExecReload does): RELOADING=1, then READY=1"
    local before
    before=$(grep -c '^READY=1' "$nlog")
    /usr/sbin/patroxy --check-config "$work/patroxy.yml" >/dev/null && kill -HUP "$px"
    wait_for 10 grep -q '^RELOADING=1|MONOTONIC_USEC=' "$nlog" || fail "no RELOADING=1"
    wait_for 10 test "$(grep -c '^READY=1' "$nlog")" -gt "$before" || fail "no READY=1 after the reload"

    say "binary upgrade (what the package's postinst does): the new process says MAINPID="
    kill -USR2 "$px"
    wait_for 30 grep -q 'MAINPID=' "$nlog" || { tail -20 "$work/patroxy.log"; fail "no MAINPID= from the next process"; }
    local next
    next=$(grep -o 'MAINPID=[0-9]*' "$nlog" | tail -1 | cut -d= -f2)
    [ "$next" != "$px" ] && [ -d "/proc/$next" ] || fail "MAINPID=$next is not a new running process"
    [ "$(stat -c %U "/proc/$next")" = patroxy ] || fail "the next process does not run as patroxy"
    grep -q '^CapEff:[[:space:]]*0000000000003000$' "/proc/$next/status" || fail "the next process lost its capabilities"
    wait_for 40 test ! -d "/proc/$px" || fail "the old process did not exit after the handover"
    [ "$(psql -X -At -p 25000 -c 'select pg_is_in_recovery()')" = f ] || fail "no routing after the upgrade"
    pids+=("$next")

    say "stop: STOPPING=1 with the drain time, then exit"
    kill -TERM "$next"
    wait_for 40 test ! -d "/proc/$next" || fail "the upgraded process did not stop"
    grep -q '^STOPPING=1|EXTEND_TIMEOUT_USEC=' "$nlog" || fail "no STOPPING=1"
    "$here/lab/cluster.sh" down >/dev/null

    say "the VIP, held as user patroxy with the unit's capabilities, in network namespace $ns"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$ns" link add pxa type veth peer name pxb
    ip -n "$ns" addr add 10.213.7.11/24 dev pxa
    ip -n "$ns" link set pxa up
    ip -n "$ns" link set pxb up
    cat > "$work/vip.yml" <<EOF
members:
  - {name: pg0, host: 127.0.0.1, port: 15432, api: "http://127.0.0.1:18008"}
listeners:
  - {name: master, role: write, bind: 127.0.0.1, port: 25000}
stats: {bind: 127.0.0.1, port: 27000}
control_socket: ''
vip:
  enabled: true
  interface: pxa
  address: 10.213.7.100/24
  virtual_router_id: 77
  priority: 150
  advert_interval: 200ms
  track_weight: 50
  unhealthy_after: 10m
EOF
    chmod 644 "$work/vip.yml"
    ip netns exec "$ns" "${nofile[@]}" setpriv --reuid=patroxy --regid=patroxy --init-groups \
        --inh-caps=-all,+net_raw,+net_admin --ambient-caps=-all,+net_raw,+net_admin \
        --bounding-set=-all,+net_raw,+net_admin --no-new-privs /usr/sbin/patroxy -c "$work/vip.yml" 2> "$work/vip.log" &
    local vp=$!
    pids+=("$vp")
    has_vip() { ip -n "$ns" -4 addr show dev pxa | grep -q 'inet 10.213.7.100/24'; }
    wait_for 15 has_vip || { cat "$work/vip.log"; fail "the VIP was not added within 15 s"; }
    echo "VIP 10.213.7.100 held by pid $vp (user $(stat -c %U /proc/$vp))"
    kill -TERM "$vp"
    wait_for 40 test ! -d "/proc/$vp" || fail "the VIP holder did not stop"
    ! has_vip || fail "the VIP is still on the interface after a stop"
    echo "VIP released on stop"
}

purge() {
    dpkg-query -W patroxy >/dev/null 2>&1 || fail "patroxy is not installed"
    say "dpkg -r: the conffile stays"
    dpkg -r patroxy
    [ ! -e /usr/sbin/patroxy ] || fail "/usr/sbin/patroxy is left after remove"
    [ -f /etc/patroxy/patroxy.yml ] || fail "remove took the conffile"
    say "dpkg -P: nothing is left but the patroxy system user (Debian does not remove system users)"
    dpkg -P patroxy
    local left=()
    for f in /usr/sbin/patroxy /etc/patroxy /lib/systemd/system/patroxy.service /usr/share/patroxy \
             /usr/share/doc/patroxy /usr/share/man/man8/patroxy.8.gz /usr/share/man/man5/patroxy.yml.5.gz \
             /usr/lib/sysusers.d/patroxy.conf /var/lib/dpkg/info/patroxy.list; do
        [ ! -e "$f" ] || left+=("$f")
    done
    [ ${#left[@]} -eq 0 ] || fail "left after purge: ${left[*]}"
    ! dpkg-query -W patroxy >/dev/null 2>&1 || fail "dpkg still knows patroxy"
    echo "purged: nothing left"
}

case "$step" in
    build) build ;;
    lab) lab ;;
    purge) purge ;;
    *) fail "unknown step $step" ;;
esac
echo "package $step ok"
