#!/usr/bin/env bash
# `cluster.sh down` stops everything the lab started: no process left whose
# command line names the lab directory, and no lab port still listening.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/lab/lab.env"
"$here/lab/cluster.sh" down
left=""
for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    [ -r "/proc/$pid/stat" ] || continue
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = "Z" ] && continue
    if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$LAB_DIR"; then
        left+=" $pid($(tr '\0' ' ' < "/proc/$pid/cmdline" | cut -c1-60))"
    fi
done
if [ -n "$left" ]; then
    echo "FAIL: processes left behind:$left" >&2
    exit 1
fi
ports=$(ss -Hltn | awk '{print $4}' | sed 's/.*://' | sort -u)
for p in $(seq "$LAB_PG_PORT_BASE" $((LAB_PG_PORT_BASE + 2))) $(seq "$LAB_API_PORT_BASE" $((LAB_API_PORT_BASE + 2))) \
         $(seq "$LAB_ETCD_PORT_BASE" $((LAB_ETCD_PORT_BASE + 5))); do
    if grep -qx "$p" <<< "$ports"; then
        echo "FAIL: port $p still listening" >&2
        exit 1
    fi
done
echo "down left nothing behind"
