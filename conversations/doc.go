// Package conversations is a small client for the Twilio Conversations v1 API, covering what
// proxyq needs to send one message and learn what became of it: create a Conversation Message
// (POST /v1/Conversations/{CH}/Messages, or /v1/Services/{IS}/Conversations/{CH}/Messages for
// a non-default Conversation Service), fetch one, list a conversation's messages
// (Order=desc&PageSize=N, paged with Twilio's next_page_url / PageToken, bounded) and list a
// message's delivery receipts (…/Messages/{IM}/Receipts). It sits beside proxyclient and is
// built like it; it knows nothing of queues.
//
// # Errors: proxyclient's types, on purpose
//
// Every method returns the error types of proxyclient — *proxyclient.ValidationError,
// *proxyclient.Error (non-2xx, with Twilio's code, more_info, Twilio-Request-Id and a capped
// Retry-After), *proxyclient.TransportError (RequestWritten says whether the server may have
// it), *proxyclient.DecodeError, and proxyclient.ErrUnsafeNextPage — rather than a copy or a
// new shared package. Twilio's error document and the HTTP facts are the same on both APIs,
// so one set of types lets the worker's one send policy read both; a shared leaf package would
// have meant rewriting proxyclient while other work edits its callers. The cost is cosmetic:
// error strings begin "proxyclient:"; the path in them (/v1/Conversations/…) names the API.
//
// # Guarantees
//
//   - Every method takes a context and bounds each HTTP request with Config.HTTPTimeout.
//   - The client never retries: a Conversations create has no idempotency key, so a retry is
//     the caller's decision (Classify), made safe by the stamp (below).
//   - Redirects are never followed; credentials only go to the configured host (a
//     next_page_url elsewhere is refused).
//   - SIDs are checked (CH, IS, IM, ME, HX + 32 hex digits) before any URL is built.
//   - Bodies are read through size limits; error strings carry method and path only.
//   - Message bodies are never decoded: proxyq must not hold text it could leak.
//
// # Classification
//
// Classify (for the create) and ClassifyRead (for reads) consult one table of Conversations
// codes first — Codes, each with its meaning, handling and the dictionary page it was read
// from — for answers below 500, then proxyclient.Classify's rules by HTTP status, transport
// and decode errors (429 and 503 retryable, other 5xx and written-then-failed requests
// ambiguous, other 4xx permanent). Explain and RetryAfter mirror proxyclient's.
//
//	code   meaning                                        handling        source
//	20429  too many concurrent requests (account)         retry later     docs/api/errors/20429
//	20503  service unavailable                            transient       docs/api/errors/20503
//	20003  authentication failure                         permanent       proxyclient's table (not re-read)
//	20404  conversation/Service not found                 permanent       docs/api/errors/20404
//	50350  conversation not found                         permanent       docs/api/errors/50350
//	50377  conversation closed (final)                    permanent       docs/api/errors/50377
//	50416  participant + proxy address pair in use        configuration   docs/api/errors/50416
//
// Looked up and not found in Twilio's dictionary: 50300, 50431, 50433, 50507, and any
// conversation-level rate-limit code. They have no rule, so their HTTP status decides. A 429
// with an unknown code is explained as the account's limit (the conservative scope).
//
// # The stamp: exact reconciliation
//
// StampAttributes merges the producer's Attributes (a JSON object) with proxyq's stamp,
// {"proxyq":{"id":"<task id>"}}; the stamp always wins. A Message keeps its Attributes, so
// after an ambiguous create FindStamped lists the conversation newest first and returns the
// message carrying that id — the match is on the id alone, so two messages with the same body
// are never confused. FindResult.Complete tells "searched everything that could be ours and it
// is not there" (the conversation's start or a message older than FindOptions.NotBefore was
// reached) from "ran out of pages". Caveat: the stop at NotBefore trusts date_created, which a
// creator may set (history imports); a back-dated message created after ours ends the search
// early, so callers should not pass NotBefore for conversations that receive imports.
package conversations
