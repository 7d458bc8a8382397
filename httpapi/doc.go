// Package httpapi is the HTTP API of `proxyq serve`: a plain, authenticated way for services
// in any language to enqueue Proxy messages, read their status and cancel them. It owns the
// HTTP surface only; payload rules, enqueueing, the status view and cancellation are the
// tasks package's, so every producer path judges a message by the same code.
//
// # Routes
//
//	POST   /v1/message-interactions        enqueue one message        202 | 200 replay | 409 key reuse
//	POST   /v1/message-interactions:batch  enqueue up to MaxBatch     200 with per-message results
//	POST   /v1/conversation-messages       enqueue one Conversations message  202 | 200 replay | 409 key reuse
//	GET    /v1/message-interactions/{id}   tasks.Status (= `proxyq status --json`), either API
//	DELETE /v1/message-interactions/{id}   cancel if not yet sent     200 | 404 | 409
//	GET    /v1/openapi.json                the OpenAPI 3.1 description (openapi.json, embedded)
//	GET    /healthz, /readyz               probes, open without a token
//	POST   /v1/twilio/proxy/callbacks      Twilio's status callbacks, routed to package delivery
//	                                       (no bearer token: X-Twilio-Signature; 404 when off)
//	POST   /v1/twilio/conversations/receipts  Conversations' onDeliveryUpdated webhooks, the same way
//
// The wiring in cmd is: LoadTokens, New, optionally Mount (dashboard, metrics), NewHTTPServer,
// ListenAndServe; on SIGTERM Drain then http.Server.Shutdown (see Server.Drain).
//
// # Guarantees
//
//   - No token, no access: New refuses a Config without bearer tokens, and every route but
//     the two probes (mounted handlers included) answers 401 without a configured token. The
//     presented token is compared in constant time with every configured token (SHA-256
//     digests, no early exit), so several can be live during a rotation.
//   - Nothing invalid is enqueued. A request body is held to Config.MaxBodyBytes (413),
//     must be application/json (415) and one JSON object (400); the message keys are those of
//     tasks.Payload plus "send_at" and "queue" (and "idempotency_key" in a batch), anything
//     else is refused, and every broken rule comes back at once as a 422 problem with
//     field-level errors. A "queue" must be one of Config.Queues, so no message lands on a
//     queue no worker reads.
//   - An Idempotency-Key never yields a second message. The key becomes the asynq task ID.
//     A repeat with the same key and the same message answers 200 with the existing message's
//     status (header Idempotent-Replayed: true); the same key with a different message
//     answers 409 naming the fields that differ. "The same message" is defined on
//     sameMessage: equal SIDs, body (after JSON decoding), media_url list (same order),
//     send_before instant and queue, and a still-pending schedule at the same second.
//     Without a key every POST enqueues a new message with a generated ID, so a client that
//     retries a POST without a key can send a message twice.
//   - The duplicate window is the tasks package's: as long as asynq keeps the task (waiting,
//     running, then its retention, 72h by default, or while archived). DELETE removes the task
//     and with it the key: a later POST with that key creates a new message.
//   - Errors are RFC 9457 problem documents (application/problem+json) with a stable "type"
//     per kind (the Problem* constants); Redis failures are 503 with Retry-After, and their
//     details are logged, not returned. Message bodies, media URLs and tokens are never
//     logged.
//
// # Idempotency across queues and replicas
//
// The tasks.Enqueuer reserves every key in Redis (proxyq:{idem:<key>}) before enqueuing, so
// a key names one message whatever the queue and whichever replica serves the request: of
// two requests racing one key onto two queues exactly one creates the message (see the
// tasks package). On top of that a keyed POST looks the key up in every queue, under a
// per-key lock held in this process, to compare the messages and answer 200 or 409.
//
// # Batch semantics
//
// A batch is all-or-nothing up to the enqueue: it is decoded and validated whole (422 listing
// every broken rule as "messages[i].field"; a key repeated with a different message, by
// tasks.Differences, is such a rule and names both entries), and every key is checked
// against existing messages (409 listing every entry whose key is held by a different
// message); in those cases nothing is enqueued. Then the new messages are enqueued together
// (tasks.Enqueuer.EnqueueBatch) and the answer is 200 with one result per message in request
// order: status 202 (enqueued), 200 (already there, or a repeat of an earlier entry's key
// with the same message: duplicate true, the same id) or, only if another request took a key
// in between, 409 with a problem. A Redis failure part-way is a 503; retrying the batch is
// then safe for the messages that carry a key.
//
// # Cancellation
//
// DELETE asks the SendGuard first (the worker's send ledger: a send may be in flight), then
// tasks.Cancel, which deletes only pending, scheduled and retry tasks whose last attempt did
// not end "unknown". Anything else is 409 with the message's state.
package httpapi
