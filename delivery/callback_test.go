package delivery

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/internal/interaction"
)

const testToken = "test-auth-token-0123456789abcdef"

type callbackClient struct {
	t       *testing.T
	h       http.Handler
	public  string
	token   string
	account string
}

func newCallbackClient(t *testing.T, s *Service) *callbackClient {
	t.Helper()
	public := "https://proxyq.example.com"
	h, err := s.CallbackHandler(CallbackConfig{PublicURL: public, Tokens: StaticToken{AccountSID: testAccount, Token: testToken}})
	if err != nil {
		t.Fatal(err)
	}
	return &callbackClient{t: t, h: h, public: public, token: testToken, account: testAccount}
}

func (c *callbackClient) params(ki, status string) url.Values {
	return url.Values{
		"interactionSid": {ki}, "interactionAccountSid": {c.account}, "interactionType": {"Message"},
		"interactionData": {`{"body":"secret body"}`}, "outboundResourceStatus": {status},
		"outboundResourceSid": {"SM" + strings.Repeat("0", 32)}, "outboundResourceType": {"Message"},
	}
}

// post sends a callback signed with token (c.token when ""), "-" for no signature.
func (c *callbackClient) post(p url.Values, token string) int {
	if token == "" {
		token = c.token
	}
	body := p.Encode()
	req := httptest.NewRequest(http.MethodPost, CallbackPath, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if token != "-" {
		req.Header.Set("X-Twilio-Signature", Signature(token, c.public+CallbackPath, p))
	}
	rec := httptest.NewRecorder()
	c.h.ServeHTTP(rec, req)
	return rec.Code
}

func TestCallbackUpdatesTimeline(t *testing.T) {
	e := newEnv(t)
	s := e.service(t, Config{})
	c := newCallbackClient(t, s)
	id, ki, o := e.message(t, "default")
	s.Recorded(context.Background(), "default", id, testAccount, o, false)

	for _, st := range []string{"sent", "sent", "queued", "delivered", "sending", "delivered"} {
		if code := c.post(c.params(ki, st), ""); code != http.StatusOK {
			t.Fatalf("%s: %d", st, code)
		}
	}
	got := e.outcome(t, "default", id)
	if got.OutboundStatus != "delivered" || !got.Final || got.DeliveredAt == nil {
		t.Fatalf("outcome %+v", got)
	}
	if want := []string{"queued", "sent", "delivered", "sending"}; !slices.Equal(statuses(got), want) {
		t.Fatalf("history %v, want %v", statuses(got), want)
	}
	if got.Attempts != 1 || got.OutboundResourceSID != o.OutboundResourceSID || got.InteractionSID != ki {
		t.Fatalf("the worker's fields changed: %+v", got)
	}
	// Final: no longer scheduled for polling.
	if still := stillPolled(t, e.rdb, ki); len(still) != 0 {
		t.Fatal("a final message is still scheduled for a poll")
	}
}

func TestForgedCallbackChangesNothing(t *testing.T) {
	e := newEnv(t)
	s := e.service(t, Config{})
	c := newCallbackClient(t, s)
	id, ki, o := e.message(t, "default")
	s.Recorded(context.Background(), "default", id, testAccount, o, false)
	before := e.rawResult(t, "default", id)

	p := c.params(ki, "delivered")
	other := c.params(ki, "delivered")
	other.Set("interactionAccountSid", "AC00000000000000000000000000000002")
	cases := map[string]func() int{
		"no signature":    func() int { return c.post(p, "-") },
		"wrong token":     func() int { return c.post(p, "not-the-token") },
		"unknown account": func() int { return c.post(other, "") },
		"tampered body": func() int {
			req := httptest.NewRequest(http.MethodPost, CallbackPath, strings.NewReader(c.params(ki, "undelivered").Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("X-Twilio-Signature", Signature(testToken, c.public+CallbackPath, p))
			rec := httptest.NewRecorder()
			c.h.ServeHTTP(rec, req)
			return rec.Code
		},
		"signed for another URL": func() int {
			req := httptest.NewRequest(http.MethodPost, CallbackPath, strings.NewReader(p.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("X-Twilio-Signature", Signature(testToken, "https://evil.example.com"+CallbackPath, p))
			rec := httptest.NewRecorder()
			c.h.ServeHTTP(rec, req)
			return rec.Code
		},
	}
	for name, f := range cases {
		if code := f(); code != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", name, code)
		}
	}
	if after := e.rawResult(t, "default", id); after != before {
		t.Fatalf("a forged callback changed the record:\n%s\n%s", before, after)
	}
	if n, _ := e.rdb.Exists(context.Background(), interaction.EarlyList(ki)).Result(); n != 0 {
		t.Fatal("a forged callback left a pending entry")
	}
	// Limits: a huge body is refused before any signature work.
	req := httptest.NewRequest(http.MethodPost, CallbackPath, strings.NewReader("a="+strings.Repeat("x", 70<<10)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	c.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body: %d", rec.Code)
	}
	req = httptest.NewRequest(http.MethodPost, CallbackPath, strings.NewReader("interactionSid=%zz"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec = httptest.NewRecorder()
	c.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "malformed form body") {
		t.Fatalf("malformed body: %d %s", rec.Code, rec.Body)
	}
}

// TestEarlyCallbacksSurviveAnInterruptedRecord: a Recorded that read the early callbacks and
// wrote the index, then failed before applying them (Redis gone, the worker killed), leaves
// the index saying they wait; the next Recorded, whose SET NX finds the key, applies them.
func TestEarlyCallbacksSurviveAnInterruptedRecord(t *testing.T) {
	e := newEnv(t)
	s := e.service(t, Config{})
	c := newCallbackClient(t, s)
	ctx := context.Background()
	id, ki, o := e.message(t, "default")
	if code := c.post(c.params(ki, "delivered"), ""); code != http.StatusOK {
		t.Fatal(code)
	}
	if v, _ := e.rdb.Get(ctx, interaction.Key(ki)).Result(); v != earlyMarker {
		t.Fatalf("index while a callback waits: %q, want the early marker", v)
	}
	// The interrupted record: the slow path's script ran, nothing was applied.
	// Its value is what Recorded writes, so only the flag sends the next one to the slow path.
	ref, _ := json.Marshal(s.newRef("default", id, testAccount, ki))
	if err := recordScript.Run(ctx, e.rdb, []string{interaction.Key(ki), interaction.EarlyList(ki)}, string(ref), time.Hour.Milliseconds()).Err(); err != nil {
		t.Fatal(err)
	}
	// Callbacks now find the message (the flag does not hide it).
	if got, err := s.lookup(ctx, ki); err != nil || got == nil || got.TaskID != id {
		t.Fatalf("lookup during the early application: %+v, %v", got, err)
	}
	if err := s.Recorded(ctx, "default", id, testAccount, o, false); err != nil {
		t.Fatal(err)
	}
	if got := e.outcome(t, "default", id); got.OutboundStatus != "delivered" || !got.Final {
		t.Fatalf("the early callback was lost: %+v", got)
	}
	if n, _ := e.rdb.Exists(ctx, interaction.EarlyList(ki)).Result(); n != 0 {
		t.Fatal("pending callbacks left behind")
	}
	if v, _ := e.rdb.Get(ctx, interaction.Key(ki)).Result(); strings.Contains(v, `"e"`) {
		t.Fatalf("index still says callbacks wait: %s", v)
	}
}

func TestEarlyCallbacksAppliedAtRecord(t *testing.T) {
	e := newEnv(t)
	s := e.service(t, Config{})
	c := newCallbackClient(t, s)
	id, ki, o := e.message(t, "default")
	// The callbacks arrive before the worker recorded the send (its POST's answer is late, or
	// it answered 500 and reconciliation adopts the interaction later): 200, kept.
	for _, st := range []string{"sent", "delivered", "sent"} {
		if code := c.post(c.params(ki, st), ""); code != http.StatusOK {
			t.Fatalf("%s: %d", st, code)
		}
	}
	if got := e.outcome(t, "default", id); got.OutboundStatus != "queued" || len(got.StatusHistory) != 0 {
		t.Fatalf("applied before the record: %+v", got)
	}
	s.Recorded(context.Background(), "default", id, testAccount, o, false)
	got := e.outcome(t, "default", id)
	if got.OutboundStatus != "delivered" || !got.Final || !slices.Equal(statuses(got), []string{"queued", "sent", "delivered"}) {
		t.Fatalf("after record: %+v", got)
	}
	if n, _ := e.rdb.Exists(context.Background(), interaction.EarlyList(ki)).Result(); n != 0 {
		t.Fatal("pending callbacks left behind")
	}
	if n, _ := e.rdb.ZCard(context.Background(), earlyKey).Result(); n != 0 {
		t.Fatal("pending expiry entry left behind")
	}
}

// A callback that comes while its send is being recorded (Twilio posts the first one while the
// create's answer is on its way to the worker) finds the record on a second look: it is applied
// at once, and never kept as early.
func TestCallbackDuringTheRecordFindsItOnASecondLook(t *testing.T) {
	e := newEnv(t)
	s := e.service(t, Config{})
	s.indexWaits = []time.Duration{50 * time.Millisecond, 500 * time.Millisecond}
	c := newCallbackClient(t, s)
	id, ki, o := e.message(t, "default")
	recorded := make(chan error, 1)
	time.AfterFunc(20*time.Millisecond, func() { // after the first look, well before the last
		recorded <- s.Recorded(context.Background(), "default", id, testAccount, o, false)
	})
	res, err := s.HandleCallback(context.Background(), c.params(ki, "sent"))
	if err != nil || res != ResultAccepted {
		t.Fatalf("callback during the record: %q, %v; want %q", res, err, ResultAccepted)
	}
	if err := <-recorded; err != nil {
		t.Fatal(err)
	}
	if got := e.outcome(t, "default", id); got.OutboundStatus != "sent" {
		t.Fatalf("outcome %+v, want sent", got)
	}
	if n, _ := e.rdb.Exists(context.Background(), interaction.EarlyList(ki)).Result(); n != 0 {
		t.Error("kept as early")
	}
	if n, _ := e.rdb.ZCard(context.Background(), earlyKey).Result(); n != 0 {
		t.Error("scheduled as early")
	}
	// Never recorded: kept as early once the looks are over.
	s.indexWaits = []time.Duration{time.Millisecond}
	if res, err := s.HandleCallback(context.Background(), c.params("KI"+strings.Repeat("e", 32), "sent")); err != nil || res != ResultPending {
		t.Fatalf("callback never recorded: %q, %v; want %q", res, err, ResultPending)
	}
}

func TestUnknownInteractionDroppedAfterTTL(t *testing.T) {
	e := newEnv(t)
	s := e.service(t, Config{PendingTTL: time.Minute})
	c := newCallbackClient(t, s)
	if code := c.post(c.params("KI"+strings.Repeat("f", 32), "delivered"), ""); code != http.StatusOK {
		t.Fatalf("unknown interaction: %d, want 200 (Twilio must not retry for ever)", code)
	}
	if code := c.post(c.params("KI"+strings.Repeat("f", 32), "sent"), ""); code != http.StatusOK {
		t.Fatal(code)
	}
	w, err := s.NewWorker(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.PollOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := counter(t, s.metrics.Callbacks.WithLabelValues(ResultUnknownInteraction)); n != 0 {
		t.Fatalf("dropped before the TTL: %v", n)
	}
	s.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	if _, err := w.PollOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := counter(t, s.metrics.Callbacks.WithLabelValues(ResultUnknownInteraction)); n != 2 {
		t.Fatalf("dropped callbacks counted %v, want 2", n)
	}
	if n, _ := e.rdb.Exists(context.Background(), interaction.EarlyList("KI"+strings.Repeat("f", 32))).Result(); n != 0 {
		t.Fatal("expired pending callbacks kept")
	}
	if got := counter(t, s.metrics.Callbacks.WithLabelValues(ResultPending)); got != 2 {
		t.Fatalf("pending counted %v", got)
	}
}

// Two serve replicas (two Services, two Redis clients) receive every callback of many
// messages at once, duplicated and shuffled: each message ends delivered with each status
// once, and each status change is announced once.
func TestReplicasRaceAtomically(t *testing.T) {
	e := newEnv(t)
	cfg := Config{WebhookURL: "http://127.0.0.1:1/hooks"}
	a, b := e.service(t, cfg), e.service(t, cfg)
	ca, cb := newCallbackClient(t, a), newCallbackClient(t, b)
	type msg struct{ id, ki string }
	var msgs []msg
	for range 20 {
		id, ki, o := e.message(t, "default")
		a.Recorded(context.Background(), "default", id, testAccount, o, false)
		msgs = append(msgs, msg{id, ki})
	}
	var wg sync.WaitGroup
	for _, m := range msgs {
		for _, c := range []*callbackClient{ca, cb, ca, cb} {
			for _, st := range []string{"delivered", "sent", "sending", "sent", "delivered"} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if code := c.post(c.params(m.ki, st), ""); code != http.StatusOK {
						t.Errorf("%s %s: %d", m.ki, st, code)
					}
				}()
			}
		}
	}
	wg.Wait()
	for _, m := range msgs {
		o := e.outcome(t, "default", m.id)
		h := statuses(o)
		slices.Sort(h)
		if o.OutboundStatus != "delivered" || !o.Final || !slices.Equal(h, []string{"delivered", "queued", "sending", "sent"}) {
			t.Fatalf("%s: %s %v", m.id, o.OutboundStatus, statuses(o))
		}
	}
	accepted := counter(t, a.metrics.Callbacks.WithLabelValues(ResultAccepted)) + counter(t, b.metrics.Callbacks.WithLabelValues(ResultAccepted))
	reached := func(status string) float64 {
		return counter(t, a.metrics.Statuses.WithLabelValues(status, "none")) + counter(t, b.metrics.Statuses.WithLabelValues(status, "none"))
	}
	delivered, sent, sending := reached("delivered"), reached("sent"), reached("sending")
	if delivered != 20 {
		t.Fatalf("delivered counted %v times for 20 messages", delivered)
	}
	// A message advances at most once to each status; which of sending and sent it passes
	// through depends on the order the callbacks won the race (queued → sending is an advance
	// too, when sending comes first).
	if sent > 20 || sending > 20 {
		t.Fatalf("advances to sent %v, to sending %v: want at most one each per message (20)", sent, sending)
	}
	if accepted != delivered+sent+sending {
		t.Fatalf("accepted %v: want one per advance (%v delivered + %v sent + %v sending)", accepted, delivered, sent, sending)
	}
	// One webhook per status change: a delivered one per message, whatever the race.
	hooks, err := e.insp.ListPendingTasks("default", asynq.PageSize(1000))
	if err != nil {
		t.Fatal(err)
	}
	perMsg := map[string]int{}
	for _, h := range hooks {
		if h.Type == TypeStatusWebhook {
			perMsg[h.ID]++
		}
	}
	ids := map[string]bool{}
	for _, m := range msgs {
		ids[webhookID("default", m.id, "delivered")] = true
	}
	for id := range ids {
		if perMsg[id] != 1 {
			t.Fatalf("webhook %s enqueued %d times", id, perMsg[id])
		}
	}
}

// A send whose POST answered 500 is reconciled later: by then Twilio's callbacks have come
// (kept pending) and the listed interaction already says delivered. The record ends final,
// with the history in time order.
func TestReconciledSendWithEarlyCallbacks(t *testing.T) {
	e := newEnv(t)
	s := e.service(t, Config{})
	c := newCallbackClient(t, s)
	id, ki, o := e.message(t, "default")
	for _, st := range []string{"queued", "sent", "delivered"} {
		if code := c.post(c.params(ki, st), ""); code != http.StatusOK {
			t.Fatal(code)
		}
		time.Sleep(2 * time.Millisecond)
	}
	o.OutboundStatus, o.Reconciled, o.RecordedAt = "delivered", true, time.Now().UTC()
	raw, _ := json.Marshal(o)
	if err := e.rdb.HSet(context.Background(), taskKey("default", id), "result", raw).Err(); err != nil {
		t.Fatal(err)
	}
	s.Recorded(context.Background(), "default", id, testAccount, o, false)
	got := e.outcome(t, "default", id)
	if !got.Final || got.OutboundStatus != "delivered" || got.DeliveredAt == nil || !got.Reconciled {
		t.Fatalf("%+v", got)
	}
	if h := statuses(got); !slices.Equal(h, []string{"queued", "sent", "delivered"}) {
		t.Fatalf("history %v", h)
	}
	if n := counter(t, s.metrics.Statuses.WithLabelValues("delivered", "none")); n != 1 {
		t.Fatalf("delivered counted %v", n)
	}
	// Final at record: never scheduled for polling.
	if _, err := e.rdb.ZScore(context.Background(), pollKey, ki).Result(); err == nil {
		t.Fatal("a final message was scheduled for a poll")
	}
}

// Callbacks of interactions proxyq never creates — a voice interaction, a participant's
// inbound message that Proxy relays — are answered 200 and counted, but never take room in
// the early set: they would wait PendingTTL for a send that never comes, and enough of them
// fill the set so that proxyq's own early callbacks are dropped. One of our messages still
// takes its callbacks, early or not.
func TestCallbacksThatCannotMatchAreNotKept(t *testing.T) {
	e := newEnv(t)
	s := e.service(t, Config{})
	c := newCallbackClient(t, s)
	ctx := context.Background()

	voice := c.params("KI"+strings.Repeat("7", 32), "completed")
	voice.Set("interactionType", "Voice")
	relay := c.params("KI"+strings.Repeat("8", 32), "delivered")
	relay.Set("inboundResourceSid", "SM"+strings.Repeat("9", 32))
	relay.Set("inboundResourceStatus", "received")
	for name, p := range map[string]url.Values{"voice": voice, "inbound relay": relay} {
		if code := c.post(p, ""); code != http.StatusOK {
			t.Fatalf("%s: %d, want 200", name, code)
		}
	}
	if n := counter(t, s.metrics.Callbacks.WithLabelValues(ResultNotOurs)); n != 2 {
		t.Errorf("not_ours callbacks = %v, want 2", n)
	}
	if n, _ := e.rdb.ZCard(ctx, earlyKey).Result(); n != 0 {
		t.Fatalf("%d interactions in the early set, want 0", n)
	}
	for _, ki := range []string{voice.Get("interactionSid"), relay.Get("interactionSid")} {
		if n, _ := e.rdb.Exists(ctx, interaction.EarlyList(ki)).Result(); n != 0 {
			t.Errorf("early callbacks of %s kept", ki)
		}
	}

	// Ours: the early one waits, and is applied when the send is recorded.
	id, ki, o := e.message(t, "default")
	if code := c.post(c.params(ki, "sent"), ""); code != http.StatusOK {
		t.Fatal(code)
	}
	if n, _ := e.rdb.ZCard(ctx, earlyKey).Result(); n != 1 {
		t.Fatalf("%d interactions in the early set, want 1 (ours)", n)
	}
	if err := s.Recorded(ctx, "default", id, testAccount, o, false); err != nil {
		t.Fatal(err)
	}
	if got := e.outcome(t, "default", id); got.OutboundStatus != "sent" {
		t.Fatalf("our early callback was not applied: %+v", got)
	}
}

// TestIndexOfAnEarlierVersion: index entries written before the index held only queue, task
// and account (they also named the SM…, the send time, a conversation) still route callbacks.
func TestIndexOfAnEarlierVersion(t *testing.T) {
	e := newEnv(t)
	s := e.service(t, Config{})
	c := newCallbackClient(t, s)
	ctx := context.Background()
	id, ki, o := e.message(t, "default")
	old := `{"q":"default","id":"` + id + `","a":"` + testAccount + `","m":"` + o.OutboundResourceSID + `","t":1765000000,"c":"CH0","s":"IS0"}`
	if err := e.rdb.Set(ctx, interaction.Key(ki), old, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if code := c.post(c.params(ki, "delivered"), ""); code != http.StatusOK {
		t.Fatal(code)
	}
	if got := e.outcome(t, "default", id); got.OutboundStatus != "delivered" || !got.Final {
		t.Fatalf("not applied through an older index entry: %+v", got)
	}
}

// commandCounter counts the commands a client sends, one by one or in pipelines (a script
// counts as one: its EVALSHA).
// commandCounter records the names of the commands a client sends.
type commandCounter struct {
	mu    sync.Mutex
	names []string
}

// take returns the commands sent since the last take.
func (c *commandCounter) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := c.names
	c.names = nil
	return names
}

func (c *commandCounter) add(names ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.names = append(c.names, names...)
}

// countedService is a service on a client of its own whose commands count counts.
func (e *env) countedService(t *testing.T) (*Service, *commandCounter) {
	t.Helper()
	rdb := e.db.Client(t)
	count := &commandCounter{}
	rdb.AddHook(count)
	s, err := New(Config{}, rdb, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, count
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.add(cmd.Name())
		return next(ctx, cmd)
	}
}
func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			c.add(cmd.Name())
		}
		return next(ctx, cmds)
	}
}

// A message's later callbacks cost one command each (the compare-and-set), not the index's
// GET, the record's HGET and the compare-and-set: the endpoint remembers where the message is
// and its record as last written. A duplicate costs nothing.
func TestCallbacksOfARememberedMessageSkipTheReads(t *testing.T) {
	e := newEnv(t)
	s, count := e.countedService(t)
	s.finals.linger = time.Hour // the poll set's removal is another test's
	c := newCallbackClient(t, s)
	recorder := e.service(t, Config{}) // the worker
	record := func() (id, ki string) {
		id, ki, o := e.message(t, "default")
		if err := recorder.Recorded(context.Background(), "default", id, testAccount, o, false); err != nil {
			t.Fatal(err)
		}
		return id, ki
	}
	// A first message loads the scripts and opens the connections.
	_, warm := record()
	for _, st := range []string{"queued", "sent", "delivered"} {
		c.post(c.params(warm, st), "")
	}
	id, ki := record()
	for _, step := range []struct {
		status string
		want   []string
	}{
		{"queued", []string{"get", "hget"}}, // first sight: where, and the record (nothing to write)
		{"sent", []string{"evalsha"}},
		{"sent", nil},
		{"delivered", []string{"evalsha"}}, // final: off the poll set later, with others (TestFinalMessagesLeaveThePollSetTogether)
	} {
		count.take()
		if code := c.post(c.params(ki, step.status), ""); code != http.StatusOK {
			t.Fatalf("%s: %d", step.status, code)
		}
		if got := count.take(); !slices.Equal(got, step.want) {
			t.Errorf("%s: commands %v, want %v", step.status, got, step.want)
		}
	}
	if got := e.outcome(t, "default", id); got.OutboundStatus != "delivered" || !got.Final ||
		!slices.Equal(statuses(got), []string{"queued", "sent", "delivered"}) {
		t.Fatalf("outcome %+v, history %v", got, statuses(got))
	}
}

// A remembered record that another replica has changed since is folded again onto the current
// one, which the compare-and-set hands back: nothing the other replica wrote is lost, and an
// update the current record already has is not written or announced twice.
func TestRememberedRecordChangedByAnotherReplica(t *testing.T) {
	e := newEnv(t)
	a, b := e.service(t, Config{}), e.service(t, Config{})
	ca, cb := newCallbackClient(t, a), newCallbackClient(t, b)
	id, ki, o := e.message(t, "default")
	if err := a.Recorded(context.Background(), "default", id, testAccount, o, false); err != nil {
		t.Fatal(err)
	}
	post := func(c *callbackClient, status string) {
		t.Helper()
		if code := c.post(c.params(ki, status), ""); code != http.StatusOK {
			t.Fatalf("%s: %d", status, code)
		}
	}
	post(ca, "sending") // a remembers the record with sending
	post(cb, "sent")    // b moves it on
	post(ca, "sending") // a's copy has it: nothing to write
	post(ca, "sent")    // a's copy lacks it: folded onto b's record, which has it: nothing to write
	if got := e.outcome(t, "default", id); !slices.Equal(statuses(got), []string{"queued", "sending", "sent"}) || got.OutboundStatus != "sent" {
		t.Fatalf("after a's stale duplicates: status %s, history %v", got.OutboundStatus, statuses(got))
	}
	post(cb, "delivered")
	post(ca, "delivered") // a's copy lacks it: folded onto b's final record, which has it
	got := e.outcome(t, "default", id)
	if got.OutboundStatus != "delivered" || !got.Final || !slices.Equal(statuses(got), []string{"queued", "sending", "sent", "delivered"}) {
		t.Fatalf("status %s final %v, history %v; want delivered, final, with b's statuses kept", got.OutboundStatus, got.Final, statuses(got))
	}
}

// The send ledger's claim is the index (package internal/interaction): after a record whose
// claim wrote it and found nothing waiting (indexed), tracking is the poll's entry alone, and
// callbacks find the message.
func TestRecordedAfterTheClaimWritesOnlyThePoll(t *testing.T) {
	e := newEnv(t)
	s, count := e.countedService(t)
	record := func() (string, string) {
		id, ki, o := e.message(t, "default")
		claim := interaction.Ref{Queue: "default", TaskID: id, AccountSID: testAccount}.Value()
		if err := e.rdb.Set(context.Background(), interaction.Key(ki), claim, time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		count.take()
		if err := s.Recorded(context.Background(), "default", id, testAccount, o, true); err != nil {
			t.Fatal(err)
		}
		return id, ki
	}
	record() // opens the connections
	id, ki := record()
	if got := count.take(); !slices.Equal(got, []string{"zadd"}) {
		t.Errorf("commands %v, want [zadd]: the claim is the index", got)
	}
	c := newCallbackClient(t, s)
	if code := c.post(c.params(ki, "delivered"), ""); code != http.StatusOK {
		t.Fatalf("callback: %d", code)
	}
	if got := e.outcome(t, "default", id); got.OutboundStatus != "delivered" || !got.Final {
		t.Fatalf("outcome %+v: the callback did not find the message by the claim", got)
	}
}

// On a Redis Cluster the ledger claims before it records ("~" + the message): callbacks wait as
// if nothing were recorded, without taking the claim's place, and the hook then applies them,
// leaves the key saying the message, and never shortens the claim's life.
func TestCallbacksWaitBehindAClaimNotYetRecorded(t *testing.T) {
	e := newEnv(t)
	s := e.service(t, Config{})
	id, ki, o := e.message(t, "default")
	ctx := context.Background()
	ref := interaction.Ref{Queue: "default", TaskID: id, AccountSID: testAccount}.Value()
	const claimLife = 100 * time.Hour // longer than IndexTTL (72h)
	if err := e.rdb.Set(ctx, interaction.Key(ki), interaction.Waiting+ref, claimLife).Err(); err != nil {
		t.Fatal(err)
	}
	c := newCallbackClient(t, s)
	if code := c.post(c.params(ki, "sent"), ""); code != http.StatusOK {
		t.Fatalf("callback: %d", code)
	}
	if v := e.rdb.Get(ctx, interaction.Key(ki)).Val(); v != interaction.Waiting+ref {
		t.Fatalf("after an early callback the key says %q; the claim must stay", v)
	}
	if got := e.outcome(t, "default", id); got.OutboundStatus != "queued" {
		t.Fatalf("outcome %+v: applied before the record", got)
	}
	if err := s.Recorded(ctx, "default", id, testAccount, o, false); err != nil {
		t.Fatal(err)
	}
	if v := e.rdb.Get(ctx, interaction.Key(ki)).Val(); v != ref {
		t.Fatalf("key %q, want %q", v, ref)
	}
	if ttl := e.rdb.PTTL(ctx, interaction.Key(ki)).Val(); ttl < claimLife-time.Minute {
		t.Fatalf("key TTL %v: the claim's %v was shortened", ttl, claimLife)
	}
	if got := e.outcome(t, "default", id); got.OutboundStatus != "sent" {
		t.Fatalf("outcome %+v: the waiting callback was not applied", got)
	}
}

// Messages that turn final within the linger leave the poll set in one ZREM, not one each.
func TestFinalMessagesLeaveThePollSetTogether(t *testing.T) {
	e := newEnv(t)
	s, count := e.countedService(t)
	s.finals.linger = 300 * time.Millisecond // room for the callbacks below, even under -race
	c := newCallbackClient(t, s)
	var kis []string
	for range 5 {
		id, ki, o := e.message(t, "default")
		if err := s.Recorded(context.Background(), "default", id, testAccount, o, false); err != nil {
			t.Fatal(err)
		}
		kis = append(kis, ki)
	}
	count.take()
	for _, ki := range kis {
		if code := c.post(c.params(ki, "delivered"), ""); code != http.StatusOK {
			t.Fatalf("callback: %d", code)
		}
	}
	if still := stillPolled(t, e.rdb, kis...); len(still) != 0 {
		t.Fatalf("final but still scheduled for a poll: %v", still)
	}
	zrems := 0
	for _, name := range count.take() {
		if name == "zrem" {
			zrems++
		}
	}
	if zrems != 1 {
		t.Errorf("%d ZREMs took 5 final messages off the poll set, want 1", zrems)
	}
}

// A final message whose removal was lost (the endpoint stopped within the linger) is taken off
// the poll set by the poller when it comes due, without asking Twilio.
func TestPollerUnschedulesAFinalMessageWhoseRemovalWasLost(t *testing.T) {
	e := newEnv(t)
	s := e.service(t, Config{PollAfter: time.Minute, PollEvery: time.Minute, MaxAge: time.Hour})
	s.finals.linger = time.Hour // the process "stops" before its removals go out
	w, f, _ := pollWorker(t, s, nil, 1000)
	id, ki, o := e.message(t, "default")
	if err := s.Recorded(context.Background(), "default", id, testAccount, o, false); err != nil {
		t.Fatal(err)
	}
	c := newCallbackClient(t, s)
	if code := c.post(c.params(ki, "delivered"), ""); code != http.StatusOK {
		t.Fatalf("callback: %d", code)
	}
	if _, err := e.rdb.ZScore(context.Background(), pollKey, ki).Result(); err != nil {
		t.Fatalf("the removal went out at once (%v): this test proves nothing", err)
	}
	clock := time.Now().Add(2 * time.Minute)
	s.now = func() time.Time { return clock }
	if _, err := w.PollOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f.calls.Load() != 0 {
		t.Errorf("asked Twilio %d times about a final message", f.calls.Load())
	}
	if n, _ := e.rdb.ZCard(context.Background(), pollKey).Result(); n != 0 {
		t.Errorf("%d still scheduled, want none", n)
	}
}
