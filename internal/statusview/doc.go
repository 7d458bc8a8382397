// Package statusview is the human view of one message that `proxyq status` prints: its queue
// state, the requests made to Twilio, the outcome and delivery status, its lane, and the last
// error, as aligned "Name: value" lines. It also reads, best effort, the facts that are not
// in tasks.Status itself (the send ledger's request count, the lane).
//
// It never prints a message body or media URL: only SIDs, states, times and error codes.
package statusview
