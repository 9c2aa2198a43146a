#!/usr/bin/env bash
# Runs a shortened leader-kill and partition-leader (through the peer proxy, which must attribute
# every connection of that etcd version) against official etcd binaries of each supported minor version, built
# from the Go module proxy in throw-away modules (a published server module's replace directives
# forbid `go install pkg@version`, but a module that requires it may build it).
set -euo pipefail
chaos=${CHAOS:-./bin/chaos}
versions=${ETCD_VERSIONS:-"v3.5.35 v3.6.8 v3.7.3"}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for v in $versions; do
  mod="$work/mod-$v"
  mkdir -p "$mod"
  (cd "$mod" && go mod init etcd-build >/dev/null 2>&1 &&
   printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go &&
   go get "go.etcd.io/etcd/server/v3@$v" >/dev/null 2>&1 &&
   go build -o "$work/etcd-$v" go.etcd.io/etcd/server/v3)
  echo "== etcd $v"
  "$chaos" run leader-kill --no-progress --out "$work/run-$v" \
    --set workload.duration=16s --set faults[0].at=6s --set faults[0].duration=4s \
    --set cluster.etcd-binary="$work/etcd-$v" | grep -E "^scenario|leader elected|caught up|verdict"
  "$chaos" run partition-leader --no-progress --out "$work/part-$v" \
    --set workload.duration=16s --set faults[0].at=6s --set faults[0].duration=4s \
    --set cluster.etcd-binary="$work/etcd-$v" | grep -E "leader elected|caught up|bytes crossed|verdict"
done
