// Package deliverywire joins delivery status tracking (package delivery) to what it must share
// with the sending side: the worker's account limiter and the accounts file. Packages delivery
// and worker do not import each other; this package imports both, so the commands (worker,
// dev) build the delivery side with one call instead of adapting it themselves.
//
// Guarantees:
//   - A Message fetch (a poll or an error fetch) counts against the limits of the account the
//     message belongs to, under the same key as that account's sends, so a subaccount's polls
//     use its own cap and a 429 on one of them slows that subaccount only.
//   - A fetch uses the credentials of the account the message belongs to when the accounts
//     file has them, else the default client.
package deliverywire
