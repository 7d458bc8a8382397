// Package tasks is proxyq's producer contract: what an application service imports to hand a
// message to the proxyq workers, and what anyone reads to learn what became of it.
//
// It owns, and documents for non-Go producers too:
//   - the task type name, [TypeSendInteraction];
//   - the payload ([Payload]): its JSON keys, its validation ([Payload.Validate], [Decode]) shared by
//     every producer path and re-checked by the worker;
//   - the outcome record ([Outcome]) the worker writes as the asynq task result;
//   - an [Enqueuer] over asynq's client, with idempotency keys that become the asynq task ID
//     and are reserved across queues;
//   - [Lookup] and [Cancel], the one view of a message's state that the CLI and the HTTP API share.
//
// Guarantees: nothing that fails validation is ever enqueued; a batch is validated whole before
// any of it is enqueued. An idempotency key names one message whatever the queue: enqueuing
// with a key already in use, on any queue, returns the existing task's ID and queue with
// Duplicate set instead of creating a second message. asynq makes task IDs unique per queue
// only, so the Enqueuer reserves each key in Redis while it enqueues (proxyq:{idem:<key>}, one
// hash slot, Cluster-safe) and looks for the key's task on the other queues, and two producers
// racing one key onto two queues make one message; a producer
// that crashes between the reservation and the enqueue blocks the key for ReservationGrace at
// most (reserve.go has the protocol and its one remaining window). Within one batch, a key
// repeated with the same message ([Differences], the one "same message" rule of every
// producer path) is one message, the later occurrences reported as duplicates; repeated with a
// different message it is an error ([KeyReuseError]) and nothing is enqueued. The duplicate
// window lasts as long as asynq keeps the task: while it waits or runs, then for its retention
// period after it completes (default [DefaultRetention]), or while it stays in the archive
// (across queues: until the reservation expires, a day after the retention). After that the
// key may be used again.
//
// Ordered lanes (lane.go): a payload's ordering_key puts the message in the lane of (queue, key);
// the Enqueuer takes its place in Redis, in input order for a batch, before it enqueues the task.
// The lane's Redis layout and scripts live here so producers and workers share them.
//
// Tracing: Enqueue and EnqueueBatch start a PRODUCER span per message (proxyq.enqueue) as a
// child of the span in ctx, and put its W3C trace context in the asynq task's headers
// (traceparent, tracestate), where the worker picks it up: a message's attempts join the trace
// of the code that enqueued it. Spans go to OpenTelemetry's global tracer provider (a no-op
// unless the process installs one); the trace context of ctx is carried even then.
//
// This package imports asynq, go-redis (which asynq is built on), the OpenTelemetry API (not its
// SDK) and the standard library only, so producers pull in little.
package tasks
