# The README's two fresh-machine commands are `go run ./cmd/proxyq dev --demo 50` and `make test`.

.PHONY: test test-deps test-go fuzz validate-deploy chaos chaos-lanes bench build test-redis-ha prism-conversations console-screenshots

# Everything CI runs: vet, the race-enabled suite (integration tests start their own
# redis-server), bounded fuzz runs of the HTTP request decoder, the payload key check, and
# the payload, outcome-record and interaction-key JSON against encoding/json, and the
# deploy-file validation.
test: test-deps test-go fuzz validate-deploy

# The programs the tests run (redis-server; redis-sentinel and chromium for the tests that
# skip without them): installed with apt-get when missing, as root or with password-less sudo,
# else it stops with the one command to run. See the script's header.
test-deps:
	./scripts/test-deps.sh

test-go: test-deps
	go vet ./...
	go test -race -count=1 -timeout 15m ./...

# Budgets are counts of runs (about 10 s each here), not durations: with a duration, Go 1.26's
# fuzz coordinator can fail a clean run with "context deadline exceeded" as the time runs out
# (golang/go#75804, fixed in Go 1.27).
fuzz:
	go test -run='^$$' -fuzz=FuzzDecodeRequest -fuzztime=40000x ./httpapi/
	go test -run='^$$' -fuzz=FuzzCheckKeys -fuzztime=80000x ./tasks/
	go test -run='^$$' -fuzz=FuzzDecodeAsEncodingJSON -fuzztime=60000x ./tasks/
	go test -run='^$$' -fuzz=FuzzValueAsEncodingJSON -fuzztime=100000x ./internal/interaction/

validate-deploy:
	cd deploy/validate && go vet ./... && go test -count=1 ./...

# Long runs, not part of `make test`.
chaos:
	go test -tags chaos -count=1 -v -timeout 45m -run '^TestChaos(Conversations)?$$' ./chaos/

# Ordered lanes under kills, ambiguous faults, 429s and a Redis crash: order checked per lane.
chaos-lanes:
	go test -tags chaos -count=1 -v -timeout 30m -run '^TestChaosLanes$$' ./chaos/

# Redis Cluster and Sentinel, for real: local clusters (6 redis-server, 3 masters + replicas) and
# Sentinel set-ups (master, replica, 3 redis-sentinel) on loopback ports; slot safety of every
# script, the end-to-end path, and chaos runs with failovers and killed masters. Needs
# redis-server, redis-cli and redis-sentinel on PATH. A few minutes.
test-redis-ha: test-deps
	go test -tags cluster -count=1 -p 1 -v -timeout 30m ./internal/redisproc/ ./worker/ ./delivery/ ./console/ ./cmd/proxyq/ ./chaos/ -run 'Harness|Cluster|Sentinel'

# Prism mocking Twilio's published Conversations v1 description accepts every request the
# Conversations client makes (needs node; npx fetches @stoplight/prism-cli 5). Not in make test.
prism-conversations:
	./scripts/prism-conversations.sh

bench:
	go run ./cmd/proxyq bench

build:
	CGO_ENABLED=0 go build -trimpath -o proxyq ./cmd/proxyq

# A PNG of each console page (home, a participant's list, a message's story, the archived list,
# the bulk retry's confirmation, the audit log, a message on a phone-size screen) into docs/img/,
# taken by the console's browser test in headless Chromium.
console-screenshots:
	mkdir -p docs/img
	PROXYQ_CONSOLE_SCREENSHOTS=$(CURDIR)/docs/img go test -count=1 -run '^TestSupportAgentFlow$$' ./console/
