// Package convtest is an in-process fake of the Twilio Conversations v1 message endpoints,
// with the Proxy fake's fault injection and signed onDeliveryUpdated webhooks. Tests, the
// sandbox and dev mode run against it, so it follows Twilio's published description and, where
// Twilio leaves something open, picks the answer most likely to break a client that guesses.
//
// # What it fakes
//
//   - Routes below the mount prefix, for the default Service and a named one:
//     POST and GET /v1/[Services/{IS}/]Conversations/{CH}/Messages,
//     GET …/Messages/{IM} and GET …/Messages/{IM}/Receipts. A malformed SID or unknown path
//     answers 404 code 20404; a wrong method 405 code 20004.
//   - HTTP Basic auth (AC… or SK… user, non-empty secret; Config.Credentials to pin them):
//     failures answer 401 code 20003. Conversations are per account and per Service: a message
//     created under /v1/Services/{IS}/… is not seen under the default Service's paths.
//   - Create takes exactly the form fields of Twilio's description (Author, Body, Attributes,
//     MediaSid, ContentSid, ContentVariables, DateCreated, DateUpdated, Subject); any other
//     field, a repeated one, a malformed ME/HX SID, non-JSON Attributes or ContentVariables, a
//     body over 1,600 characters or nothing to send answers 400 code 20001 (the fake's choice:
//     Twilio documents no code for these). X-Twilio-Webhook-Enabled must be true or false. The
//     answer is 201 with Twilio's Message JSON: index counting from 0 per conversation, author
//     "system" by default, attributes "{}" when none, body and content_sid null when empty, a
//     media array for a MediaSid, the delivery summary, absolute url and links.
//   - Lists: Order asc (default) or desc, case-insensitive; PageSize 1–100 for messages and
//     1–50 for receipts (default 50); paging by the opaque PageToken in next_page_url, which is
//     null on the last page. Receipts are {"delivery_receipts":[…],"meta":{…}}.
//   - Twilio's per-account concurrency limit (Config.MaxConcurrentPerAccount): a request beyond
//     it is answered 429 code 20429 at once and not processed.
//   - CloseConversation makes creates answer 400 code 50377; MarkConversationUnknown makes
//     every request on the conversation answer 404 code 20404.
//
// # Faults
//
// The kinds are proxytest.Fault's (Inject, SetFaultRates, seeded by Config.Seed): 429 with and
// without Retry-After and 503 and 500 before anything was stored; 500, 502 and 504 (gateway
// HTML), a TCP reset and a hang (until the client leaves, Close, or HangLimit then 504) after
// the message was stored — so a blind retry makes a second message. Requests refused for
// another reason do not consume faults.
//
// # Delivery receipts and onDeliveryUpdated
//
// Each created message gets one receipt (DY…) per recipient (DeliveryConfig.Recipients,
// default 1) with status "sent". With Advance or URL, receipts move Delay apart through the
// message's Outcome (ScriptDelivery, else Default): delivered, delivered → read, undelivered
// (30003) or failed (30008). With URL, each change is POSTed form-encoded with the parameters
// in DeliveryParams and the headers X-Twilio-Signature (proxytest.CallbackSignature: base64
// HMAC-SHA1 over SigningURL and the sorted parameters, keyed by AuthToken, else the account's
// secret in Credentials, else the secret an AC… user created the message with), I-Twilio-Idempotency-Token and Content-Type. Duplicates posts each
// webhook twice; OutOfOrder holds a message's webhooks and posts them newest first. Callbacks
// and WaitDelivery let tests see them. Close ends every simulation.
package convtest
