# etcd-chaos. `make run` runs the default scenario on a local 3-member cluster; `make test` is what CI runs.
GO      ?= go
BIN     := bin/chaos
# Cluster tests time failovers: run packages one at a time so they do not compete for the 2 cores.
TESTFLAGS ?= -p 1 -count=1 -timeout 18m

.PHONY: build run test test-long bench bench-soak vet deps clean soak-nightly etcd-previous etcd-previous-bg

# Statically linked (CGO_ENABLED=0): provider container runs the same binary FROM scratch.
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/chaos

run: build
	./$(BIN) run leader-kill

# Members are real processes of the chaos binary. network: netns starts them through nsenter
# (util-linux, essential on Debian, installed here if a bare machine lacks it); namespaces, links,
# routes and qdiscs are made through netlink, so iproute2 is not needed.
# The disk layer (disk faults) is FUSE: root mounts it directly, fusermount3 (fuse3) otherwise.
# The report tests open report.html in Debian's chromium (headless) and validate junit.xml with
# xmllint (libxml2-utils): installed here when missing, as every CI machine starts bare.
deps:
	$(GO) mod download
	@missing=""; \
	command -v nsenter >/dev/null || missing="$$missing util-linux"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v xmllint >/dev/null || missing="$$missing libxml2-utils"; \
	command -v fusermount3 >/dev/null || missing="$$missing fuse3"; \
	if [ -n "$$missing" ]; then \
		echo "installing from Debian:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# The official etcd release of the minor version before the built-in one, which the rolling-upgrade
# scenario starts from: built from the Go module proxy in a throw-away module (the published server
# module's replace directives forbid go install pkg@version).
ETCD_PREVIOUS ?= v3.6.8
etcd-previous: bin/etcd-$(ETCD_PREVIOUS)
bin/etcd-$(ETCD_PREVIOUS):
	@mkdir -p bin
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && cd "$$tmp" && \
	$(GO) mod init etcd-build >/dev/null 2>&1 && \
	printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go && \
	GOFLAGS=-mod=mod $(GO) get go.etcd.io/etcd/server/v3@$(ETCD_PREVIOUS) && \
	CGO_ENABLED=0 GOFLAGS=-mod=mod $(GO) build -o $(CURDIR)/bin/etcd-$(ETCD_PREVIOUS) go.etcd.io/etcd/server/v3

# vet builds with -race, as go test -race does, so that the tests reuse what vet compiled: from a
# cold cache here, vet then the tests' build took 156 s + 217 s; with -race, 173 s + 65 s.
vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet -race ./...

# The rolling-upgrade test needs the previous etcd release: it builds in the background while deps
# and vet run (about a minute on a bare machine), and the test waits for it (or builds it itself).
test: etcd-previous-bg deps vet
	$(GO) test -race $(TESTFLAGS) ./...

etcd-previous-bg:
	@mkdir -p bin; m=bin/.etcd-previous.building; \
	if [ -e $$m ] && ! kill -0 "$$(cat $$m)" 2>/dev/null; then rm -f $$m; fi; \
	if [ ! -x bin/etcd-$(ETCD_PREVIOUS) ] && [ ! -e $$m ]; then \
		sh -c 'echo $$$$ > bin/.etcd-previous.building; $(MAKE) -s etcd-previous; rm -f bin/.etcd-previous.building' \
			</dev/null >bin/etcd-previous.log 2>&1 & \
	fi

test-long: build etcd-previous
	CHAOS=./$(BIN) ./scripts/etcd-versions.sh
	for s in $$(./$(BIN) list | cut -d' ' -f1); do \
		./$(BIN) run $$s --out results/test-long-$$s || exit $$?; \
	done

# The nightly soak flow: a 30-minute soak of repeating faults, compared with the last passing
# nights in soak-history/ (chaos compare --history), kept there when it passes. SCENARIO, DURATION,
# HISTORY, LAST, SEED, OUT, TOLERANCE and KEEP as in scripts/soak-nightly.sh (docs/nightly-ci.md).
# A short DURATION tries the flow, but the soak's growth thresholds fail it by design: a few
# minutes of a member's early heap growth, per hour, is over 200 MB/h.
soak-nightly: build
	CHAOS=./$(BIN) ./scripts/soak-nightly.sh

bench:
	$(GO) test -run '^$$' -bench . -count 3 ./loadgen
	$(GO) test -run '^$$' -bench 'BenchmarkPuts$$|BenchmarkBareClientPuts' -benchtime 20000x -count 3 ./harness
	# the throughput ratios, side by side in one run (alternating rounds): default/direct, container/local
	$(GO) test -run '^$$' -bench 'BenchmarkPutsSideBySide' -benchtime 1x ./harness
	# the disk layer's cost with no fault, side by side: disk/direct (target at least 0.85)
	$(GO) test -run '^$$' -bench 'BenchmarkDiskLayerSideBySide' -benchtime 1x ./harness
	# memory flat in run length: a stop condition's window over 2h and 20h of seconds
	$(GO) test -run '^$$' -bench 'BenchmarkStopWindowMemory' -benchtime 1x ./harness
	# the harness's own cost: its load and observers against bare clientv3 puts, side by side (A B C C B A)
	$(GO) test -run '^$$' -bench 'BenchmarkHarnessCost' -benchtime 1x -count 2 ./harness

# The memory claim: a 10-minute soak at 1,000 ops/s with a fault every 30s; fails when the
# harness's RSS grows by more than 5% over its second half (CHAOS_SOAK_DURATION to change it).
bench-soak:
	$(GO) test -run '^$$' -bench 'BenchmarkSoakMemory' -benchtime 1x -timeout 30m ./harness

clean:
	rm -rf bin results
