#!/usr/bin/env bash
# A real browser loads the stats page from a running patroxy in front of the
# lab cluster: the leader's row and both replicas' rows must be there. The
# screenshot is kept as a test artifact.
set -euo pipefail
patroxy=${1:?path to the patroxy binary}
artifacts=${2:?folder for the screenshot}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/lab/lab.env"
mkdir -p "$artifacts"
work=$(mktemp -d /tmp/patroxy-browser.XXXXXX)
sed -e 's/port: 5000}/port: 15000}/' -e 's/port: 5001}/port: 15001}/' -e 's/port: 7000$/port: 17000/' \
    "$here/lab/patroxy.yml" > "$work/patroxy.yml"
"$patroxy" -c "$work/patroxy.yml" </dev/null >/dev/null 2>"$work/patroxy.log" &
px=$!
trap 'kill $px 2>/dev/null; wait $px 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -fsS http://127.0.0.1:17000/health >/dev/null 2>&1 && break; sleep 0.1; done
leader=$("$here/lab/cluster.sh" leader)
browser=(chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
         --disable-component-update --disable-sync --user-data-dir="$work/profile" --window-size=1400,900)
dom=$(timeout 60 "${browser[@]}" --dump-dom http://127.0.0.1:17000/ 2>/dev/null)
timeout 60 "${browser[@]}" --screenshot="$artifacts/stats-page.png" http://127.0.0.1:17000/ >/dev/null 2>&1 || true
fail() { echo "FAIL: $*" >&2; exit 1; }
for m in $LAB_MEMBERS; do
    grep -q "data-member=\"$m\"" <<<"$dom" || fail "no row for $m"
done
grep -q "id=\"leader\">$leader<" <<<"$dom" || fail "the page does not name $leader as leader"
[ "$(grep -o '>Replica<' <<<"$dom" | wc -l)" -eq 2 ] || fail "two replica rows expected"
[ -s "$artifacts/stats-page.png" ] || fail "no screenshot"
echo "stats page: rows for $LAB_MEMBERS, leader $leader; screenshot $artifacts/stats-page.png"
