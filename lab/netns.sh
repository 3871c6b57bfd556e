# Network namespaces for the VIP tests and the takeover bench (sourced, bash).
#
#   ptx-br: the segment, a bridge br0 (STP off, forward_delay 0)
#   ptx-a 10.213.0.11, ptx-b 10.213.0.12: the two proxy hosts
#   ptx-c 10.213.0.20: a client;   ptx-db 10.213.0.30: the database side
#   10.213.0.100: the VIP
#
# Each host namespace has eth0 (a veth into the bridge) and lo, IPv6 off, and
# only its connected route: nothing reaches outside the test's segment. No
# address is added to the root namespace.

NETNS_PREFIX=${NETNS_PREFIX:-ptx}
NET_A=10.213.0.11
NET_B=10.213.0.12
NET_C=10.213.0.20
NET_DB=10.213.0.30
NET_VIP=10.213.0.100
NET_CIDR=10.213.0.0/24

ns() { echo "$NETNS_PREFIX-$1"; }
in_ns() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }

netns_host() {
    local name=$1 address=$2 n
    n=$(ns "$name")
    ip netns add "$n"
    in_ns "$name" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$n" link set lo up
    netns_link "$name" "$address"
}

# netns_link NAME ADDRESS: the host's eth0, a veth into the bridge (again,
# after a test deleted it: a recreated interface has a new index).
netns_link() {
    local name=$1 address=$2 n
    n=$(ns "$name")
    ip link add eth0 netns "$n" type veth peer name "v-$name" netns "$(ns br)"
    ip -n "$(ns br)" link set "v-$name" master br0 up
    ip -n "$n" addr add "$address/24" dev eth0
    ip -n "$n" link set eth0 up
}

netns_up() {
    netns_down
    ip netns add "$(ns br)"
    in_ns br sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$(ns br)" link add br0 type bridge stp_state 0 forward_delay 0
    ip -n "$(ns br)" link set br0 up
    netns_host a "$NET_A"
    netns_host b "$NET_B"
    netns_host c "$NET_C"
    netns_host db "$NET_DB"
}

netns_down() {
    local name
    for name in a b c db br; do
        ip netns del "$(ns "$name")" 2>/dev/null || true
    done
}

# Which proxy host holds the VIP now: a, b, both or none.
vip_holder() {
    local a=0 b=0
    ip -n "$(ns a)" -4 -o addr show dev eth0 2>/dev/null | grep -q " $NET_VIP/" && a=1
    ip -n "$(ns b)" -4 -o addr show dev eth0 2>/dev/null | grep -q " $NET_VIP/" && b=1
    case "$a$b" in 10) echo a;; 01) echo b;; 11) echo both;; *) echo none;; esac
}

now_s() { date +%s.%N; }
elapsed_since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now_s)"; }

# wait_for LIMIT_SECONDS COMMAND...: polls every 50 ms; fails after the limit.
wait_for() {
    local limit=$1; shift
    local deadline
    deadline=$(python3 -c "import time,sys; print(time.time() + float(sys.argv[1]))" "$limit")
    until "$@" >/dev/null 2>&1; do
        python3 -c "import time,sys; sys.exit(time.time() > float(sys.argv[1]))" "$deadline" || return 1
        sleep 0.05
    done
}
holder_is() { [ "$(vip_holder)" = "$1" ]; }

# keepalived_conf FILE PRIORITY ADVERT_SECONDS: keepalived (Debian's 2.2.7)
# speaking VRRP v3 for the VIP on eth0, VRID 51, as the seed's hosts run it.
keepalived_conf() {
    cat > "$1" <<EOF
global_defs {
    vrrp_version 3
}
vrrp_instance patroxy_lab {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority $2
    advert_int $3
    virtual_ipaddress {
        $NET_VIP/24 dev eth0
    }
}
EOF
}
