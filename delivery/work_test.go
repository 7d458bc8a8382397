package delivery

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/internal/webhooktest"
	"github.com/proxyq/proxyq/proxyclient"
)

// fakeFetcher answers FetchStatus from a table and counts calls.
type fakeFetcher struct {
	mu     sync.Mutex
	status map[string]Update // by message SID
	calls  atomic.Int64
	err    error
}

func (f *fakeFetcher) FetchStatus(_ context.Context, account, sm string) (Update, error) {
	f.calls.Add(1)
	if account != testAccount {
		return Update{}, errors.New("wrong account " + account)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return Update{}, f.err
	}
	u, ok := f.status[sm]
	if !ok {
		return Update{Status: "sent"}, nil
	}
	return u, nil
}

// pollWorker is s's worker, fetching from f (a fakeFetcher without statuses when nil) under a
// countLimiter with room for room fetches.
func pollWorker(t *testing.T, s *Service, f *fakeFetcher, room int64) (*Worker, *fakeFetcher, *countLimiter) {
	t.Helper()
	if f == nil {
		f = &fakeFetcher{status: map[string]Update{}}
	}
	lim := &countLimiter{}
	lim.room.Store(room)
	w, err := s.NewWorker(f, lim)
	if err != nil {
		t.Fatal(err)
	}
	return w, f, lim
}

// countLimiter admits up to room requests, then says no.
type countLimiter struct {
	room     atomic.Int64
	limited  atomic.Int64
	released atomic.Int64
}

func (l *countLimiter) Acquire(context.Context, string, time.Duration) (func(bool), error) {
	if l.room.Add(-1) < 0 {
		return nil, errors.New("limited")
	}
	return func(rl bool) {
		l.released.Add(1)
		if rl {
			l.limited.Add(1)
		}
	}, nil
}

func TestPollingFallbackWithCallbacksOff(t *testing.T) {
	e := newEnv(t)
	s := e.service(t, Config{PollAfter: time.Minute, PollEvery: time.Minute, MaxAge: time.Hour, PollBatch: 3})
	w, f, lim := pollWorker(t, s, nil, 1000)
	var ids, kis []string
	for i := range 5 {
		id, ki, o := e.message(t, "default")
		s.Recorded(context.Background(), "default", id, testAccount, o, false)
		ids = append(ids, id)
		kis = append(kis, ki)
		switch i {
		case 0, 1:
			f.status[o.OutboundResourceSID] = Update{Status: "delivered"}
		case 2:
			f.status[o.OutboundResourceSID] = Update{Status: "undelivered", ErrorCode: 30006, ErrorMessage: "Landline or unreachable carrier"}
		}
	}
	// Not due yet.
	if n, _ := w.PollOnce(context.Background()); n != 0 || f.calls.Load() != 0 {
		t.Fatalf("polled before PollAfter: %d", n)
	}
	clock := time.Now().Add(2 * time.Minute)
	s.now = func() time.Time { return clock }
	// Bounded per pass: 3, then 2.
	if n, _ := w.PollOnce(context.Background()); n != 3 {
		t.Fatalf("first pass fetched %d, want PollBatch=3", n)
	}
	if n, _ := w.PollOnce(context.Background()); n != 2 {
		t.Fatalf("second pass fetched %d, want 2", n)
	}
	for i, id := range ids {
		o := e.outcome(t, "default", id)
		switch i {
		case 0, 1:
			if o.OutboundStatus != "delivered" || !o.Final {
				t.Fatalf("%d: %+v", i, o)
			}
		case 2:
			if o.OutboundStatus != "undelivered" || o.DeliveryErrorCode != 30006 || o.DeliveryError == "" {
				t.Fatalf("%d: %+v", i, o)
			}
		default:
			if o.OutboundStatus != "sent" || o.Final {
				t.Fatalf("%d: %+v", i, o)
			}
		}
	}
	if still := stillPolled(t, e.rdb, kis[:3]...); len(still) != 0 {
		t.Fatalf("final but still scheduled: %v", still)
	}
	if n, _ := e.rdb.ZCard(context.Background(), pollKey).Result(); n != 2 {
		t.Fatalf("%d messages still scheduled, want the 2 not final", n)
	}
	// No room in the account's limits: the pass stops at once, nothing is lost.
	clock = clock.Add(2 * time.Minute)
	lim.room.Store(0)
	calls := f.calls.Load()
	if n, _ := w.PollOnce(context.Background()); n != 0 || f.calls.Load() != calls {
		t.Fatal("polled without a permit")
	}
	// A 429 slows the account (reported to the limiter) and stops the pass.
	lim.room.Store(1000)
	f.err = &proxyclient.Error{StatusCode: http.StatusTooManyRequests, Code: 20429}
	if n, _ := w.PollOnce(context.Background()); n != 0 || lim.limited.Load() != 1 || f.calls.Load() != calls+1 {
		t.Fatalf("429: fetched %d, limiter told %d, calls %d", n, lim.limited.Load(), f.calls.Load()-calls)
	}
	f.err = nil
	// Past MaxAge: delivery-unknown, and polling stops.
	clock = clock.Add(2 * time.Hour)
	if _, err := w.PollOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids[3:] {
		if o := e.outcome(t, "default", id); o.OutboundStatus != StatusDeliveryUnknown || o.Final {
			t.Fatalf("past MaxAge: %+v", o)
		}
	}
	if n, _ := e.rdb.ZCard(context.Background(), pollKey).Result(); n != 0 {
		t.Fatalf("%d still scheduled after MaxAge", n)
	}
}

func TestUndeliveredFetchesErrorThenAnnounces(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	var got []*http.Request
	var bodies [][]byte
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, bodies = append(got, r), append(bodies, b)
		mu.Unlock()
	}))
	defer app.Close()
	s := e.service(t, Config{WebhookURL: app.URL + "/hooks", WebhookSecret: secret})
	c := newCallbackClient(t, s)
	w, f, lim := pollWorker(t, s, nil, 100)
	id, ki, o := e.message(t, "default")
	f.status[o.OutboundResourceSID] = Update{Status: "undelivered", ErrorCode: 30003, ErrorMessage: "Unreachable destination handset"}
	s.Recorded(context.Background(), "default", id, testAccount, o, false)
	for _, st := range []string{"sent", "undelivered"} {
		if code := c.post(c.params(ki, st), ""); code != 200 {
			t.Fatal(code)
		}
	}
	// Run whatever the queue holds, as the worker's pool would.
	run := func() {
		for range 5 {
			list, err := e.insp.ListPendingTasks("default")
			if err != nil {
				t.Fatal(err)
			}
			ran := false
			for _, ti := range list {
				h := w.Handlers()[ti.Type]
				if h == nil {
					continue
				}
				if err := h.ProcessTask(context.Background(), asynq.NewTask(ti.Type, ti.Payload)); err != nil {
					t.Fatalf("%s: %v", ti.Type, err)
				}
				_ = e.insp.DeleteTask("default", ti.ID)
				ran = true
			}
			if !ran {
				return
			}
		}
	}
	run()
	rec := e.outcome(t, "default", id)
	if rec.OutboundStatus != "undelivered" || rec.DeliveryErrorCode != 30003 || rec.DeliveryError != "Unreachable destination handset" {
		t.Fatalf("record %+v", rec)
	}
	if lim.released.Load() != 1 {
		t.Fatalf("fetch did not go through the limiter (%d)", lim.released.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	// sent, then undelivered with its code: one POST per status change.
	if len(got) != 2 {
		t.Fatalf("%d webhooks, want 2", len(got))
	}
	var last Event
	for i, r := range got {
		if err := webhooktest.Verify(secret, r.Header, bodies[i], time.Now()); err != nil {
			t.Fatalf("webhook %d: %v", i, err)
		}
		if err := json.Unmarshal(bodies[i], &last); err != nil {
			t.Fatal(err)
		}
		if last.Data.ID != id || last.Data.InteractionSID != ki || last.Type != EventType {
			t.Fatalf("webhook %d: %+v", i, last)
		}
	}
	if last.Data.Status != "undelivered" || last.Data.ErrorCode != 30003 || !last.Data.Final {
		t.Fatalf("last webhook %+v", last.Data)
	}
	// A tampered body or a stale timestamp fail the receiver's check.
	if webhooktest.Verify(secret, got[1].Header, append([]byte(nil), bodies[0]...), time.Now()) == nil {
		t.Fatal("a body from another webhook verified")
	}
	if webhooktest.Verify(secret, got[1].Header, bodies[1], time.Now().Add(10*time.Minute)) == nil {
		t.Fatal("an old timestamp verified")
	}
	for _, b := range bodies {
		if strings.Contains(string(b), "secret body") {
			t.Fatal("a message body reached the webhook")
		}
	}
}

// A webhook the application refuses is retried by asynq under the same webhook-id and body,
// with a fresh timestamp and signature.
func TestWebhookRetriedWithSameID(t *testing.T) {
	e := newEnv(t)
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210"))
	var mu sync.Mutex
	var ids []string
	var bodies []string
	answers := []int{500, 200}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if err := webhooktest.Verify(secret, r.Header, b, time.Now()); err != nil {
			t.Errorf("attempt %d: %v", len(ids), err)
		}
		ids, bodies = append(ids, r.Header.Get("webhook-id")), append(bodies, string(b))
		w.WriteHeader(answers[len(ids)-1])
	}))
	defer app.Close()
	s := e.service(t, Config{WebhookURL: app.URL, WebhookSecret: secret})
	w, err := s.NewWorker(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, _, o := e.message(t, "default")
	s.Recorded(context.Background(), "default", id, testAccount, o, false)
	c := newCallbackClient(t, s)
	if code := c.post(c.params(o.InteractionSID, "delivered"), ""); code != 200 {
		t.Fatal(code)
	}
	list, err := e.insp.ListPendingTasks("default")
	if err != nil {
		t.Fatal(err)
	}
	var task *asynq.Task
	for _, ti := range list {
		if ti.Type == TypeStatusWebhook {
			task = asynq.NewTask(ti.Type, ti.Payload)
		}
	}
	if task == nil {
		t.Fatal("no webhook task queued")
	}
	h := w.Handlers()[TypeStatusWebhook]
	if err := h.ProcessTask(context.Background(), task); err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("first attempt: %v, want an error naming the 500 (asynq retries it)", err)
	}
	if got, err := WebhookAnswers(context.Background(), e.rdb, "default", id); err != nil || len(got) != 0 {
		t.Fatalf("answers after a refusal that will be retried: %+v, %v; want none yet", got, err)
	}
	if err := h.ProcessTask(context.Background(), task); err != nil {
		t.Fatalf("retry: %v", err)
	}
	// The accepted webhook's answer is kept with the message (asynq deletes the webhook task).
	got, err := WebhookAnswers(context.Background(), e.rdb, "default", id)
	if err != nil || len(got) != 1 || got[0].Status != "delivered" || got[0].Code != 200 || !got[0].Accepted() || time.Since(got[0].At) > time.Minute {
		t.Fatalf("answers after the accepted retry: %+v, %v; want delivered 200 now", got, err)
	}
	if len(ids) != 2 || ids[0] != ids[1] || bodies[0] != bodies[1] || ids[0] != webhookID("default", id, "delivered") {
		t.Fatalf("ids %v, bodies equal %v", ids, bodies[0] == bodies[1])
	}
	if strings.Contains(fmt.Sprint(h.ProcessTask(context.Background(), asynq.NewTask(TypeStatusWebhook, []byte("{")))), app.URL) {
		t.Fatal("an error names the webhook URL")
	}
}

// A webhook's answer is kept only when it ends: accepted, or refused on its last retry; the
// entries are appended to the message's own task hash (never creating one), bounded.
func TestWebhookAnswersKept(t *testing.T) {
	bg := context.Background()
	if !webhookFinished(bg, nil) {
		t.Error("an accepted webhook is not finished")
	}
	if webhookFinished(bg, errors.New("503")) {
		t.Error("a refusal without asynq's retry count counts as the last")
	}
	e := newEnv(t)
	s := e.service(t, Config{})
	w := &Worker{s: s}
	id, _, _ := e.message(t, "default")
	body := func(taskID, status string) []byte {
		b, _ := json.Marshal(Event{Data: EventData{ID: taskID, Queue: "default", Status: status}})
		return b
	}
	ttl := e.rdb.PTTL(bg, taskKey("default", id)).Val()
	w.noteAnswer(bg, body(id, "sent"), 204)
	w.noteAnswer(bg, body(id, "undelivered"), 503) // given up after its last retry
	w.noteAnswer(bg, body("gone", "sent"), 204)    // its message is gone: nothing written
	got, err := WebhookAnswers(bg, e.rdb, "default", id)
	if err != nil || len(got) != 2 || got[0] != (WebhookAnswer{Status: "sent", Code: 204, At: got[0].At}) ||
		got[1].Status != "undelivered" || got[1].Code != 503 || got[1].Accepted() {
		t.Fatalf("answers %+v, %v", got, err)
	}
	if n := e.rdb.Exists(bg, taskKey("default", "gone")).Val(); n != 0 {
		t.Error("an answer created a task hash for a message that is gone")
	}
	if after := e.rdb.PTTL(bg, taskKey("default", id)).Val(); (ttl > 0) != (after > 0) {
		t.Errorf("the message's expiry changed: %v → %v", ttl, after)
	}
	for range 100 {
		w.noteAnswer(bg, body(id, "delivered"), 200)
	}
	if n := len(e.rdb.HGet(bg, taskKey("default", id), answersField).Val()); n > answersMax {
		t.Errorf("answers hold %d bytes, more than %d", n, answersMax)
	}
}

// Early callbacks are bounded: beyond PendingMax interactions waiting, new ones are dropped
// (still 200, counted).
func TestPendingCallbacksBounded(t *testing.T) {
	e := newEnv(t)
	s := e.service(t, Config{PendingMax: 2})
	c := newCallbackClient(t, s)
	for i := range 3 {
		if code := c.post(c.params(fmt.Sprintf("KI%032x", 0xabc0+i), "sent"), ""); code != 200 {
			t.Fatal(code)
		}
	}
	if n := counter(t, s.metrics.Callbacks.WithLabelValues(ResultPending)); n != 2 {
		t.Fatalf("pending %v, want 2", n)
	}
	if n := counter(t, s.metrics.Callbacks.WithLabelValues(ResultDropped)); n != 1 {
		t.Fatalf("dropped %v, want 1", n)
	}
	// A known interaction still gets through when the pending set is full.
	id, ki, o := e.message(t, "default")
	s.Recorded(context.Background(), "default", id, testAccount, o, false)
	if code := c.post(c.params(ki, "delivered"), ""); code != 200 {
		t.Fatal(code)
	}
	if got := e.outcome(t, "default", id); !got.Final {
		t.Fatalf("known interaction not applied while pending is full: %+v", got)
	}
}
