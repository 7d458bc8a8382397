// Package worker is proxyq's send policy: the asynq handler for proxy:send_interaction and
// conversations:send_message, and everything that decides, for one message, whether to POST it
// to Twilio (Proxy or Conversations), when to try again, and what to record. The policy is
// written once; the few operations that differ per API (create, find after an unseen answer,
// classify, limit and claim scopes) are each API's adapter (sender.go, sender_proxy.go,
// sender_conversations.go). Conversations reconciliation is exact: it finds the message by
// proxyq's stamp in its Attributes, so it needs no claims.
//
// One message's trip through a run (handler.go):
//
//  1. decode and validate the payload (tasks.Decode); malformed → archived, the worker goes on;
//     a message with an ordering key then asks its lane (lane.go): not its turn → back to the
//     retry set without a failed attempt, woken when the message ahead ends;
//  2. wait for the message's Service's budget (Twilio's 30/s per endpoint over 5 s, on by
//     default: servicelimits.go, which explains the sliding-window algorithm), then the
//     account's limits, both shared by every process through Redis (limiter.go); the message's
//     account (payload account_sid) chooses the client and the limits (accounts.go);
//  3. take the message in the send ledger (ledger.go) — in the common case the same script
//     begins the send; otherwise: already sent → nothing sent, delivery tracking set up again
//     (below); another run holds it →
//     wait; an earlier request's outcome unknown → reconcile (reconcile.go); deadline passed →
//     archived as expired;
//  4. POST the MessageInteraction on a context detached from asynq's, bounded by HTTPTimeout;
//     just before it, a run that was held up since its limits (reconciliation, replica wait)
//     takes its Service slot again and extends its account slot's lease, or goes back to the
//     queue unsent: a create always leaves inside its Service window and under its account cap;
//  5. classify the answer (proxyclient.Classify) and record the interaction's claim, the ledger
//     and the outcome record (asynq's task result) in one script; tell asynq done, retry after d,
//     or archive (retry.go).
//     A recorded send is then handed to the delivery hook (delivery_hook.go), which indexes the
//     interaction for Twilio's status callbacks and schedules its poll. Every run that finds
//     the ledger sent calls the hook again (it is idempotent), and a run whose hook failed asks
//     for a retry that is not a failure: a task completes only once its send is tracked, even
//     after a lost MarkSent reply or a worker killed in between.
//
// Guarantees. A message is created at Twilio at most once per accepted task: a POST starts only
// under a fenced ledger lease that outlasts it, and after any answer we did not see (timeout,
// reset, 500/502/504, a worker killed mid-request) the next run lists the participant's
// interactions and adopts the match instead of sending again. A message is never lost: every
// ending is the outcome record of a completed task, or an archived task whose last error says
// why (permanent Twilio error, expired, outcome unknown past the reconciliation bound, out of
// retries). Waits that are nobody's fault (Twilio's 429, our own limits, another run holding the
// message) do not count against MaxRetry but are bounded by the message's deadline. These rest on
// Redis keeping what it acknowledged: run it with appendonly yes and maxmemory-policy noeviction.
//
// Where the state lives. The ledger is one field of asynq's own task hash and the outcome is
// asynq's result field of it, so both live exactly as long as asynq can deliver the task again
// (waiting, retrying, archived, completed for its retention) and go when asynq deletes it. The
// only key of ours per message outside it is the claim, one key per interaction (kept
// LedgerTTL, or the delivery index's life when longer: the key is delivery's index too), which
// reconciliation reads to never adopt another message's interaction; a message whose last
// request started beyond that horizon is archived as unknown rather than reconciled (the
// console's lookups are the producer's, package tasks). On the common path a fresh message
// costs one pipelined round trip to take it and begin its send (HSETNX, HEXISTS) and one script
// to claim and record it (EVALSHA, HMGET, SET NX GET of the claim, HSET of the record, HSET of
// the console's Message SID index), beyond asynq's own dequeue and completion (on a Redis
// Cluster the claim is a script of its own): 7 Redis commands, against asynq's 15
// (docs/performance.md, Redis cost per message).
//
// Tracing (tracing.go): each run is a proxyq.attempt span in the trace the task's headers carry
// (the producer's), with spans for the limiter wait, the ledger scripts, reconciliation and the
// requests to Twilio. Spans hold SIDs, codes and counts, never bodies, media URLs, credentials
// or Twilio's error messages.
//
// Why not asynq alone: asynq delivers at least once (after lease expiry, a task timeout or a
// shutdown that outlasts its timeout, the same task runs again, possibly while the first run is
// still going), and Twilio Proxy has no idempotency key; the ledger is what turns those into
// exactly one SMS.
package worker
