package proxyclient

import (
	"errors"
	"time"
)

// Handling is what a Twilio error code means for a caller that wants to send the same
// request again. It refines Class for the codes Twilio documents for Proxy and Messaging:
// Classify alone goes by HTTP status, which cannot tell "too many messages between these
// two numbers, wait 30 s" (a 4xx that clears by itself) from "session closed" (a 4xx that
// never will).
type Handling int

const (
	// HandlingByStatus: no rule for this code (or no code); Classify's class by HTTP status applies.
	HandlingByStatus Handling = iota
	// HandlingTransient: not processed; retry with backoff (a failed attempt).
	HandlingTransient
	// HandlingRetryLater: not processed and not the sender's fault; retry after CodeInfo.RetryAfter
	// (or the server's Retry-After). Not a failed attempt: the caller's deadline bounds it.
	HandlingRetryLater
	// HandlingCapacity: not processed; a resource Twilio needs (a free proxy number) is used up
	// now and comes back by itself (sessions close) or when an operator adds some. Retry after
	// a long backoff (CodeInfo.RetryAfter); each retry is a failed attempt, so max_retry and the
	// deadline end it.
	HandlingCapacity
	// HandlingConfiguration: not processed; the Service is set up so that this request can
	// never succeed until an operator changes it. Archive with the reason.
	HandlingConfiguration
	// HandlingPermanent: the same request will fail the same way. Archive.
	HandlingPermanent
)

func (h Handling) String() string {
	switch h {
	case HandlingByStatus:
		return "by-status"
	case HandlingTransient:
		return "transient"
	case HandlingRetryLater:
		return "retry-later"
	case HandlingCapacity:
		return "capacity"
	case HandlingConfiguration:
		return "configuration"
	case HandlingPermanent:
		return "permanent"
	}
	return "Handling(?)"
}

// Scope is what a rate-limit answer slows down.
type Scope int

const (
	ScopeNone    Scope = iota // not a rate limit
	ScopeAccount              // the account's concurrent-request cap (20429)
	ScopeService              // one Proxy Service's per-endpoint rate (80621)
	ScopePair                 // one pair of phone numbers (14107)
)

func (s Scope) String() string {
	switch s {
	case ScopeAccount:
		return "account"
	case ScopeService:
		return "service"
	case ScopePair:
		return "number-pair"
	}
	return "none"
}

// CodeInfo is the rule for one Twilio error code.
type CodeInfo struct {
	Code     int
	Meaning  string
	Handling Handling
	// RetryAfter is the wait before the same request can succeed, when Twilio documents one
	// (14107: 30 s) or when the handling implies one (capacity: a long backoff). A server's
	// Retry-After header wins over it.
	RetryAfter time.Duration
	// Scope says what a rate limit applies to.
	Scope Scope
	// MayBeInProgress: Twilio says an identical request is still being processed, so the
	// interaction may appear later; the caller should reconcile before sending again.
	MayBeInProgress bool
	// Why is the reason for the handling, for the docs table (docs/limits.md) and operators.
	Why string
}

// Code-specific waits.
const (
	// PairWindow is Messaging's 14107 window: after more than 30 messages between the same two
	// numbers within 30 s, further ones fail for 30 s.
	PairWindow = 30 * time.Second
	// DuplicateInProgressWait is how long to wait after 80623 before looking again.
	DuplicateInProgressWait = 10 * time.Second
	// CapacityBackoff is the wait after a "no proxy number available" answer: sessions close
	// (TTL) or an operator adds numbers on a scale of minutes, not seconds.
	CapacityBackoff = 10 * time.Minute
)

// codeTable is the classification of every code Twilio's reference lists for Proxy message
// interactions. docs/limits.md has the same table (TestCodeTableInDocs keeps them equal).
var codeTable = []CodeInfo{
	{Code: 20429, Meaning: "too many concurrent requests on the account", Handling: HandlingRetryLater, Scope: ScopeAccount,
		Why: "Twilio: a 429 was not processed and is always safe to retry; slows the account"},
	{Code: 80621, Meaning: "per-endpoint rate limit of a Proxy Service", Handling: HandlingRetryLater, Scope: ScopeService,
		Why: "not processed; slows that Service only"},
	{Code: 80623, Meaning: "a duplicate request is still being processed", Handling: HandlingRetryLater, RetryAfter: DuplicateInProgressWait, MayBeInProgress: true,
		Why: "this request was refused, but an identical one may still create the interaction: reconcile before any resend"},
	{Code: 14107, Meaning: "too many messages between the same two numbers", Handling: HandlingRetryLater, RetryAfter: PairWindow, Scope: ScopePair,
		Why: "Messaging refuses the pair for 30 s; retried after the window, not archived"},
	{Code: 20503, Meaning: "service temporarily unavailable", Handling: HandlingTransient,
		Why: "Twilio's advice: retry with exponential backoff"},
	{Code: 80203, Meaning: "no proxy number for the participant's country", Handling: HandlingConfiguration,
		Why: "the pool has no number for that country: only an operator adding one fixes it; archived so it shows at once"},
	{Code: 80205, Meaning: "no proxy numbers configured on the Service", Handling: HandlingConfiguration,
		Why: "the Service's pool is empty: only an operator fixes it; archived so it shows at once"},
	{Code: 80206, Meaning: "no compatible proxy number available for the participant", Handling: HandlingCapacity, RetryAfter: CapacityBackoff,
		Why: "the compatible numbers are in use in the participant's other sessions; they free up as sessions close (TTL), so long backoff until the deadline"},
	{Code: 80208, Meaning: "all matching proxy numbers in use in other sessions", Handling: HandlingCapacity, RetryAfter: CapacityBackoff,
		Why: "frees up as the other sessions close, so long backoff until the deadline"},
	{Code: 20003, Meaning: "authentication or permission failure", Handling: HandlingPermanent,
		Why: "wrong or revoked credentials for this account: no retry helps this message"},
	{Code: 20404, Meaning: "resource not found", Handling: HandlingPermanent, Why: "the Service, Session or Participant does not exist"},
	{Code: 21602, Meaning: "message body required", Handling: HandlingPermanent, Why: "the request itself is wrong"},
	{Code: 80405, Meaning: "participant SID invalid", Handling: HandlingPermanent, Why: "the request itself is wrong"},
	{Code: 80607, Meaning: "session closed", Handling: HandlingPermanent, Why: "a closed session never reopens for this message"},
	{Code: 80608, Meaning: "invalid session status change", Handling: HandlingPermanent, Why: "the session's state forbids it"},
	{Code: 80609, Meaning: "too many participants", Handling: HandlingPermanent, Why: "the session's shape forbids it"},
	{Code: 80909, Meaning: "blocked by the intercept callback", Handling: HandlingPermanent, Why: "your intercept_callback_url refused it"},
	{Code: 80911, Meaning: "wrong channel for the participant", Handling: HandlingPermanent, Why: "the participant cannot receive this channel"},
}

var codeIndex = func() map[int]CodeInfo {
	m := make(map[int]CodeInfo, len(codeTable))
	for _, c := range codeTable {
		m[c.Code] = c
	}
	return m
}()

// Codes returns the classification table, in the order of docs/limits.md.
func Codes() []CodeInfo { return append([]CodeInfo(nil), codeTable...) }

// LookupCode returns the rule for a Twilio error code.
func LookupCode(code int) (CodeInfo, bool) {
	c, ok := codeIndex[code]
	return c, ok
}

// Explain returns the rule for the Twilio code of the *Error in err's chain. A 429 without a
// known code is the account's concurrency limit (Twilio's documented meaning of a bare 429).
// ok is false when err carries no *Error or its code has no rule.
func Explain(err error) (CodeInfo, bool) {
	var he *Error
	if !errors.As(err, &he) {
		return CodeInfo{}, false
	}
	if c, ok := codeIndex[he.Code]; ok {
		return c, true
	}
	if he.StatusCode == 429 {
		return codeIndex[20429], true
	}
	return CodeInfo{}, false
}

// classifyCode is Classify's view of a known code: every handling but permanent and
// configuration means "not processed, sending again is safe" (MayBeInProgress is for the
// caller to look at).
func classifyCode(he *Error) (Class, bool) {
	c, ok := codeIndex[he.Code]
	if !ok {
		return 0, false
	}
	switch c.Handling {
	case HandlingTransient, HandlingRetryLater, HandlingCapacity:
		return ClassRetryable, true
	case HandlingPermanent, HandlingConfiguration:
		return ClassPermanent, true
	}
	return 0, false
}
