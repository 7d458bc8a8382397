package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/tasks"
)

// One send policy, several Twilio APIs.
//
// The send policy — the ledger and its fenced leases, deadlines, lanes, account and scope
// limits, replica waits, the outcome record and the delivery hook — is written once, in
// handler.go, reconcile.go and lane.go. What differs between Twilio Proxy and Twilio
// Conversations is a handful of operations, which the policy reaches through message (the way
// River keeps one job loop over its riverdriver implementations):
//
//   - bind: the account's client for this run (accounts file, rotation-safe);
//   - create: the one request that can create the message;
//   - find: after an answer we never saw, the candidates that request may have created;
//   - classify, retryAfter, handling, scopeThrottled: what a failure means;
//   - limitScope and claimsInteraction: the key of the per-scope window limit (a Proxy
//     Service, a conversation), and whether the created interaction is claimed for
//     reconciliation (Proxy; not when reconciliation is exact).
//
// The adapters are sender_proxy.go (proxy:send_interaction) and sender_conversations.go
// (conversations:send_message). The handler picks one by the task's type.

// API names, as the outcome record (tasks.Outcome.API), logs and traces name them.
const (
	apiProxy         = "proxy"
	apiConversations = "conversations"
)

// accountClient is what the policy itself needs of a bound client: the account its limits
// are keyed by.
type accountClient interface {
	AccountKey() string
}

// created is what a create (or a reconciliation) found at Twilio, whichever API.
type created struct {
	SID         string // KI… (Proxy interaction) or IM… (Conversations message)
	AccountSID  string
	Status      string // the outbound status when the API says (Proxy), else ""
	ResourceSID string // SM…, the outbound Message (Proxy)
	DateCreated time.Time
}

// found is what find concluded.
type found struct {
	// Candidates are what the request may have created, best first, none claimed by another
	// message of ours. Empty: none found.
	Candidates []created
	// Inconclusive, when nothing was found, says why the search could not prove that nothing
	// was created (a bound cut it short); empty when not finding means "not created".
	Inconclusive string
}

// message is one decoded message of one API, with that API's operations. A run holds one for
// its whole life.
type message interface {
	// api names the API ("proxy", "conversations").
	api() string
	// shared returns the fields every API shares, as a tasks.Payload: SendBefore,
	// OrderingKey, AccountSID (a Proxy message's is its whole payload).
	shared() tasks.Payload
	// bind returns the client of the message's account (called again just before the request,
	// so that a key rotated during the limiter's wait is not used).
	bind(h *Handler) (accountClient, error)
	// create makes the one request that can create the message; stampID is the task ID.
	create(ctx context.Context, stampID string) (created, error)
	// find looks for what the run's last request may have created (r.own holds its times).
	find(ctx context.Context, r *run) (found, error)
	// classify maps a create's error to a class: none, retryable, permanent, ambiguous.
	classify(err error) proxyclient.Class
	// retryAfter is the wait a failure asks for (Retry-After, or its code's).
	retryAfter(err error) (time.Duration, bool)
	// handling says how a retryable non-429 failure is retried: whether it counts as a failed
	// attempt, and whether an identical request may still be creating the message.
	handling(err error) (failure, mayBeInProgress bool)
	// scopeThrottled reports whether a 429 slows the message's limit scope; slowAccount
	// whether it slows the account.
	scopeThrottled(err error) (scope, slowAccount bool)
	// limitScope keys the per-scope window limit (ServiceLimiter): a Proxy Service (KS…) or a
	// conversation (CH…).
	limitScope() string
	// claimsInteraction reports whether recording the message claims its interaction (a Proxy
	// message: reconciliation picks among look-alike interactions and must never adopt
	// another message's); false when reconciliation is exact and needs no claims.
	claimsInteraction() bool
	// record fills the outcome record's API-specific fields from what was created.
	record(c created, o *tasks.Outcome)
	// logFields name the message's addressee in log lines (never a body).
	logFields() []zap.Field
	// trace puts the message's SIDs on the run's span.
	trace(span trace.Span)
}

// decode picks the message's API by the task's type and decodes its payload.
func (h *Handler) decode(t *asynq.Task) (message, error) {
	switch t.Type() {
	case tasks.TypeSendConversationMessage:
		return h.decodeConversation(t.Payload())
	case tasks.TypeSendInteraction, "":
		return decodeProxy(t.Payload())
	}
	return nil, fmt.Errorf("task type %q is not a message type this worker sends", t.Type())
}
