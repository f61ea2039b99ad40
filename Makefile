# Nearcast: `make run` starts a demo server, `make test` runs every test.
GO       ?= go
BIN      := bin/nearcast
BENCH    := bin/nearcast-bench
# Root installs directly; anyone else through sudo.
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run run-redis build build-bench test test-deps redis-dep vet lint-api fuzz abuse cluster-test bench bench-full bench-go clean

build:
	$(GO) build -o $(BIN) ./cmd/nearcast

## build-bench: the load bench, a binary of its own; it starts the
## nearcast binary beside it (bin/nearcast).
build-bench:
	$(GO) build -o $(BENCH) ./cmd/nearcast-bench

## run: the server on the embedded Redis with demo data and the log push sender.
## The embedded Redis lives in the server's memory: a restart forgets
## everything (stores, rules, customers, coupons).
run: build
	./$(BIN) serve

## run-redis: the same demo on a redis-server of its own (port 6390) that
## keeps its data in .data/ across restarts of both; stop that Redis with
## `redis-cli -p 6390 shutdown`. The secrets are the demo's, fixed so that
## coupons and tokens outlive a restart: never use them for real.
DEMO_ENV := NEARCAST_REDIS_URL=redis://127.0.0.1:6390 NEARCAST_DEMO=1 NEARCAST_APP_KEYS=demo-app NEARCAST_ADMIN_KEYS=demo-admin \
	NEARCAST_COUPON_SECRET=demo-coupon-secret-not-for-real-use NEARCAST_TOKEN_SECRETS=demo-token-secret-not-for-real-use-0123456789 \
	NEARCAST_QUIET_HOURS=off NEARCAST_LOG_FORMAT=text
run-redis: build redis-dep
	@mkdir -p .data
	@redis-cli -p 6390 ping >/dev/null 2>&1 || redis-server --port 6390 --bind 127.0.0.1 --dir "$(CURDIR)/.data" --appendonly yes --daemonize yes --logfile "$(CURDIR)/.data/redis.log"
	$(DEMO_ENV) ./$(BIN) serve

## test: installs redis-server, chromium, curl and python3 when missing, then vets and runs
## every test (each test package starts and stops its own redis-server on
## loopback; the console's test drives headless chromium, screenshots in
## api/console/testout/console/). It lints api/openapi.yaml first (lint-api)
## where npx is installed, and says so where it is not.
test: test-deps vet
	@if command -v npx >/dev/null 2>&1; then $(MAKE) --no-print-directory lint-api; \
	else echo "lint-api skipped: npx is not installed (Node.js and npm), so api/openapi.yaml was not linted"; fi
	$(GO) test -count=1 -race -short -timeout 8m ./...
	$(GO) test -count=1 -timeout 5m -run 'IndexMatchesBruteForce' ./geo
	$(MAKE) fuzz FUZZTIME=40000x
	$(MAKE) cluster-test

## fuzz: each fuzz target for FUZZTIME (its corpus: testdata/fuzz in its package).
## FUZZTIME is a count of runs ("500000x"), not a duration: Go 1.26's fuzz
## coordinator can fail a target with a spurious "context deadline exceeded"
## when a duration runs out (golang/go#75804, fixed in Go 1.27); a count
## has no deadline to race. 40,000 runs take a few seconds a target here.
FUZZTIME ?= 500000x
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodePing$$' -fuzztime $(FUZZTIME) ./api
	$(GO) test -run '^$$' -fuzz '^FuzzPingFastDecode$$' -fuzztime $(FUZZTIME) ./api
	$(GO) test -run '^$$' -fuzz '^FuzzCompileRule$$' -fuzztime $(FUZZTIME) ./rules
	$(GO) test -run '^$$' -fuzz '^FuzzRenderTemplate$$' -fuzztime $(FUZZTIME) ./rules
	$(GO) test -run '^$$' -fuzz '^FuzzMarketerCode$$' -fuzztime $(FUZZTIME) ./rules

## abuse: the abuse suite alone (docs/security.md lists each attack and its
## test); `make test` runs it with everything else.
ABUSE := AppKeyAlone|StolenAppKey|RevokedTokens|DevicesTellNoOne|Audience|Template|RenderBounds|RenderError|CustomerLimits|ErasureWins|IDsCannotReach|PathIDs|BulkBodyCutShort|SlowBodies|RefusedBulkBody|BulkUploadFailedPartWay|HungRedis|UnavailableRedis|DemoTour|LocationTrust|MinTrust
abuse: test-deps
	$(GO) test -count=1 -short -run '$(ABUSE)' ./rules ./engine ./api ./cmd/nearcast
	$(GO) test -run '^$$' -fuzz '^FuzzMarketerCode$$' -fuzztime 40000x ./rules

## cluster-test: the integration and end-to-end tests again on a Redis
## Cluster of six local redis-server processes (three masters, three
## replicas) that each test package starts and stops, with two Nearcast
## replicas, and a master killed mid-run (TestClusterFailover).
cluster-test: test-deps
	NEARCAST_TEST_CLUSTER=1 $(GO) test -count=1 -short -timeout 8m ./engine ./engine/webhook ./api ./rules
	NEARCAST_TEST_CLUSTER=1 $(GO) test -count=1 -short -timeout 8m -v -run 'Cluster|TwoReplicas|EndToEnd|KilledMidStream' ./cmd/nearcast

test-deps: redis-dep
	@# The console's browser test (api/console) drives Debian's chromium.
	@command -v chromium >/dev/null 2>&1 || { \
		echo "chromium is missing: installing it with apt-get"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium >/dev/null && \
		chromium --version; }
	@# The README's tour is run as a newcomer runs it (cmd/nearcast TestREADMETour).
	@command -v curl >/dev/null 2>&1 || { \
		echo "curl is missing: installing it with apt-get"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends curl ca-certificates >/dev/null && \
		curl --version | head -1; }
	@# docs/webhooks.md's Python snippet is run as a receiver would run it (engine/webhook TestDocsVerifyPython).
	@command -v python3 >/dev/null 2>&1 || { \
		echo "python3 is missing: installing it with apt-get"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends python3 >/dev/null && \
		python3 --version; }

redis-dep:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "redis-server is missing: installing it with apt-get"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends redis-server >/dev/null && \
		redis-server --version; }

vet:
	$(GO) vet ./...

## lint-api: lints the contract, api/openapi.yaml, with Redocly CLI at the
## version pinned here (npx fetches it from the npm registry on first use);
## redocly.yaml takes the recommended rules with every warning an error.
REDOCLY := @redocly/cli@2.77.0
lint-api:
	npx --yes $(REDOCLY) lint api/openapi.yaml

## bench: the load bench, short (under two minutes): 20,000 stores, 1,000
## rules, 200,000 customers, 10 s a phase; the report goes to bench-out/.
bench: build build-bench test-deps
	./$(BENCH) --customers 200000 --duration 10s --out bench-out

## bench-full: the load bench behind the README's figures: 1,000,000
## customers, 20 s a phase (about three minutes).
bench-full: build build-bench test-deps
	./$(BENCH) --out bench-out

## bench-go: the Go benchmarks, briefly.
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./...

clean:
	rm -rf bin
