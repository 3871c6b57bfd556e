#!/usr/bin/env bash
# The [dcs] cluster tests on a lab of their own: `v2` runs Patroni on etcd's
# v2 API (patroxy's `dcs: {type: etcd}`), `secure` on etcd over TLS with
# client certificates and auth (patroxy as a read-only etcd user). Brings the
# lab down first and after.
#
#   dcs_variant_test.sh v2|secure CLUSTER_TESTS_BINARY
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
variant=${1:?v2 or secure}
binary=${2:?cluster_tests binary}
case "$variant" in
    v2) export LAB_DCS=etcd LAB_ETCD_SECURE=0; tests='[dcs]' ;;
    # Over TLS and auth, what the secure transport changes: the watch, the
    # key as the fence, a switchover, an endpoint lost.
    secure) export LAB_DCS=etcd3 LAB_ETCD_SECURE=1; tests='[dcs-secure]' ;;
    *) echo "unknown variant $variant" >&2; exit 2 ;;
esac
"$here/lab/cluster.sh" down >/dev/null 2>&1 || true
trap '"$here/lab/cluster.sh" down >/dev/null 2>&1 || true' EXIT
"$here/lab/cluster.sh" up >/dev/null
"$here/lab/cluster.sh" env
"$binary" "$tests"
