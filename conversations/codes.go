package conversations

import (
	"errors"
	"net/http"
	"time"

	"github.com/proxyq/proxyq/proxyclient"
)

// Scope is what a rate-limit answer slows down.
type Scope int

const (
	ScopeNone         Scope = iota // not a rate limit
	ScopeAccount                   // the account's concurrent-request cap (20429)
	ScopeConversation              // one conversation's action rate
)

func (s Scope) String() string {
	switch s {
	case ScopeAccount:
		return "account"
	case ScopeConversation:
		return "conversation"
	}
	return "none"
}

// CodeInfo is the rule for one Twilio error code on the Conversations API. Handling has
// proxyclient's meanings, so the worker's one send policy reads both APIs' answers alike.
type CodeInfo struct {
	Code     int
	Meaning  string
	Handling proxyclient.Handling
	// RetryAfter is the wait the code implies; a server's Retry-After header wins over it.
	RetryAfter time.Duration
	Scope      Scope
	// Why is the reason for the handling, for operators.
	Why string
	// Source is where the code's meaning was read.
	Source string
	// Confirmed is true when Source was read for this table; false marks a rule carried over
	// from proxyclient's table without reading its page again.
	Confirmed bool
}

// codeTable is the one classification of the Twilio codes a Conversations message create can
// answer with. Every meaning was read in Twilio's error dictionary (Source). Codes looked up
// and NOT found there (50300, 50431, 50433, 50507, and any conversation-level rate-limit code)
// have no rule: they are classified by HTTP status, which is the safe default (a 429 is
// retried, a 5xx reconciled, a 4xx archived).
var codeTable = []CodeInfo{
	{Code: 20429, Meaning: "too many concurrent requests on the account", Handling: proxyclient.HandlingRetryLater, Scope: ScopeAccount,
		Why: "Twilio: a 429 was not processed and is always safe to retry; slows the account", Source: "https://www.twilio.com/docs/api/errors/20429", Confirmed: true},
	{Code: 20503, Meaning: "service temporarily unavailable", Handling: proxyclient.HandlingTransient,
		Why: "Twilio: try again a few times with exponential back-off", Source: "https://www.twilio.com/docs/api/errors/20503", Confirmed: true},
	{Code: 20003, Meaning: "authentication or permission failure", Handling: proxyclient.HandlingPermanent,
		Why: "wrong or revoked credentials: no retry helps this message", Source: "proxyclient code table (Twilio's generic authentication code)"},
	{Code: 20404, Meaning: "resource not found (conversation or Conversation Service)", Handling: proxyclient.HandlingPermanent,
		Why: "the conversation (or the Service in the path) does not exist in this account", Source: "https://www.twilio.com/docs/api/errors/20404", Confirmed: true},
	{Code: 50350, Meaning: "conversation not found", Handling: proxyclient.HandlingPermanent,
		Why: "the CH SID does not exist under this account; it never will", Source: "https://www.twilio.com/docs/api/errors/50350", Confirmed: true},
	{Code: 50377, Meaning: "conversation is closed", Handling: proxyclient.HandlingPermanent,
		Why: "a closed conversation is final and cannot be reactivated", Source: "https://www.twilio.com/docs/api/errors/50377", Confirmed: true},
	{Code: 50416, Meaning: "participant and proxy address pair already in use", Handling: proxyclient.HandlingConfiguration,
		Why: "an SMS address and Twilio number pair is bound to another active conversation: an operator must close or remove the other one", Source: "https://www.twilio.com/docs/api/errors/50416", Confirmed: true},
}

var codeIndex = func() map[int]CodeInfo {
	m := make(map[int]CodeInfo, len(codeTable))
	for _, c := range codeTable {
		m[c.Code] = c
	}
	return m
}()

// Codes returns the classification table.
func Codes() []CodeInfo { return append([]CodeInfo(nil), codeTable...) }

// LookupCode returns the rule for a Twilio error code.
func LookupCode(code int) (CodeInfo, bool) {
	c, ok := codeIndex[code]
	return c, ok
}

// Explain returns the rule for the code of the *proxyclient.Error in err's chain. A 429
// without a known code is taken as the account's limit (Twilio's meaning of a bare 429, and
// the conservative scope). ok is false when err carries no *Error or its code has no rule.
func Explain(err error) (CodeInfo, bool) {
	var he *proxyclient.Error
	if !errors.As(err, &he) {
		return CodeInfo{}, false
	}
	if c, ok := codeIndex[he.Code]; ok {
		return c, true
	}
	if he.StatusCode == http.StatusTooManyRequests {
		return codeIndex[20429], true
	}
	return CodeInfo{}, false
}

// Classify maps the error of a CreateMessage to a proxyclient.Class: the table above first
// (for answers below 500: a known code says more than the status), then proxyclient.Classify,
// whose rules for statuses, transport and decode errors are the same for both APIs.
func Classify(err error) proxyclient.Class {
	var he *proxyclient.Error
	if errors.As(err, &he) && he.StatusCode < 500 {
		if c, ok := codeIndex[he.Code]; ok {
			switch c.Handling {
			case proxyclient.HandlingTransient, proxyclient.HandlingRetryLater, proxyclient.HandlingCapacity:
				return proxyclient.ClassRetryable
			case proxyclient.HandlingPermanent, proxyclient.HandlingConfiguration:
				return proxyclient.ClassPermanent
			}
		}
	}
	return proxyclient.Classify(err)
}

// ClassifyRead maps the error of a read (FetchMessage, ListMessages, ListReceipts,
// FindStamped) to Retryable or Permanent, as proxyclient.ClassifyRead does; an oversized body
// is Permanent (reading it again gives the same).
func ClassifyRead(err error) proxyclient.Class {
	if errors.Is(err, errBodyTooLarge) {
		return proxyclient.ClassPermanent
	}
	if Classify(err) == proxyclient.ClassPermanent {
		return proxyclient.ClassPermanent
	}
	return proxyclient.ClassifyRead(err)
}

// RetryAfter returns when the request in err may be tried again: the server's Retry-After
// (capped by Config.MaxRetryAfter), else the wait its code implies. ok is false when neither.
func RetryAfter(err error) (time.Duration, bool) {
	var he *proxyclient.Error
	if !errors.As(err, &he) {
		return 0, false
	}
	if he.RetryAfter > 0 {
		return he.RetryAfter, true
	}
	if c, ok := codeIndex[he.Code]; ok && c.RetryAfter > 0 {
		return c.RetryAfter, true
	}
	return 0, false
}
