#!/usr/bin/env bash
# Run a command once the machine has been quiet: the 1-minute load average below $LOAD_MAX
# (default 1.0) for $QUIET_CHECKS checks in a row, 10 s apart; give up after $MAX_WAIT seconds
# (default 3600) and run anyway, saying so. The load averages seen are printed before the run.
# Usage: benchmarks/load/run_when_quiet.sh kuma-load run --proxies 10000 all --out results/10k
set -euo pipefail
LOAD_MAX=${LOAD_MAX:-1.0}
QUIET_CHECKS=${QUIET_CHECKS:-6}
MAX_WAIT=${MAX_WAIT:-3600}
quiet=0
waited=0
while (( quiet < QUIET_CHECKS )); do
  load=$(cut -d' ' -f1 /proc/loadavg)
  if awk -v l="$load" -v m="$LOAD_MAX" 'BEGIN { exit !(l < m) }'; then
    quiet=$((quiet + 1))
  else
    quiet=0
  fi
  if (( waited >= MAX_WAIT )); then
    echo "run_when_quiet: still busy after ${MAX_WAIT}s (load $load); running anyway" >&2
    break
  fi
  sleep 10
  waited=$((waited + 10))
done
echo "run_when_quiet: loadavg $(cut -d' ' -f1-3 /proc/loadavg) after ${waited}s: $*" >&2
exec "$@"
