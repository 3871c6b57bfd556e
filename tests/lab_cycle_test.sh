#!/usr/bin/env bash
# CTest fixture setup: the lab cluster comes up, goes down leaving nothing,
# and comes up again (a second `up` after `down` must work). Leaves it up.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/lab/cluster.sh" up
"$here/tests/lab_down_test.sh"
"$here/lab/cluster.sh" up
