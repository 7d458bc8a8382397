// Package sid holds the shape of a Twilio SID: a two-letter prefix naming the resource (AC for an
// account, KS for a Proxy service, KP for a participant, …) followed by 32 hexadecimal digits.
//
// It is a leaf (standard library only) so that both the producer contract (package tasks) and
// the API client (package proxyclient) check SIDs by one rule without tasks importing the
// client: a service that only enqueues must not pull in the client and what the client pulls
// in. It is internal because the rule is not a product API of its own; code outside the module
// keeps using proxyclient.ValidSID, which calls Valid.
//
// SIDs are placed in URL paths, so nothing but this exact shape may pass.
package sid
