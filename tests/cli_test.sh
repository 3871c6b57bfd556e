#!/usr/bin/env bash
# The command line: --version, --help, --check-config (0 valid, 2 invalid with
# file:line:col: key messages), unknown options.
set -uo pipefail
patroxy=${1:?path to the patroxy binary}
here=$(cd "$(dirname "$0")/.." && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }
out=$("$patroxy" --version) || fail "--version exit $?"
[[ $out =~ ^patroxy\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "--version printed '$out'"
out=$("$patroxy" --help) || fail "--help exit $?"
[[ $out == *--check-config* ]] || fail "--help does not mention --check-config"
"$patroxy" --check-config "$here/deploy/patroxy.example.yml" >/dev/null || fail "the example config is invalid"
bad=$(mktemp)
printf 'members:\n  - {name: pg0, host: 10.0.0.1, port: 99999, api: "http://10.0.0.1:8008"}\nhealth: {fall: 0}\n' > "$bad"
out=$("$patroxy" --check-config "$bad" 2>&1); rc=$?
rm -f "$bad"
[ $rc -eq 2 ] || fail "--check-config on a bad file exited $rc, not 2"
[[ $out == *"$bad:2:39: members[0].port: expected an integer from 1 to 65535, got '99999'"* ]] || fail "unexpected message: $out"
[[ $out == *"$bad:3:16: health.fall: expected an integer from 1 to 100, got '0'"* ]] || fail "second problem not reported: $out"
"$patroxy" --no-such-option >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "an unknown option exited $rc, not 2"
# The Prometheus scrape example is a valid scrape_configs block.
if command -v promtool >/dev/null; then
    scrape=$(mktemp)
    { echo 'global: {}'; cat "$here/deploy/grafana/prometheus-scrape.yml"; } > "$scrape"
    promtool check config "$scrape" >/dev/null 2>&1 || fail "deploy/grafana/prometheus-scrape.yml is not valid"
    rm -f "$scrape"
fi
echo "cli ok"
