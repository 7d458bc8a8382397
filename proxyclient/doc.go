// Package proxyclient is a small client for the Twilio Proxy v1 API, covering the one
// resource proxyq needs: Message Interactions (create, fetch, list) under
// /v1/Services/{KS}/Sessions/{KC}/Participants/{KP}/MessageInteractions. It also reads
// the Message behind an interaction from Twilio's Messaging REST API (FetchMessage:
// GET /2010-04-01/Accounts/{AC}/Messages/{SM}.json), for its delivery status and
// error_code, which Proxy's status callbacks do not carry. The Messaging host is
// api.twilio.com (api.{edge}.{region}.twilio.com with Edge/Region), BaseURL when only
// that is overridden (the sandbox serves both), or Config.MessagingBaseURL.
//
// It knows nothing of queues. Its job is to make one HTTP request per call and to say,
// as precisely as HTTP allows, what happened to it, so that the worker can decide
// between "sent", "retry later", "give up" and "may have been sent: reconcile".
//
// # Guarantees
//
//   - Every method takes a context first and bounds each HTTP request with
//     Config.HTTPTimeout on top of it.
//   - The client never retries. Proxy POSTs have no idempotency key, so a retry is a
//     policy decision that belongs to the caller (see Classify).
//   - Redirects are never followed: a 3xx answer becomes a permanent *Error. Following
//     one would resend a POST or forward credentials somewhere we did not configure.
//   - Credentials are only sent to the configured host: a list's next_page_url that
//     points at another scheme or host is refused with ErrUnsafeNextPage.
//   - SIDs are validated (two-letter prefix and 32 hex digits) before any URL is built,
//     and path segments are escaped anyway.
//   - Response bodies are read through a size limit (64 KiB for errors, 10 MiB for
//     successes), so a misbehaving server cannot make the worker buffer without bound.
//   - Error strings carry the HTTP method and the URL path only: never the host's
//     userinfo, the query string, the Authorization header or a request/response body
//     other than a short sanitised snippet of a non-JSON error page.
//   - Any 2xx is success: Twilio's spec has said 200 and, for a while, 201 for create.
//   - Every documented MessageInteraction field is decoded; JSON null becomes "" (or the
//     zero time for dates).
//
// # Errors
//
// Methods return one of:
//
//   - *ValidationError: an argument (or Config field) broke a rule; nothing was sent.
//   - *Error: the server answered with a non-2xx status. Carries the HTTP status, Twilio's
//     error code, message and more_info, the Twilio-Request-Id header and Retry-After.
//   - *TransportError: no HTTP response was received. RequestWritten says whether the
//     request had been completely written to the connection (from net/http/httptrace).
//   - *DecodeError: a 2xx arrived but its body could not be read or decoded.
//   - ErrUnsafeNextPage (wrapped): a list page pointed to another host.
//
// # Classification
//
// Classify maps any error to one of four classes. Ambiguous means "the interaction may
// have been created and an SMS may have reached a real person": the caller must
// reconcile (list the participant's interactions) before sending again.
//
//	error                                                   class
//	------------------------------------------------------  ---------
//	nil                                                     None
//	*Error 429 (Twilio: not processed, always safe)         Retryable
//	*Error 503                                              Retryable
//	*Error 500, 502, 504                                    Ambiguous
//	*Error other 5xx (505…)                                 Ambiguous
//	*Error 501, other 4xx, 3xx (redirect not followed)      Permanent
//	*TransportError, request not written (refused, DNS,     Retryable
//	  dial failure, ctx canceled/deadline before write)
//	*TransportError, not written, TLS certificate or        Permanent
//	  handshake failure, invalid URL, unsupported scheme
//	*TransportError, request written (timeout, reset,       Ambiguous
//	  EOF after write, ctx canceled after write)
//	*DecodeError (2xx with unreadable body: it was created) Ambiguous
//	*ValidationError, ErrUnsafeNextPage                     Permanent
//	bare context.Canceled / context.DeadlineExceeded        Retryable
//	anything else                                           Ambiguous
//
// Unknown errors are Ambiguous on purpose: treating an unknown failure as "may have
// been sent" costs a reconciliation; treating it as "not sent" can cost a duplicate SMS.
//
// Classify is for the create, where "may have been processed" matters. Reads (fetch,
// list, FetchMessage) have no side effect: ClassifyRead maps the same errors to
// Retryable or Permanent only (what Classify calls Ambiguous is Retryable; a 2xx body that
// is not the expected JSON is Permanent, one whose read was cut is Retryable).
//
// RetryAfter returns the server's Retry-After (delta-seconds or HTTP-date, capped by
// Config.MaxRetryAfter) carried by an *Error; Twilio does not document it for Proxy, so
// callers should fall back to their own backoff when it is absent.
package proxyclient
