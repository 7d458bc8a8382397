package worker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/accounts"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/tasks"
)

// Accounts gives the Proxy client of a Twilio account named by a message (payload key
// account_sid). The accounts package's Registry implements it; its clients change when the
// accounts file is rotated, and a run keeps the client it resolved for all its requests, so a
// rotation never fails a send in flight.
type Accounts interface {
	// Client returns the client for accountSID, or false when the worker has no credentials
	// for it.
	Client(accountSID string) (ProxyAPI, bool)
}

// ErrUnknownAccount is wrapped by the reason a message for an account without credentials is
// archived with.
var ErrUnknownAccount = errors.New("no credentials for this account")

// SetAccounts makes the handler send messages that name an account with that account's
// client. Without it, such a message is sent with the default client only when the default
// client is that account (Deps.API's AccountKey), and archived otherwise.
func (h *Handler) SetAccounts(a Accounts) { h.accounts = a }

// SetServiceLimiter sets the per-Service limiter (nil: off).
func (h *Handler) SetServiceLimiter(l *ServiceLimiter) { h.services = l }

// ServiceLimiter returns the per-Service limiter (nil when off; its methods are nil-safe), for
// other requests to the same Services, e.g. status polling: call AcquireRead(ctx, account,
// service, EndpointFetch) before each GET.
func (h *Handler) ServiceLimiter() *ServiceLimiter { return h.services }

// clientFor resolves the client for a payload: the default client when the payload names no
// account (or names the default one), else the account's own.
func (h *Handler) clientFor(p tasks.Payload) (ProxyAPI, error) {
	if p.AccountSID == "" || p.AccountSID == h.api.AccountKey() {
		return h.api, nil
	}
	if h.accounts != nil {
		if api, ok := h.accounts.Client(p.AccountSID); ok {
			return api, nil
		}
	}
	return nil, fmt.Errorf("account %s: %w (add it to PROXYQ_ACCOUNTS_FILE; the message was not sent)", p.AccountSID, ErrUnknownAccount)
}

// refreshClient takes the account's current client after the limiter waits, just before the
// request: a rotation during the wait (new key in the file, old one revoked soon after) must
// not send with the old key. The account is the same, so the limits keyed by it still hold;
// an account removed meanwhile keeps the client it had.
func (r *run) refreshClient() {
	if api, err := r.msg.bind(r.Handler); err == nil {
		r.api = api
	}
}

// unknownAccount archives a message for an account this worker cannot authenticate as. Nothing
// was sent; retrying cannot help until the accounts file has it, and then the message can be
// re-run from the dashboard.
func (r *run) unknownAccount(err error) error {
	reason := err.Error()
	// Nothing was sent and no ledger state is needed: the outcome goes straight to the task's
	// result, where the send path's scripts would have put it.
	o := &tasks.Outcome{State: tasks.OutcomeFailed, Error: reason, RecordedAt: r.now().UTC()}
	traceResult(r.span, o)
	if w := r.task.ResultWriter(); w != nil {
		if data, err := tasks.EncodeOutcome(o); err == nil {
			if _, err := w.Write(data); err != nil {
				r.log.Warn("could not write task result", zap.String("task_id", r.id), zap.Error(err))
			}
		}
	}
	r.metrics.Attempts.WithLabelValues(outcomePermanent, r.apiLabel()).Inc()
	r.log.Warn("archived: unknown account", zap.String("task_id", r.id), zap.String("queue", r.queue),
		zap.String("account", r.p.AccountSID), zap.String("outcome", outcomePermanent))
	return archive(err)
}

// acquireService reserves the message's create request on its scope's budget (see
// ServiceLimiter): its Proxy Service, or its conversation. It waits at most maxWait.
func (r *run) acquireService(ctx context.Context, maxWait time.Duration) (*Reservation, error) {
	if r.services == nil {
		return nil, nil
	}
	return r.services.Reserve(ctx, r.api.AccountKey(), r.msg.limitScope(), EndpointCreate, min(maxWait, r.services.MaxWait()))
}

// beforeListPage counts each page reconciliation reads against the scope's list budget.
func (r *run) beforeListPage(ctx context.Context, _ int) error {
	return r.services.AcquireRead(ctx, r.api.AccountKey(), r.msg.limitScope(), EndpointList)
}

// rateLimitRetry decides what a 429 means (the message's API says, scopeThrottled): one that
// slows the scope (Proxy's 80621 on a Service; a Conversations 429 other than 20429 on a
// conversation) lowers that scope's factor and the message comes back after about one
// request's share of the window; one that slows the account (20429, a bare Proxy 429) comes
// back after backoff. slowAccount tells the permit.
func (r *run) rateLimitRetry(err error, posts int) (after time.Duration, slowAccount bool) {
	after, _ = r.msg.retryAfter(err)
	scope, slowAccount := r.msg.scopeThrottled(err)
	if scope {
		r.services.Throttled(r.api.AccountKey(), r.msg.limitScope())
		if after == 0 {
			after = time.Second + time.Duration(rand.Int64N(int64(time.Second)))
		}
		return after, slowAccount
	}
	if after == 0 {
		after = Backoff(min(posts-1, 8), r.cfg.BackoffBase, r.cfg.BackoffMax, rand.Float64)
	}
	return after, true
}

// retryLaterHandling reports how a retryable, non-429 Twilio answer is retried: failure
// (counts against max_retry) unless the code says "retry later" (14107, 80623), and whether
// an identical request may still be creating the interaction (80623), in which case the next
// run reconciles before any resend.
func retryLaterHandling(err error) (failure, mayBeInProgress bool) {
	info, ok := proxyclient.Explain(err)
	if !ok {
		return true, false
	}
	return info.Handling != proxyclient.HandlingRetryLater, info.MayBeInProgress
}

// AccountSource is what the worker needs of the accounts file (accounts.Registry): each
// account's client, its own limits and its per-Service rates. Every method reads the current
// file, so a rotation applies at once.
type AccountSource interface {
	Accounts
	ServiceRates
	// AccountLimits returns the account's own limits; zero fields inherit the worker's
	// (PROXYQ_MAX_IN_FLIGHT, …). ok is false for an account the file does not list.
	AccountLimits(accountSID string) (lim AccountLimits, ok bool)
}

// newLimiterWithAccounts builds the account limiter: global limits, overridden per account
// by the accounts file. With no file and no global limit it is NoLimit.
func newLimiterWithAccounts(rdb redis.UniversalClient, lim AccountLimits, src AccountSource, m *Metrics, log *zap.Logger) (Limiter, error) {
	if src == nil {
		return NewAccountLimiter(rdb, lim, m, log)
	}
	lim = lim.WithDefaults()
	if err := lim.Validate(); err != nil {
		return nil, err
	}
	l := newAccountLimiter(rdb, lim, m, log)
	l.perAccount = func(account string) (AccountLimits, bool) {
		own, ok := src.AccountLimits(account)
		if !ok {
			return lim, false
		}
		merged := lim
		if own.MaxInFlight > 0 {
			merged.MaxInFlight = own.MaxInFlight
		}
		if own.Rate > 0 {
			merged.Rate, merged.Burst = own.Rate, own.Burst
			if merged.Burst == 0 {
				merged.Burst = int(math.Ceil(own.Rate))
			}
		}
		return merged, true
	}
	return l, nil
}

// wireAccounts gives the handler the accounts file and the per-Service limiter.
func (h *Handler) wireAccounts(rdb redis.UniversalClient, cfg Config, deps Deps, log *zap.Logger) error {
	var rates ServiceRates
	if deps.Accounts != nil {
		h.SetAccounts(deps.Accounts)
		rates = deps.Accounts
	}
	services, err := NewServiceLimiter(rdb, cfg.ServiceLimits, rates, deps.Registerer, log)
	if err != nil {
		return fmt.Errorf("worker config: %w", err)
	}
	h.SetServiceLimiter(services)
	return nil
}

// FromRegistry adapts the accounts file (accounts.Registry) to the worker.
func FromRegistry(r *accounts.Registry) AccountSource { return registrySource{r} }

type registrySource struct{ r *accounts.Registry }

func (s registrySource) Client(accountSID string) (ProxyAPI, bool) {
	c, ok := s.r.Client(accountSID)
	if !ok {
		return nil, false
	}
	return c, true
}

func (s registrySource) AccountLimits(accountSID string) (AccountLimits, bool) {
	l, ok := s.r.Limits(accountSID)
	return AccountLimits{MaxInFlight: l.MaxInFlight, Rate: l.Rate, Burst: l.Burst}, ok
}

func (s registrySource) ServiceRate(accountSID, service string) (float64, bool) {
	return s.r.ServiceRate(accountSID, service)
}
