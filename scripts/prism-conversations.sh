#!/usr/bin/env bash
# Runs Prism (@stoplight/prism-cli 5) as a mock of Twilio's Conversations v1 description on a
# loopback port and runs the prism-tagged Go test, which makes every request proxyq's
# Conversations client makes and fails on any Prism refuses (422). Needs node/npx; npx
# fetches Prism on first use. Prism is stopped on exit, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
port="${PRISM_PORT:-4011}"
log="$(mktemp)"
npx --yes @stoplight/prism-cli@5 mock conversations/testdata/twilio_conversations_v1.yaml -h 127.0.0.1 -p "$port" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 180); do
	if curl -s -o /dev/null "http://127.0.0.1:$port/"; then break; fi
	if ! kill -0 "$pid" 2>/dev/null; then cat "$log"; echo "prism exited" >&2; exit 1; fi
	sleep 1
done
curl -s -o /dev/null "http://127.0.0.1:$port/" || { cat "$log"; echo "prism did not start" >&2; exit 1; }
PRISM_URL="http://127.0.0.1:$port" go test -tags prism -count=1 -v -run '^TestPrismAcceptsEveryRequest$' ./conversations/
