package httpapi

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap/zaptest"

	"github.com/proxyq/proxyq/tasks"
)

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	fixed := time.Now()
	e.srv.now = func() time.Time { return fixed }
	sendAt := fixed.Add(2 * time.Hour).UTC().Truncate(time.Second)
	first := map[string]any{
		"body": "Your driver is here", "media_url": []string{"https://example.com/1.png", "https://example.com/2.png"},
		"send_before": sendAt.Add(time.Hour).Format(time.RFC3339), "send_at": sendAt.Format(time.RFC3339), "queue": "critical",
	}
	wantStatus(t, e.do(post("/v1/message-interactions", msgJSON(t, first), "ride-1")), 202)

	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for kk, vv := range first {
			m[kk] = vv
		}
		m[k] = v
		return m
	}
	same := []struct {
		name string
		body string
	}{
		{"identical", msgJSON(t, first)},
		{"keys reordered, escapes and spaces", `{ "queue":"critical", "send_at":"` + sendAt.Format(time.RFC3339) + `", "send_before":"` +
			sendAt.Add(time.Hour).In(time.FixedZone("x", 3600)).Format(time.RFC3339) + `", "media_url":["https://example.com/1.png","https://example.com/2.png"],` +
			`"body":"Your driver is \u0068ere", "participant_sid":"` + kp + `","session_sid":"` + kc + `","service_sid":"` + ks + `"}`},
		{"send_at with sub-second part", msgJSON(t, with("send_at", sendAt.Add(300*time.Millisecond).Format(time.RFC3339Nano)))},
	}
	for _, tt := range same {
		t.Run("same/"+tt.name, func(t *testing.T) {
			w := e.do(post("/v1/message-interactions", tt.body, "ride-1"))
			wantStatus(t, w, 200)
			if w.Header().Get("Idempotent-Replayed") != "true" || w.Header().Get("Location") != "/v1/message-interactions/ride-1" {
				t.Fatalf("headers %v", w.Header())
			}
			r := decodeInto[Replayed](t, w)
			if r.ID != "ride-1" || r.Queue != "critical" || r.State != "scheduled" || r.Links.Self != "/v1/message-interactions/ride-1" ||
				r.NextProcessAt == nil || !r.NextProcessAt.Equal(sendAt) {
				t.Fatalf("replay %+v %+v", r.Status, r.Links)
			}
		})
	}

	different := []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"body", with("body", "Your driver is HERE"), "body"},
		{"body whitespace", with("body", "Your driver is here "), "body"},
		{"media order", with("media_url", []string{"https://example.com/2.png", "https://example.com/1.png"}), "media_url"},
		{"media dropped", with("media_url", nil), "media_url"},
		{"participant", with("participant_sid", "KPffffffffffffffffffffffffffffffff"), "participant_sid"},
		{"service", with("service_sid", "KSffffffffffffffffffffffffffffffff"), "service_sid"},
		{"session", with("session_sid", "KCffffffffffffffffffffffffffffffff"), "session_sid"},
		{"deadline", with("send_before", sendAt.Add(2*time.Hour).Format(time.RFC3339)), "send_before"},
		{"no deadline", with("send_before", nil), "send_before"},
		{"queue", with("queue", "low"), "queue"},
		{"default queue", with("queue", nil), "queue"},
		{"send_at", with("send_at", sendAt.Add(time.Second).Format(time.RFC3339)), "send_at"},
		{"no send_at", with("send_at", nil), "send_at"},
	}
	for _, tt := range different {
		t.Run("different/"+tt.name, func(t *testing.T) {
			w := e.do(post("/v1/message-interactions", msgJSON(t, tt.body), "ride-1"))
			p := wantProblem(t, w, 409, ProblemKeyConflict)
			if p.ID != "ride-1" || p.State != "scheduled" || !hasFieldError(p, tt.field, "differs") {
				t.Fatalf("problem %+v", p)
			}
		})
	}
	if n := e.countTasks(); n != 1 {
		t.Fatalf("%d tasks, want 1", n)
	}

	t.Run("due schedule matches past or absent send_at", func(t *testing.T) {
		// A message sent at once, retried later with the send_at now in the past.
		past := fixed.Add(-time.Minute).UTC().Format(time.RFC3339)
		wantStatus(t, e.do(post("/v1/message-interactions", msgJSON(t, map[string]any{"send_at": past}), "due-1")), 202)
		wantStatus(t, e.do(post("/v1/message-interactions", msgJSON(t, nil), "due-1")), 200)
		wantStatus(t, e.do(post("/v1/message-interactions", msgJSON(t, map[string]any{"send_at": past}), "due-1")), 200)
		future := fixed.Add(time.Hour).UTC().Format(time.RFC3339)
		wantProblem(t, e.do(post("/v1/message-interactions", msgJSON(t, map[string]any{"send_at": future}), "due-1")), 409, ProblemKeyConflict)
	})
	t.Run("schedule that became due", func(t *testing.T) {
		// Scheduled for T; asked again once T has passed (the clock moves, the task has not
		// been forwarded yet): the retry's send_at is past and the schedule is due.
		soon := fixed.Add(30 * time.Second).UTC().Truncate(time.Second)
		wantStatus(t, e.do(post("/v1/message-interactions", msgJSON(t, map[string]any{"send_at": soon.Format(time.RFC3339)}), "soon-1")), 202)
		later := soon.Add(time.Minute)
		e.srv.now = func() time.Time { return later }
		defer func() { e.srv.now = func() time.Time { return fixed } }()
		wantStatus(t, e.do(post("/v1/message-interactions", msgJSON(t, map[string]any{"send_at": soon.Format(time.RFC3339)}), "soon-1")), 200)
	})
}

// TestIdempotencyRace sends many POSTs with one key at once: exactly one creates the message.
func TestIdempotencyRace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 50
	body := msgJSON(t, nil)
	codes := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			codes[i] = do(t, e.srv, post("/v1/message-interactions", body, "race-key")).Code
		}()
	}
	close(start)
	wg.Wait()
	count := map[int]int{}
	for _, c := range codes {
		count[c]++
	}
	if count[202] != 1 || count[200] != n-1 {
		t.Fatalf("status counts %v, want one 202 and %d 200", count, n-1)
	}
	if got := e.countTasks(); got != 1 {
		t.Fatalf("%d tasks in Redis, want 1", got)
	}
}

// TestIdempotencyRaceAcrossQueues: asynq's task IDs are unique per queue only; the API must
// still never create two messages for one key when retries name different queues.
func TestIdempotencyRaceAcrossQueues(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 30
	queues := []string{"default", "low", "critical"}
	codes := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		body := msgJSON(t, map[string]any{"queue": queues[i%len(queues)]})
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			codes[i] = do(t, e.srv, post("/v1/message-interactions", body, "xq-key")).Code
		}()
	}
	close(start)
	wg.Wait()
	count := map[int]int{}
	for _, c := range codes {
		count[c]++
	}
	if count[202] != 1 || count[202]+count[200]+count[409] != n {
		t.Fatalf("status counts %v, want one 202 and the rest 200 or 409", count)
	}
	if got := e.countTasks(); got != 1 {
		t.Fatalf("%d tasks in Redis, want 1", got)
	}
}

func TestKeyLocks(t *testing.T) {
	t.Parallel()
	var k keyLocks
	unlock := k.lock("b", "a", "b")
	done := make(chan struct{})
	go func() {
		u := k.lock("a")
		u()
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("a second lock on a held key did not wait")
	default:
	}
	unlock()
	<-done
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.m) != 0 {
		t.Fatalf("lock table keeps %d entries after unlock", len(k.m))
	}
}

// TestIdempotencyTwoReplicasAcrossQueues: two servers (two replicas: separate key locks and
// connections) receive one key for two queues at the same instant, 50 times; the key's
// reservation in Redis lets one message through each time.
func TestIdempotencyTwoReplicasAcrossQueues(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	enq := tasks.NewEnqueuer(e.db.ConnOpt())
	insp := asynq.NewInspector(e.db.ConnOpt())
	t.Cleanup(func() { _ = enq.Close(); _ = insp.Close() })
	other, err := New(Config{Tokens: []string{tokenA}}, enq, insp, nil, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	for round := range 50 {
		key := fmt.Sprintf("replicas-%d", round)
		var codes [2]int
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, srv := range []*Server{e.srv, other} {
			body := msgJSON(t, map[string]any{"queue": []string{"default", "low"}[i]})
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				codes[i] = do(t, srv, post("/v1/message-interactions", body, key)).Code
			}()
		}
		close(start)
		wg.Wait()
		// One 202; the other request names a different queue, so it is a 409.
		if !(codes == [2]int{202, 409} || codes == [2]int{409, 202}) {
			t.Fatalf("round %d: status codes %v, want one 202 and one 409", round, codes)
		}
	}
	if n := e.countTasks(); n != 50 {
		t.Fatalf("%d tasks, want 50", n)
	}
}
