# The README's two fresh-machine commands are `go run ./cmd/proxyq dev --demo 50` and `make test`.

.PHONY: test test-deps test-go fuzz validate-deploy chaos chaos-lanes bench build

# Everything CI runs: vet, the race-enabled suite (integration tests start their own
# redis-server), a bounded fuzz run of the HTTP request decoder, and the deploy-file validation.
test: test-deps test-go fuzz validate-deploy

# The programs the tests run (redis-server; redis-sentinel and chromium for the tests that
# skip without them): installed with apt-get when missing, as root or with password-less sudo,
# else it stops with the one command to run. See the script's header.
test-deps:
	./scripts/test-deps.sh

test-go: test-deps
	go vet ./...
	go test -race -count=1 -timeout 15m ./...

fuzz:
	go test -run='^$$' -fuzz=FuzzDecodeRequest -fuzztime=10s ./httpapi/

validate-deploy:
	cd deploy/validate && go vet ./... && go test -count=1 ./...

# Long runs, not part of `make test`.
chaos:
	go test -tags chaos -count=1 -v -timeout 30m -run '^TestChaos$$' ./chaos/

# Ordered lanes under kills, ambiguous faults, 429s and a Redis crash: order checked per lane.
chaos-lanes:
	go test -tags chaos -count=1 -v -timeout 30m -run '^TestChaosLanes$$' ./chaos/

bench:
	go run ./cmd/proxyq bench

build:
	CGO_ENABLED=0 go build -trimpath -o proxyq ./cmd/proxyq
