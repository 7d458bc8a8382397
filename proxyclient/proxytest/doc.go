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
//     null; outbound_resource_status is "queued"; dates are UTC with second precision
//     ("2015-07-30T20:00:00Z"); url is absolute, built from the request's Host and the mount
//     prefix.
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
// # What it does not do
//
// It sends no SMS and calls no webhooks (callback_url, intercept and out-of-session callbacks
// are not modelled); it keeps no services, sessions or participants beyond the two marks
// above; outbound_resource_status never advances past "queued"; outbound_resource_url points
// at Twilio's Messages resource, which the Fake does not serve; there is no rate limit other
// than concurrency; the body length is not checked (Twilio publishes no limit for Proxy).
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
// The Fake is also a plain http.Handler (Mount serves it under a prefix) for programs such as
// `proxyq sandbox`. Outside Twilio's paths it serves two unauthenticated, read-only test
// endpoints: GET {prefix}/_proxytest/interactions (every created interaction, JSON array) and
// GET {prefix}/_proxytest/stats (the Stats counters).
//
// Logging (Config.Logger) is one zap line per request with method, path, status, fault and
// account; never bodies, media URLs or secrets.
package proxytest
