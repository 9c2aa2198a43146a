#!/usr/bin/env bash
# The nightly soak flow: run the soak, compare it with the last passing nights, keep it when it
# passes. Exit codes are chaos's: 0 the night passed (and was kept; the first night, with no
# passing night before it, is kept as the first baseline), 1 a threshold, a check or the comparison
# with the history failed, 2 bad input, 3 the harness or the cluster could not run.
#   SCENARIO  the scenario (default: the built-in soak)    DURATION  its length (default 30m)
#   HISTORY   where passing nights are kept (soak-history)  LAST      nights to compare with (10)
#   SEED      a seed per night (default: the scenario's, so nights differ only by the code)
#   OUT       tonight's run folder (results/nightly-DATE); it stays there, and a passing night is
#             also copied into HISTORY                     TOLERANCE compare's --tolerance (10%)
#   KEEP      passing nights kept in HISTORY, the newest (30); older ones are deleted
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
"$chaos" compare --history "$history" --last "$last" --tolerance "${TOLERANCE:-10%}" "$out"
rc=$?
case "$rc" in
  0) ;;
  4) echo "== no passing night in $history yet: this night is the first baseline" ;;
  1) echo "== regressed against the history: not kept; its folder is $out"; exit 1 ;;
  *) echo "== the comparison could not run (exit $rc): not kept; its folder is $out"; exit "$rc" ;;
esac
cp -a "$out" "$history/$night"
echo "== kept as $history/$night"
# The newest KEEP nights stay (their folders are named by UTC time, so they sort by it).
mapfile -t nights < <(find "$history" -mindepth 1 -maxdepth 1 -type d -name '[0-9]*-[0-9]*' | sort)
drop=$(( ${#nights[@]} - ${KEEP:-30} ))
for (( i = 0; i < drop; i++ )); do
  rm -rf -- "${nights[$i]}" && echo "== dropped the oldest night ${nights[$i]}"
done
