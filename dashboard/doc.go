// Package dashboard serves proxyq's operator web UI, made safe to expose on a network: the
// console (package console: find any message and read its whole story) as its home page, and
// the asynq web console (github.com/hibiken/asynqmon, embedded as a library) below QueuesPath
// for queue administration.
//
// It owns what both leave to their host:
//
//   - Authentication is on by default: HTTP Basic (User and Password, what browsers prompt
//     for) and/or a bearer token (Token), both compared in constant time over SHA-256
//     digests. Running open needs Config.AllowNoAuth, and New logs a warning when it does;
//     Config.AuthenticatedUpstream is for a host that authenticates every request itself.
//   - Cross-origin protection for every state-changing request (net/http's
//     CrossOriginProtection), because browsers attach cached Basic credentials to forged
//     cross-site requests.
//   - A read-only mode (asynqmon's: only GET reaches its API; the console offers and accepts
//     no action) and the console's roles: an authenticated caller is an operator, or a viewer
//     when the dashboard is read-only (docs/console.md).
//   - Payload redaction by default ([RedactPayload]): message bodies and media URLs are
//     personal data, so the console shows "[redacted: N chars]" and "[redacted: N URLs]" in
//     their place, with the SIDs and send_before visible. Config.ShowMessageContent shows them.
//   - The worker's outcome record (tasks.Outcome), which asynq stores as the task result, is
//     shown as indented JSON led by a one-line summary ([FormatResult]).
//
// Guarantees: no request reaches asynqmon without valid credentials unless AllowNoAuth (or
// AuthenticatedUpstream) was set and no credentials were configured; every payload string asynqmon renders (task lists,
// task details, active workers) goes through the configured formatter, so with redaction on
// no body or media URL leaves the server through the console. The package never logs
// credentials, bodies or media URLs.
//
// Health endpoints, metrics and the listener belong to the caller (cmd/proxyq): the dashboard
// is only the handler.
package dashboard
