// Package proxytest is an in-process fake of Twilio Proxy v1's message-interaction API, with
// fault injection. This project's tests, users' tests, `proxyq sandbox` and `proxyq dev` run
// against it, so it is part of the product: it follows Twilio's published API description,
// and where Twilio leaves something open it picks the answer most likely to break a client
// that guesses.
//
// # What it fakes faithfully
//
//   - Routes, relative to where the Fake is mounted:
//     POST and GET /v1/Services/{KS}/Sessions/{KC}/Participants/{KP}/MessageInteractions,
//     GET …/MessageInteractions/{KI}, GET /v1/Services/{KS}/Sessions/{KC}/Interactions and
//     GET …/Interactions/{KI}. A malformed SID (KS/KC/KP/KI + 32 hex digits) or an unknown
//     path answers 404 with code 20404; a wrong method 405 with code 20004.
//   - HTTP Basic auth with an Account SID (AC…) or API key (SK…) and a secret; failures
//     answer 401 with code 20003. The Basic-auth user is the account key: concurrency and
//     records are per user, and reads only see that account's interactions.
//   - Create takes the form fields Body and repeated MediaUrl (at least one, else 400 code
//     21602) and answers 201 (or 200, Config.CreateStatus: Twilio has documented both) with
//     the MessageInteraction resource: "data" is a JSON string holding {"body":…} plus
//     "media_urls" when media was sent, so clients must decode it twice; inbound_* fields are
//     null; outbound_resource_status is "queued" (it moves on only with callbacks, below); dates
//     are UTC with second precision ("2015-07-30T20:00:00Z"); url and outbound_resource_url are
//     absolute, built from the request's Host and the mount prefix, so outbound_resource_url
//     points at the Fake's own Messaging route.
//   - The Message behind an interaction, from Twilio's Messaging REST API:
//     GET /2010-04-01/Accounts/{AC}/Messages/{SM}.json answers Twilio's Message JSON with the
//     current status, error_code (null when none) and error_message, RFC 1123 dates
//     ("Thu, 30 Jul 2015 20:00:00 +0000") and date_sent once sent. Same authentication, latency
//     and concurrency limit as the other reads; another account's message is 404 code 20404.
//     FailMessageFetches scripts 429/500/502/503/504 answers for it; CallbackStats counts the
//     fetches (a poller's load).
//   - Lists take PageSize (1..1000, default 50), Page and PageToken, and answer Twilio's
//     envelope {"interactions":[…],"meta":{…}} with absolute first/next/previous page URLs;
//     next_page_url is null on the last page. Twilio documents no order, and the Fake never
//     promises newest first: Config.ListOrder is oldest first by default, or newest first, or
//     a seeded shuffle.
//   - Every answer carries a Twilio-Request-Id header (RQ…); error bodies are
//     {"code","message","more_info","status"}.
//   - Twilio's per-account concurrency limit (Config.MaxConcurrentPerAccount): a request
//     beyond it is answered 429 code 20429 at once, and was not processed.
//   - Participants and sessions exist whenever their SIDs are well formed, except those
//     marked with MarkParticipantUnknown (404 20404) or CloseSession (create: 400 80607).
//
// # Faults
//
// Create requests that would succeed can be answered with a fault instead: first from a
// scripted FIFO queue (Inject), then at random rates (SetFaultRates) drawn from an RNG seeded
// by Config.Seed. The kinds are the failures a sender must survive: 429 with and without
// Retry-After, 503 and 500 before anything was created, and 500, 502 (HTML from a "load
// balancer"), 504, a TCP reset and a hang after the interaction was created, where a blind
// retry would send a second SMS. Config.Latency / SetLatency delays every request. Latency and
// hangs end when the client goes away or the Fake is closed.
//
// # Delivery and status callbacks
//
// Config.Callbacks (CallbackConfig) simulates what happens to each SMS after a create and
// tells a Proxy Service's callback_url about it, as Twilio does. With a URL (set in the Config
// or later with SetCallbackURL, e.g. once the receiver under test has started) every created
// interaction's message moves queued → sent → delivered, Delay apart (default 250ms); the
// fractions Undelivered and Failed end it queued → sent → undelivered or queued → failed with
// an error code from ErrorCodes (30003, 30005, 30006, 30007 by default); ScriptDelivery fixes
// the outcome of the next creates instead. Fetch, list and the Messaging route show the current
// status; MessageStatus returns it (with its history) by KI or SM SID. With Advance and no URL
// the statuses move but nothing is POSTed, for clients that poll. Without either, every
// message stays "queued", as before callbacks existed.
//
// Each status change is POSTed to the URL as application/x-www-form-urlencoded with exactly
// the parameters Twilio's Proxy sends (interactionSid, interactionSessionSid,
// interactionServiceSid, interactionAccountSid, interactionType=message, interactionData (the
// JSON string {"body":…}), interactionDateCreated, interactionDateUpdated, the five inbound*
// parameters (empty), outboundParticipantSid, outboundResourceSid, outboundResourceStatus,
// outboundResourceType=Message, outboundResourceUrl), with an I-Twilio-Idempotency-Token and
// X-Twilio-Signature: base64(HMAC-SHA1(Auth Token, URL + each parameter's name and value,
// names sorted)), computed by CallbackSignature over SigningURL when set (a public URL behind
// a proxy) else URL. The Auth Token is the account's: CallbackConfig.AuthTokens[AC…], else
// AuthToken, else Config.Credentials[AC…], else the secret an AC user authenticated the
// create with. An API-key create whose account has none gets no callbacks (counted Skipped).
//
// Knobs for what receivers must survive: Duplicates (a callback POSTed twice, same token and
// signature), OutOfOrder (a message's callbacks held back to the final status, then sent
// newest first), BeforeAnswer (the first callback POSTed, and answered, before the create's
// own answer is written: the sender does not know the interaction's SID yet). Callbacks of an
// interaction whose create then got a fault (500 after create, reset, hang) are sent too, as
// Twilio would.
//
// Delivery is asynchronous and bounded: one scheduler and Workers goroutines (default 4),
// started with the first callback; at most MaxPending callbacks planned and unfinished
// (beyond: dropped and counted); each POST bounded by Timeout and tried up to Attempts times
// on a non-2xx answer or none, with doubling backoff; redirects are not followed; one callback
// of a message in flight at a time, so the planned order is the order sent. Close cancels the
// POSTs in progress and the callbacks not yet sent, and waits for those goroutines. Callbacks
// lists every callback with its state, attempts, last answer, signature and parameters;
// CallbackStats counts them (answers by HTTP status); WaitCallbacks blocks until none is
// pending. Reset forgets them.
//
// # What it does not do
//
// It sends no SMS; intercept and out-of-session callbacks are not modelled; callbacks carry
// no error code (Twilio's do not either: read the Message); it keeps no services, sessions or
// participants beyond the two marks above; there is no rate limit other than concurrency; the
// body length is not checked (Twilio publishes no limit for Proxy).
// Parameter errors on lists (PageSize out of range, unknown PageToken) answer 400 with code
// 20001; Twilio's exact answer there is not published.
//
// # Using it in a test
//
// NewServer starts the Fake on 127.0.0.1 under the prefix "/twilio" (so code that loses a
// base URL's path fails loudly); point the client at Server.URL (proxyclient.Config.BaseURL)
// and read what happened through Server.Fake:
//
//	srv := proxytest.NewServer(proxytest.Config{MaxConcurrentPerAccount: 10})
//	t.Cleanup(srv.Close)
//	srv.Fake.Inject(proxytest.FaultResetAfterCreate, 1)
//	// … run the code under test against srv.URL …
//	if n := srv.Fake.CreatesForBody("hello"); n != 1 {
//		t.Fatalf("sent %d times, want once", n)
//	}
//
// With callbacks, start the receiver after the Fake and point the Fake at it:
//
//	srv := proxytest.NewServer(proxytest.Config{Callbacks: proxytest.CallbackConfig{
//		Delay: 20 * time.Millisecond, Undelivered: 0.2, Duplicates: 0.1, BeforeAnswer: true,
//		AuthTokens: map[string]string{accountSID: authToken},
//	}})
//	t.Cleanup(srv.Close)
//	// … start the receiver, then:
//	srv.Fake.SetCallbackURL(receiverURL + "/v1/twilio/proxy/callbacks")
//	// … send; then wait and compare:
//	_ = srv.Fake.WaitCallbacks(ctx)
//	st, _ := srv.Fake.MessageStatus(interactionSID) // st.Status, st.ErrorCode, st.History
//
// The Fake is also a plain http.Handler (Mount serves it under a prefix) for programs such as
// `proxyq sandbox`. Outside Twilio's paths it serves three unauthenticated, read-only test
// endpoints: GET {prefix}/_proxytest/interactions (every created interaction, JSON array),
// GET {prefix}/_proxytest/stats (the Stats counters) and GET {prefix}/_proxytest/callbacks
// ({"stats": CallbackStats, "callbacks": [Callback…]}, parameters and so bodies included).
//
// Logging (Config.Logger) is one zap line per request with method, path, status, fault and
// account, and one per callback attempt with interaction SID, status, attempt and answer;
// never bodies, media URLs, secrets, signatures or callback URLs.
package proxytest
