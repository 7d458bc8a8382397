package delivery

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/tasks"
)

// Task types run by the worker for this package.
const (
	TypeStatusWebhook = "proxy:status_webhook" // one signed POST to the application
	TypeFetchError    = "proxy:delivery_fetch" // fetch the Message of an undelivered/failed one
)

// EventType is the "type" of every status webhook.
const EventType = "message.status"

// Event is the body of a status webhook: one per status change of a message. It follows the
// Standard Webhooks payload convention (type, timestamp, data).
type Event struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"` // when the change was recorded
	Data      EventData `json:"data"`
}

// EventData describes the message and its new status.
type EventData struct {
	ID    string `json:"id"` // the message's task ID (= its idempotency key's message)
	Queue string `json:"queue"`
	// API is "conversations" for a Conversations message; absent for Proxy.
	API string `json:"api,omitempty"`
	// InteractionSID is the Proxy interaction (KI…); absent for a Conversations message.
	InteractionSID string `json:"interaction_sid,omitempty"`
	// MessageSID is the Proxy interaction's outbound Message (SM…), or the Conversations
	// message (IM…) when API is "conversations".
	MessageSID   string     `json:"message_sid,omitempty"`
	Status       string     `json:"status"`
	Final        bool       `json:"final"`
	ErrorCode    int        `json:"error_code,omitempty"`
	ErrorMessage string     `json:"error_message,omitempty"`
	SentAt       *time.Time `json:"sent_at,omitempty"`
	DeliveredAt  *time.Time `json:"delivered_at,omitempty"`
	// History is the message's status_history at the time of this change.
	History []tasks.StatusEvent `json:"status_history,omitempty"`
}

// webhookTask is the payload of a TypeStatusWebhook task: the id and the exact body, so that
// every retry sends the same bytes under the same webhook-id.
type webhookTask struct {
	ID   string          `json:"id"`
	Body json.RawMessage `json:"body"`
}

// webhookID is stable for one (message, status): retries and racing replicas announce the
// same change under the same id, and the asynq task ID deduplicates concurrent enqueues.
func webhookID(queue, taskID, status string) string {
	sum := sha256.Sum256([]byte(queue + "\x00" + taskID + "\x00" + status))
	return "msg_" + hex.EncodeToString(sum[:16])
}

// announce enqueues the status webhook of o's current status, when webhooks are on. It never
// blocks on the application: the worker sends it.
func (s *Service) announce(ctx context.Context, ref msgRef, o tasks.Outcome) {
	if s.cfg.WebhookURL == "" {
		return
	}
	ev := Event{Type: EventType, Timestamp: s.now().UTC(), Data: EventData{
		ID: ref.TaskID, Queue: ref.Queue, InteractionSID: ref.KI, MessageSID: o.OutboundResourceSID,
		Status: o.OutboundStatus, Final: o.Final, ErrorCode: o.DeliveryErrorCode, ErrorMessage: o.DeliveryError,
		SentAt: o.SentAt, DeliveredAt: o.DeliveredAt, History: o.StatusHistory,
	}}
	if o.API == tasks.APIConversations {
		ev.Data.API, ev.Data.InteractionSID, ev.Data.MessageSID = o.API, "", o.MessageSID
	}
	body, _ := json.Marshal(ev)
	id := webhookID(ref.Queue, ref.TaskID, o.OutboundStatus)
	payload, _ := json.Marshal(webhookTask{ID: id, Body: body})
	_, err := s.client.EnqueueContext(ctx, asynq.NewTask(TypeStatusWebhook, payload), asynq.Queue(ref.Queue), asynq.TaskID(id),
		asynq.MaxRetry(webhookMaxRetry), asynq.Timeout(s.cfg.WebhookTimeout+5*time.Second))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		s.log.Error("delivery: status webhook not enqueued", zap.String("task_id", ref.TaskID), zap.String("status", o.OutboundStatus), zap.Error(err))
	}
}

// webhookMaxRetry: with the worker's backoff (capped at PROXYQ_BACKOFF_MAX) retries span hours.
const webhookMaxRetry = 20

// parseSecret decodes a Standard Webhooks secret, "whsec_<base64>" (the prefix is optional).
func parseSecret(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(strings.TrimSpace(secret), "whsec_"))
	if err != nil {
		return nil, errors.New(`want "whsec_" followed by base64 (e.g. from: echo "whsec_$(head -c 32 /dev/urandom | base64)")`)
	}
	if len(key) < 16 {
		return nil, errors.New("the key must be at least 16 bytes (24 base64 characters)")
	}
	return key, nil
}

// sendWebhook POSTs one event, signed per Standard Webhooks: webhook-id (stable across
// retries), webhook-timestamp (this attempt, Unix seconds), webhook-signature
// ("v1,<base64 HMAC-SHA256 of id.timestamp.body>"). A 2xx is success; anything else is retried.
// When the webhook ends (accepted, or its last retry failed) the answer is kept with the message
// (noteAnswer), because asynq deletes a completed webhook task.
func (w *Worker) sendWebhook(ctx context.Context, t *asynq.Task) error {
	var wt webhookTask
	if err := json.Unmarshal(t.Payload(), &wt); err != nil || wt.ID == "" {
		return fmt.Errorf("invalid status webhook task: %w", asynq.SkipRetry)
	}
	code, err := w.postWebhook(ctx, wt)
	if webhookFinished(ctx, err) {
		w.noteAnswer(ctx, wt.Body, code)
	}
	return err
}

// webhookFinished reports whether this run ends the webhook: it was accepted, or it failed on
// its last retry (asynq archives it next; a SkipRetry is a malformed task, not an answer).
func webhookFinished(ctx context.Context, err error) bool {
	if err == nil {
		return true
	}
	retried, ok1 := asynq.GetRetryCount(ctx)
	maxRetry, ok2 := asynq.GetMaxRetry(ctx)
	return ok1 && ok2 && retried >= maxRetry && !errors.Is(err, asynq.SkipRetry)
}

// postWebhook makes the POST; code is the application's HTTP answer (0: none came).
func (w *Worker) postWebhook(ctx context.Context, wt webhookTask) (code int, _ error) {
	if w.signer == nil {
		return 0, errors.New("status webhooks are queued but this worker has no PROXYQ_STATUS_WEBHOOK_URL and secret")
	}
	ts := w.s.now()
	sig, err := w.signer.Sign(wt.ID, ts, wt.Body)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, w.s.cfg.WebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.s.cfg.WebhookURL, bytes.NewReader(wt.Body))
	if err != nil {
		return 0, fmt.Errorf("status webhook: %w", asynq.SkipRetry)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "proxyq-webhooks")
	req.Header.Set(standardwebhooks.HeaderWebhookID, wt.ID)
	req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(standardwebhooks.HeaderWebhookSignature, sig)
	resp, err := w.http.Do(req)
	if err != nil {
		w.s.metrics.Webhooks.WithLabelValues("error").Inc()
		// The URL may carry a token in its query: report the failure without it.
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) {
			err = ue.Unwrap()
		}
		return 0, fmt.Errorf("status webhook %s: %w", wt.ID, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		w.s.metrics.Webhooks.WithLabelValues("rejected").Inc()
		return resp.StatusCode, fmt.Errorf("status webhook %s: the application answered %d", wt.ID, resp.StatusCode)
	}
	w.s.metrics.Webhooks.WithLabelValues("sent").Inc()
	return resp.StatusCode, nil
}

// The answers to a message's status webhooks, kept in field answersField of the message's own
// asynq task hash, so they expire with it: `<status> <HTTP code, 0 for none> <Unix ms, base
// 36>;` per finished webhook, appended by appendAnswer (only to a hash that exists, and at most
// answersMax bytes: a message has a handful of statuses). The send path never writes it.
const (
	answersField = "wh"
	answersMax   = 600
)

var appendAnswer = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 0 then return 0 end
local v = redis.call("HGET", KEYS[1], ARGV[1]) or ""
if string.len(v) + string.len(ARGV[2]) > tonumber(ARGV[3]) then return 0 end
redis.call("HSET", KEYS[1], ARGV[1], v .. ARGV[2])
return 1
`)

// noteAnswer keeps the application's answer to a finished webhook with its message. A failure
// is logged: the webhook itself is done either way.
func (w *Worker) noteAnswer(ctx context.Context, body []byte, code int) {
	var ev struct {
		Data struct {
			ID     string `json:"id"`
			Queue  string `json:"queue"`
			Status string `json:"status"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &ev) != nil || ev.Data.ID == "" || ev.Data.Queue == "" {
		return
	}
	entry := strings.ReplaceAll(ev.Data.Status, " ", "_") + " " + strconv.Itoa(code) + " " + strconv.FormatInt(w.s.now().UnixMilli(), 36) + ";"
	err := appendAnswer.Run(ctx, w.s.rdb, []string{taskKey(ev.Data.Queue, ev.Data.ID)}, answersField, entry, answersMax).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		w.s.log.Warn("delivery: status webhook answer not kept", zap.String("task_id", ev.Data.ID), zap.Error(err))
	}
}

// WebhookAnswer is how the application answered one finished status webhook.
type WebhookAnswer struct {
	Status string    // the status the webhook announced
	Code   int       // the HTTP answer, 0 when none came
	At     time.Time // when the webhook finished
}

// Accepted reports whether the application took the webhook (a 2xx).
func (a WebhookAnswer) Accepted() bool { return a.Code >= 200 && a.Code <= 299 }

// WebhookAnswers returns the answers to a message's finished status webhooks, in order (one
// HGET).
func WebhookAnswers(ctx context.Context, rdb redis.UniversalClient, queue, taskID string) ([]WebhookAnswer, error) {
	v, err := rdb.HGet(ctx, taskKey(queue, taskID), answersField).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("status webhook answers: %w", err)
	}
	return parseAnswers(v), nil
}

func parseAnswers(v string) []WebhookAnswer {
	var out []WebhookAnswer
	for _, e := range strings.Split(v, ";") {
		f := strings.Fields(e)
		if len(f) != 3 {
			continue
		}
		code, err1 := strconv.Atoi(f[1])
		ms, err2 := strconv.ParseInt(f[2], 36, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, WebhookAnswer{Status: f[0], Code: code, At: time.UnixMilli(ms).UTC()})
	}
	return out
}

func newSigner(secret string) (*standardwebhooks.Webhook, error) {
	key, err := parseSecret(secret)
	if err != nil {
		return nil, err
	}
	return standardwebhooks.NewWebhookRaw(key)
}
