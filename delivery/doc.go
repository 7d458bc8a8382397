// Package delivery owns what becomes of a message after Twilio accepted it: its delivery
// status. httpapi only routes Twilio's status callbacks here, and the worker only calls
// Recorded when it records a send or finds it recorded, and runs this package's tasks and
// sweeper.
//
// The trip (see docs/delivery-status.md):
//
//	Twilio ──signed POST to the Service's callback_url──▶ CallbackHandler (X-Twilio-Signature)
//	       ▼
//	interaction SID → message index ─▶ outcome record: outbound_status, status_history,
//	       ▼                             delivered_at, final, delivery_error_code/delivery_error
//	status webhook task ─▶ the application's URL, Standard Webhooks signature, retried
//
// Guarantees.
//   - A callback is applied only with a valid X-Twilio-Signature (HMAC-SHA1 keyed with the Auth
//     Token of its interactionAccountSid, over the configured public URL with the query kept
//     exactly, default port with and without, every value of a repeated parameter, constant-time
//     compare). Anything else is 403 and changes nothing.
//   - A signed callback changes only an interaction recorded under the account whose Auth Token
//     signed it: with one Auth Token per account (the accounts file), one customer's token
//     cannot set another's statuses. A callback naming another account's interaction is
//     answered 200 (nothing is revealed) and changes nothing (callbacks
//     result="wrong_account"); an early callback keeps its signer and is checked the same way
//     when the send is recorded.
//   - Callbacks of interactions proxyq never creates — voice, or with an inbound resource (a
//     participant's message or call that Proxy relays) — are answered 200 and counted
//     (result="not_ours") without taking room among the early callbacks.
//   - The timeline never moves back: statuses are ranked accepted|scheduled < queued < sending <
//     sent < delivery-unknown < delivered|undelivered|failed; the last three are final and never
//     replaced. A duplicate changes nothing; an older status is added to the history only;
//     statuses we do not know are kept in the history without moving the rank.
//   - Updates are atomic across processes: each is an optimistic transaction on the one key
//     that holds the record, asynq's task hash (read, fold, then a compare-and-set script that
//     writes only if the record is still the one read), so two serve replicas, a poll and a
//     fetch can race on one message and every status lands once. Only the process whose
//     transaction committed a change counts it and announces it.
//   - A callback that arrives before the send is recorded (its POST's answer still on the way, or
//     an ambiguous POST reconciled later) is looked for again after 10, 20 and 40 ms (the worker
//     usually records the send within milliseconds); one still unmatched then is kept for
//     PendingTTL and applied by Recorded, on whichever path records the send; the index check
//     and the append are one script, and so are the index write and the read of the early
//     list, so none slips between them. The list is deleted only once applied. Callbacks
//     still unmatched after PendingTTL are dropped and counted (callbacks
//     result="unknown_interaction").
//   - Recorded is idempotent and says when it failed; the worker calls it on every run that
//     finds the send recorded and completes the task only once it succeeded, so every sent
//     message is indexed and scheduled for its poll (a lost reply, a killed worker or a Redis
//     error only delay it).
//   - Every indexed message without a final status is polled after PollAfter, every PollEvery,
//     bounded per pass, under the account's limits (a pass stops at the first "no room" or 429),
//     until final or MaxAge, after which it says delivery-unknown. Its Redis cost is one ZADD at
//     record and a share of a ZREM when final (messages that turn final within 20 ms leave
//     together; a removal lost with its process is made by the poller, which finds the record
//     final and asks Twilio nothing).
//   - Status webhooks are asynq tasks (retries, backoff, at least once) with a webhook-id stable
//     per (message, status); they never delay the answer to Twilio.
//
// Conversations messages (receipts.go) take the same path from the Conversation Service's
// signed onDeliveryUpdated webhook (ReceiptsHandler), keyed by the message's IM… SID, with the
// account rule (a receipt applies only to a message recorded under the account that signed it)
// and a poll of the message's Receipts.
//
// Logs carry task IDs, SIDs, statuses and error codes: never Auth Tokens, webhook secrets,
// message bodies (interactionData) or the webhook URL's query.
package delivery
