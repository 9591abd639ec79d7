# clickpipe developer targets. `make help` lists them.
SHELL   := /bin/bash
GO      ?= go
BIN     ?= clickpipe
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/clickpipe/clickpipe/cmd.Version=$(VERSION)

.PHONY: help build run test test-race test-all lint fuzz bench check reliability-long cluster-long clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build:  ## static binary ./clickpipe
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .

run: build  ## build and run `clickpipe serve` on embedded defaults
	./$(BIN) serve

test:  ## unit and integration tests (skips what needs external tools)
	$(GO) test -shuffle=on ./...

test-race:  ## tests with the race detector
	$(GO) test -race -shuffle=on ./...

test-all:  ## the README's test command: installs test tools, then everything CI runs
	./scripts/test-all

lint:  ## go vet and gofmt
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) mod tidy -diff

fuzz:  ## short run of every fuzz target
	./scripts/fuzz 10s

bench:  ## Go micro-benchmarks (the end-to-end suite is bench/, see BENCHMARKS.md)
	$(GO) test -run '^$$' -bench . -benchmem ./...

check: build  ## validate config.yaml
	./$(BIN) check --config config.yaml

reliability-long:  ## the long reliability tier (under 60 minutes): more kill cycles, longer outages
	set -o pipefail; CLICKPIPE_VERSITYGW=$$(bash scripts/install-versitygw.sh) CLICKPIPE_RELIABILITY=long \
		$(GO) test -count=1 -v -timeout 70m -parallel 4 ./test/reliability/... | grep -E '^(=== RUN|--- |PASS|FAIL|ok)|reliability report|Error'

cluster-long:  ## the three-node cluster suite with its long tier (disk loss, paused lake writer, owner kill, pause and isolation, rolling restart, repeated crash handovers)
	set -o pipefail; CLICKPIPE_CLUSTER_LONG=1 $(GO) test -count=1 -v -timeout 45m ./test/cluster/ \
		| grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|cluster report|routed queries|handover|snapshot|restored|Error|Messages|expected|actual|timed out|EVENTS replicas|isolat|stale|replay|SIGTERM|joined|restarted|story'

clean:
	rm -f $(BIN)
