#!/usr/bin/env bash
# Runs every benchmark under bench/ in turn; each prints its own table.
set -uo pipefail
cd "$(dirname "$0")/.."
rc=0
for b in bench/bench_*.py; do
  echo "=== $b"
  python "$b" "$@" || rc=1
done
exit $rc
