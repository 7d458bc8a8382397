// Package jsonl reads messages for proxyq as JSON lines: one JSON object per line, the payload's
// keys (package tasks) plus the enqueue options idempotency_key, send_at (RFC 3339) and queue.
// It is the input format of `proxyq enqueue --file`, and usable by any producer that takes
// files or streams.
//
// Guarantees: every line is read and checked before anything is enqueued, and every problem of
// every line is reported with its line number, so a bad file is fixed in one pass and is never
// half enqueued. A line longer than tasks.MaxPayloadBytes is reported without being held in
// memory.
package jsonl
