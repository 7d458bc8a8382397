// Package console is proxyq's own operator web UI: find any message and read its whole story.
//
// Pages (server-rendered html/template, static files embedded; no JavaScript toolchain):
//
//	GET  /                 search box, top errors (last hour and day), lists by state and filters
//	GET  /search?q=…       a message ID or idempotency key, KI…, SM… → the message; KP…, KC… → its list
//	GET  /m/{id}           one message's story in order: enqueued, attempts, waits, reconciliation,
//	                       created, status callbacks, delivery error, status webhooks
//	GET  /audit            the audit log of actions
//	POST /action/retry | cancel | reveal, POST /bulk-retry (preview, then confirm)
//
// It reads through tasks (asynq's Inspector, the lookups and error counts), worker (the attempt
// log, the Message SID index) and delivery (the interaction index, webhook task IDs), never
// through asynqmon. No request scans the keyspace: a list is one Inspector page, a search one
// pipeline of a few keys.
//
// Authentication is the host's (package dashboard wraps the console with it and tells it who
// the caller is with WithIdentity). Guarantees: in read-only mode no action is offered and
// every action is refused with 403; every action needs a CSRF token bound to the caller (on
// top of the host's cross-origin protection) and is written to the audit log (who, what, when,
// how many); message bodies and media URLs are never rendered unless a caller allowed to
// reveal them asks for one message, which is audited too; responses carry a strict
// Content-Security-Policy (no inline script or style).
package console
