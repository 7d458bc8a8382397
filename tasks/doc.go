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
// Ordered lanes (lane.go): a payload's ordering_key puts the message in the lane of (queue, key);
// the Enqueuer takes its place in Redis, in input order for a batch, before it enqueues the task.
// The lane's Redis layout and scripts live here so producers and workers share them.
//
// This package imports asynq, go-redis (which asynq itself depends on, for the lanes) and the
// standard library only, so producers pull in little.
package tasks
