#!/usr/bin/env bash
# The nightly soak flow: run the soak, compare it with the last passing nights, keep it when it
# passes. Exit codes are chaos's: 0 the night passed (and was kept), 1 a threshold, a check or the
# comparison with the history failed, 2 bad input, 3 the harness or the cluster could not run.
#   SCENARIO  the scenario (default: the built-in soak)    DURATION  its length (default 30m)
#   HISTORY   where passing nights are kept (soak-history)  LAST      nights to compare with (10)
#   SEED      a seed per night (default: the scenario's, so nights differ only by the code)
set -uo pipefail
chaos=${CHAOS:-./bin/chaos}
scenario=${SCENARIO:-soak}
duration=${DURATION:-30m}
history=${HISTORY:-soak-history}
last=${LAST:-10}
night=$(date -u +%Y%m%d-%H%M%S)
out=${OUT:-results/nightly-$night}
sets=(--set "workload.duration=$duration")
if [ -n "${SEED:-}" ]; then sets+=(--set "seed=$SEED"); fi

echo "== run: $scenario for $duration into $out"
"$chaos" run "$scenario" --no-progress --out "$out" "${sets[@]}"
rc=$?
if [ "$rc" -ne 0 ]; then
  echo "== the run did not pass (exit $rc): not kept; its folder is $out"
  exit "$rc"
fi

mkdir -p "$history"
echo "== compare with the history in $history"
"$chaos" compare --history "$history" --last "$last" "$out"
rc=$?
case "$rc" in
  0) ;;
  2) if [ -z "$(ls -A "$history")" ]; then
       echo "== no history yet: this night is the first baseline"
     else
       exit 2
     fi ;;
  *) echo "== regressed against the history: not kept; its folder is $out"; exit "$rc" ;;
esac
mv "$out" "$history/$night"
echo "== kept as $history/$night"
