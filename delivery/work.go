package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/internal/interaction"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/tasks"
)

// Fetcher reads a Message's status and error from Twilio's Messaging API.
type Fetcher interface {
	FetchStatus(ctx context.Context, accountSID, messageSID string) (Update, error)
}

// Limiter is the account's request limits as this package needs them; the worker's shared
// limiter is adapted to it in cmd. release(true) reports a 429.
type Limiter interface {
	Acquire(ctx context.Context, accountSID string, maxWait time.Duration) (release func(rateLimited bool), err error)
}

// Worker runs the delivery work inside `proxyq worker`: the error fetches, the status
// webhooks and the polling fallback. It makes every Twilio request under the account's limits.
type Worker struct {
	s      *Service
	fetch  Fetcher
	limit  Limiter
	http   *http.Client
	signer *standardwebhooks.Webhook
	// receipts lists Conversations receipts for the poll (receipts.go); nil: not polled.
	receipts ReceiptLister
}

// NewWorker wires the worker side. fetch may be nil (no error fetches or polls: messages then
// end at their last callback); limit must be set when fetch is. With a WebhookURL the
// WebhookSecret is required.
func (s *Service) NewWorker(fetch Fetcher, limit Limiter) (*Worker, error) {
	w := &Worker{s: s, fetch: fetch, limit: limit, http: &http.Client{Timeout: s.cfg.WebhookTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	if fetch != nil && limit == nil {
		return nil, errors.New("delivery: a Fetcher needs the account's Limiter")
	}
	if s.cfg.WebhookURL != "" {
		if s.cfg.WebhookSecret == "" {
			return nil, errors.New("status webhooks (PROXYQ_STATUS_WEBHOOK_URL) need a signing secret: PROXYQ_STATUS_WEBHOOK_SECRET or PROXYQ_STATUS_WEBHOOK_SECRET_FILE")
		}
		signer, err := newSigner(s.cfg.WebhookSecret)
		if err != nil {
			return nil, fmt.Errorf("PROXYQ_STATUS_WEBHOOK_SECRET: %w", err)
		}
		w.signer = signer
	}
	return w, nil
}

// Handlers are the asynq handlers the worker's pool registers.
func (w *Worker) Handlers() map[string]asynq.Handler {
	return map[string]asynq.Handler{
		TypeStatusWebhook: asynq.HandlerFunc(w.sendWebhook),
		TypeFetchError:    asynq.HandlerFunc(w.fetchError),
	}
}

// fetchMaxWait bounds how long one fetch waits for the account's limits before giving the
// slot back to sends (the task is retried later).
const fetchMaxWait = 2 * time.Second

// enqueueFetch schedules the Message fetch of an undelivered/failed message in the worker.
func (s *Service) enqueueFetch(ctx context.Context, ref msgRef) error {
	payload, _ := json.Marshal(fetchTask{Ref: ref, KI: ref.KI})
	_, err := s.client.EnqueueContext(ctx, asynq.NewTask(TypeFetchError, payload), asynq.Queue(ref.Queue),
		asynq.TaskID("dlverr:"+ref.KI), asynq.MaxRetry(fetchMaxRetry), asynq.Timeout(time.Minute))
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return nil
	}
	return err
}

const fetchMaxRetry = 8

type fetchTask struct {
	Ref msgRef `json:"ref"`
	KI  string `json:"ki"`
}

// fetchError records the delivery error of an undelivered or failed message, then announces
// the status (with its code). On its last attempt it announces without a code.
func (w *Worker) fetchError(ctx context.Context, t *asynq.Task) error {
	var ft fetchTask
	if err := json.Unmarshal(t.Payload(), &ft); err != nil || ft.KI == "" {
		return fmt.Errorf("invalid delivery fetch task: %w", asynq.SkipRetry)
	}
	ref := ft.Ref
	ref.KI = ft.KI
	last := false
	if n, ok := asynq.GetRetryCount(ctx); ok {
		if m, ok := asynq.GetMaxRetry(ctx); ok && n >= m {
			last = true
		}
	}
	if w.fetch == nil {
		return w.announceCurrent(ctx, ref)
	}
	u, err := w.fetchOne(ctx, ref, fetchMaxWait)
	if err != nil {
		if last || errors.Is(err, asynq.SkipRetry) {
			_ = w.announceCurrent(ctx, ref)
		}
		return err
	}
	res, err := w.s.apply(ctx, ref, []Update{u}, "fetch")
	if errors.Is(err, errGone) {
		return nil
	}
	if err != nil {
		return err
	}
	if res.change != Advanced && res.change != ErrorAdded {
		// Nothing new to record (no error code at Twilio): announce the status as it is.
		w.s.announce(ctx, ref, res.outcome)
	}
	return nil
}

// announceCurrent announces the message's current status as recorded.
func (w *Worker) announceCurrent(ctx context.Context, ref msgRef) error {
	o, err := w.s.readOutcome(ctx, ref)
	if err != nil || o == nil {
		return err
	}
	w.s.announce(ctx, ref, *o)
	return nil
}

func (s *Service) readOutcome(ctx context.Context, ref msgRef) (*tasks.Outcome, error) {
	raw, err := s.rdb.HGet(ctx, taskKey(ref.Queue, ref.TaskID), "result").Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return tasks.ParseOutcome([]byte(raw))
}

// errLimited says the account's limits had no room: try later, nothing was sent.
var errLimited = errors.New("account limits: no room for a delivery fetch now")

// fetchOne makes one Message fetch under the account's limits. A 429 is reported to the
// limiter (which slows the whole account down) and returned.
func (w *Worker) fetchOne(ctx context.Context, ref msgRef, maxWait time.Duration) (Update, error) {
	if ref.MessageSID == "" {
		return Update{}, fmt.Errorf("no outbound resource SID to fetch: %w", asynq.SkipRetry)
	}
	release, err := w.limit.Acquire(ctx, ref.AccountSID, maxWait)
	if err != nil {
		return Update{}, fmt.Errorf("%w: %v", errLimited, err)
	}
	fctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	u, err := w.fetch.FetchStatus(fctx, ref.AccountSID, ref.MessageSID)
	cancel()
	var apiErr *proxyclient.Error
	is429 := errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusTooManyRequests
	release(is429)
	if err != nil {
		if apiErr != nil && apiErr.StatusCode == http.StatusNotFound {
			return Update{}, fmt.Errorf("message %s not found at Twilio: %w", ref.MessageSID, asynq.SkipRetry)
		}
		if is429 {
			return Update{}, fmt.Errorf("%w: Twilio answered 429", errLimited)
		}
		return Update{}, err
	}
	if u.At.IsZero() {
		u.At = w.s.now().UTC()
	}
	return u, nil
}

// RunPoller runs the sweeper until ctx ends: every SweepInterval (jittered) one pass of
// PollOnce. Every worker runs one; the claim script shares the due messages among them.
func (w *Worker) RunPoller(ctx context.Context) {
	for {
		d := w.s.cfg.SweepInterval
		d = d/2 + time.Duration(rand.Int64N(int64(d)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		if _, err := w.PollOnce(ctx); err != nil && ctx.Err() == nil {
			w.s.log.Warn("delivery poll pass failed", zap.Error(err))
		}
	}
}

// PollOnce is one pass of the sweeper: drop early callbacks whose TTL is over (counted as
// unknown_interaction), then examine at most PollBatch messages due for a poll: a message
// already final or gone is unscheduled; one older than MaxAge is recorded delivery-unknown;
// the others are fetched under the account's limits. When the limits have no room or Twilio
// answers 429, the pass stops and the rest stay due. It returns how many messages it fetched.
func (w *Worker) PollOnce(ctx context.Context) (int, error) {
	s := w.s
	if err := w.dropExpiredEarly(ctx); err != nil {
		return 0, err
	}
	if s.cfg.PollOff {
		return 0, nil
	}
	now := s.now()
	members, err := claimScript.Run(ctx, s.rdb, []string{pollKey}, now.UnixMilli(), s.cfg.PollBatch,
		now.Add(s.cfg.PollEvery).UnixMilli()).StringSlice()
	if err != nil {
		return 0, fmt.Errorf("claim due polls: %w", err)
	}
	fetched := 0
	for i, ki := range members {
		if ctx.Err() != nil {
			return fetched, nil
		}
		stop, err := w.pollOne(ctx, ki, now)
		if err != nil {
			s.metrics.Polls.WithLabelValues("error").Inc()
			s.log.Warn("delivery poll", zap.String("interaction_sid", ki), zap.Error(err))
		}
		if stop {
			// Give the rest back at once: they are still due.
			z := make([]redis.Z, 0, len(members)-i)
			for _, m := range members[i:] {
				z = append(z, redis.Z{Score: float64(now.UnixMilli()), Member: m})
			}
			_ = s.rdb.ZAddXX(ctx, pollKey, z...).Err()
			break
		}
		if err == nil {
			fetched++
		}
	}
	return fetched, nil
}

// pollOne examines one message. stop is true when the account has no room for more fetches.
func (w *Worker) pollOne(ctx context.Context, ki string, now time.Time) (stop bool, err error) {
	s := w.s
	ref, err := s.lookup(ctx, ki)
	if err != nil {
		return false, err
	}
	var o *tasks.Outcome
	if ref != nil {
		if o, err = s.readOutcome(ctx, *ref); err != nil {
			return false, err
		}
	}
	if o == nil || o.Final || o.State != tasks.OutcomeSent {
		s.metrics.Polls.WithLabelValues("unscheduled").Inc()
		return false, s.rdb.ZRem(ctx, pollKey, ki).Err()
	}
	sentAt := o.RecordedAt
	if o.SentAt != nil {
		sentAt = *o.SentAt
	}
	if now.Sub(sentAt) >= s.cfg.MaxAge {
		_, err := s.apply(ctx, *ref, []Update{{Status: StatusDeliveryUnknown, At: now.UTC()}}, "poll")
		if err != nil && !errors.Is(err, errGone) {
			return false, err
		}
		s.metrics.Polls.WithLabelValues("gave_up").Inc()
		return false, s.rdb.ZRem(ctx, pollKey, ki).Err()
	}
	if isConversationMessage(ki) {
		return w.pollConversation(ctx, *ref, o) // its receipts (receipts.go)
	}
	if ref.MessageSID == "" {
		ref.MessageSID = fetchSID(o)
	}
	if w.fetch == nil {
		s.metrics.Polls.WithLabelValues("no_fetcher").Inc()
		return false, nil
	}
	u, err := w.fetchOne(ctx, *ref, 0)
	if errors.Is(err, errLimited) {
		s.metrics.Polls.WithLabelValues("limited").Inc()
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return false, s.applyPolled(ctx, *ref, []Update{u})
}

// applyPolled applies what a poll found and counts the poll advanced or unchanged; a message
// whose record is gone leaves the poll set.
func (s *Service) applyPolled(ctx context.Context, ref msgRef, ups []Update) error {
	res, err := s.apply(ctx, ref, ups, "poll")
	if errors.Is(err, errGone) {
		return s.rdb.ZRem(ctx, pollKey, ref.KI).Err()
	}
	if err != nil {
		return err
	}
	if res.change == Advanced || res.change == ErrorAdded {
		s.metrics.Polls.WithLabelValues("advanced").Inc()
	} else {
		s.metrics.Polls.WithLabelValues("unchanged").Inc()
	}
	return nil
}

// dropExpiredEarly drops early callbacks whose interaction was never recorded within
// PendingTTL, counting each as unknown_interaction.
func (w *Worker) dropExpiredEarly(ctx context.Context) error {
	s := w.s
	due, err := s.rdb.ZRangeByScore(ctx, earlyKey, &redis.ZRangeBy{Min: "-inf",
		Max: fmt.Sprint(s.now().UnixMilli()), Count: 1000}).Result()
	if err != nil {
		return fmt.Errorf("expired early callbacks: %w", err)
	}
	for _, ki := range due {
		won, err := s.rdb.ZRem(ctx, earlyKey, ki).Result()
		if err != nil {
			return err
		}
		if won == 0 {
			continue // another worker took it
		}
		n, err := drainScript.Run(ctx, s.rdb, []string{interaction.EarlyList(ki)}).Int()
		if err != nil {
			return err
		}
		if n > 0 {
			s.metrics.Callbacks.WithLabelValues(ResultUnknownInteraction).Add(float64(n))
			s.log.Info("early callbacks dropped: their interaction was never recorded", zap.String("interaction_sid", ki), zap.Int("callbacks", n))
		}
	}
	return nil
}
