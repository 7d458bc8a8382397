// Package accounts holds the credentials and limits of the Twilio accounts one proxyq fleet
// sends for: an ISV or platform runs one Twilio subaccount per customer, and a message names
// its account with the payload key account_sid.
//
// # How a subaccount authenticates to Proxy
//
// Proxy's paths carry no account (…/v1/Services/{KS}/…): the credentials of the request
// choose the account, and a Service belongs to exactly one account. So each account in the
// file has its own credentials, one of:
//
//   - an API key created in that subaccount (SK… + secret; Twilio's recommendation: revocable
//     one by one), or
//   - the subaccount's own Account SID + Auth Token.
//
// The main account's credentials reach a subaccount's resources only in the 2010 API, where
// the subaccount's SID is in the path; they cannot act on a subaccount's Proxy Service.
// (Twilio, "REST API: Subaccounts": "When performing CRUD operations within a subaccount, use
// the subaccount SID and auth token. Alternatively, you can generate API Keys at the
// subaccount level.")
//
// The Auth Token is also what Twilio signs callbacks with (X-Twilio-Signature), even when
// requests use an API key: give it too if you validate Proxy callbacks (AuthToken).
//
// # The file
//
// PROXYQ_ACCOUNTS_FILE, JSON or YAML (JSON is YAML), decoded strictly (unknown keys and
// malformed SIDs are errors naming the account and key, never a secret's value):
//
//	accounts:
//	  - account_sid: AC0123456789abcdef0123456789abcdef
//	    api_key: SK0123456789abcdef0123456789abcdef
//	    api_secret: "…"
//	    auth_token: "…"          # optional with an API key; used for callback signatures
//	    limits:                   # optional; zero/absent fields inherit the worker's
//	      max_in_flight: 20       # concurrent requests of this account (PROXYQ_MAX_IN_FLIGHT)
//	      rate: 50                # requests/s of this account (PROXYQ_RATE_LIMIT)
//	      burst: 50
//	      services:               # raised per-Service limits, requests/s per endpoint
//	        KS0123456789abcdef0123456789abcdef: 60
//
// # Rotation
//
// Reload re-reads the file and swaps the whole set atomically; Watch calls it when the file's
// content hash changed and then read the same at the next poll (so a half-written file is
// never applied; polling also follows Kubernetes Secret volumes, which swap a symlink), and
// cmd calls it on SIGHUP. A file that does not
// parse or validate is refused as a whole and the previous set stays in force. A request in
// flight keeps the client it started with; an account whose credentials did not change keeps
// its client (and its connection pool).
//
// # Guarantees
//
// Secrets never appear in errors, logs or String/GoString output of this package's types.
package accounts
