# Sourced by bench/standin_run.sh and bench/syscalls.sh: one stand-in member
# (bench/standin_main.cpp: a PostgreSQL that answers the startup at once and
# then echoes, plus a Patroni-shaped API saying "leader") with patroxy and
# HAProxy (the seed's check settings) in front of it.
#
#   standin_up BUILD_DIR OUT_DIR PG API PX PX_STATS HA HA_STATS
# starts all three and sets $standin, $px and $ha (their pids);
# start_patroxy / start_haproxy start one again after it was stopped;
# standin_down stops all three.

standin_up() {
    sb_build=$1 sb_out=$2 PG=$3 API=$4 PX=$5 PX_STATS=$6 HA=$7 HA_STATS=$8
    "$sb_build/patroxy_standin_server" --port "$PG" --api-port "$API" 2>"$sb_out/standin.log" &
    standin=$!
    cat > "$sb_out/patroxy-standin.yml" <<YML
members:
  - {name: standin, host: 127.0.0.1, port: $PG, api: "http://127.0.0.1:$API"}
listeners:
  - {name: master, role: write, bind: 127.0.0.1, port: $PX, maxconn: 20000}
stats: {bind: 127.0.0.1, port: $PX_STATS}
log: {level: warn}
YML
    cat > "$sb_out/haproxy-standin.cfg" <<CFG
global
    pidfile $sb_out/haproxy-standin.pid
defaults
    mode tcp
    retries 2
    timeout queue 5s
    timeout connect 5s
    timeout client 60m
    timeout server 60m
    timeout check 15s
listen stats
    mode http
    bind 127.0.0.1:$HA_STATS
    stats enable
    stats uri /
listen master
    bind 127.0.0.1:$HA
    maxconn 20000
    option httpchk OPTIONS /primary
    http-check expect status 200
    default-server inter 3s fall 3 rise 2 on-marked-down shutdown-sessions
    server standin 127.0.0.1:$PG check port $API
CFG
    start_patroxy
    start_haproxy
    pxb=
    if [ -n "${PATROXY_BEFORE:-}" ]; then
        sed -e "s/port: $PX,/port: $PXB,/" -e "s/port: $PX_STATS}/port: $PXB_STATS}/" \
            "$sb_out/patroxy-standin.yml" > "$sb_out/patroxy-standin-before.yml"
        start_before
    fi
}

start_before() {
    "$PATROXY_BEFORE" -c "$sb_out/patroxy-standin-before.yml" </dev/null >/dev/null 2>>"$sb_out/patroxy-standin-before.log" &
    pxb=$!
}

start_patroxy() {
    "$sb_build/patroxy" -c "$sb_out/patroxy-standin.yml" </dev/null >/dev/null 2>>"$sb_out/patroxy-standin.log" &
    px=$!
}

start_haproxy() {
    haproxy -f "$sb_out/haproxy-standin.cfg" -db </dev/null >>"$sb_out/haproxy-standin.log" 2>&1 &
    ha=$!
}

standin_down() {
    kill "$standin" "$px" "$ha" $pxb 2>/dev/null
    wait "$standin" "$px" "$ha" $pxb 2>/dev/null || true
}
