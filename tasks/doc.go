// Package tasks is proxyq's producer contract: what an application service imports to hand a
// message to the proxyq workers, and what anyone reads to learn what became of it.
//
// It owns, and documents for non-Go producers too:
//   - the task type name, [TypeSendInteraction];
//   - the payload ([Payload]): its JSON keys, its validation ([Payload.Validate], [Decode]) shared by
//     every producer path and re-checked by the worker;
//   - the outcome record ([Outcome]) the worker writes as the asynq task result;
//   - an [Enqueuer] over asynq's client, with idempotency keys that become the asynq task ID;
//   - [Lookup] and [Cancel], the one view of a message's state that the CLI and the HTTP API share.
//
// Guarantees: nothing that fails validation is ever enqueued; a batch is validated whole before
// any of it is enqueued; enqueuing with an idempotency key that is already in use on the same
// queue returns the existing task ID with Duplicate set instead of creating a second message
// (asynq task IDs are unique per queue, not across queues). The duplicate window
// lasts as long as asynq keeps the task: while it waits or runs, then for its retention period
// after it completes (default [DefaultRetention]), or while it stays in the archive. After that the
// key may be used again.
//
// Tracing: Enqueue and EnqueueBatch start a PRODUCER span per message (proxyq.enqueue) as a
// child of the span in ctx, and put its W3C trace context in the asynq task's headers
// (traceparent, tracestate), where the worker picks it up: a message's attempts join the trace
// of the code that enqueued it. Spans go to OpenTelemetry's global tracer provider (a no-op
// unless the process installs one); the trace context of ctx is carried even then.
//
// This package imports asynq, the OpenTelemetry API (not its SDK) and the standard library only,
// so producers pull in little.
package tasks
