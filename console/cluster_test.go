//go:build cluster

package console_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/console"
	"github.com/proxyq/proxyq/delivery"
	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/worker"
)

// hookedOpt is asynq's cluster option whose clients carry the command log, so that the
// enqueuer, the worker and the console share what the cluster refuses.
type hookedOpt struct {
	asynq.RedisClusterClientOpt
	log *redistest.SlotLog
}

func (o hookedOpt) MakeRedisClient() any {
	c := o.RedisClusterClientOpt.MakeRedisClient().(*redis.ClusterClient)
	o.log.Attach(c)
	return c
}

// The console on a real Redis Cluster (three masters, three replicas): messages on two queues
// (two slots), in one session with two participants and one participant the fake does not know,
// sent by a worker against the Proxy fake with the delivery callbacks. Every lookup the console
// makes (idempotency key, KI, SM, KP, KC), the message page, the top errors and the audit log
// work, and no command or script of the enqueuer, worker, delivery or console touches keys of
// more than one slot. Run with `make test-redis-ha`.
func TestClusterConsole(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := redistest.StartCluster(t)
	log := redistest.NewSlotLog()
	opt := hookedOpt{RedisClusterClientOpt: c.ConnOpt(), log: log}
	rdb := opt.MakeRedisClient().(*redis.ClusterClient)
	t.Cleanup(func() { _ = rdb.Close() })
	insp := asynq.NewInspectorFromRedisClient(rdb)

	const otherQueue = "eu"
	const driverKey = "trip-77-eta-driver"
	slotOf := func(k string) int64 {
		s, err := rdb.ClusterKeySlot(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if slotOf("asynq:{default}:t:x") == slotOf("asynq:{"+otherQueue+"}:t:x") {
		t.Fatalf("queues default and %s share a slot: the test would not span slots", otherQueue)
	}

	// Delivery: callbacks from the fake reach the outcome records.
	dsvc, err := delivery.New(delivery.Config{AccountSID: accountSID, PollOff: true}, rdb, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	cbSrv := httptest.NewServer(mux)
	t.Cleanup(cbSrv.Close)
	cb, err := dsvc.CallbackHandler(delivery.CallbackConfig{PublicURL: cbSrv.URL,
		Tokens: delivery.StaticToken{AccountSID: accountSID, Token: authToken}})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("POST "+delivery.CallbackPath, cb)

	fake := proxytest.NewServer(proxytest.Config{Callbacks: proxytest.CallbackConfig{
		URL: cbSrv.URL + delivery.CallbackPath, AuthToken: authToken, Delay: 30 * time.Millisecond}})
	t.Cleanup(fake.Close)
	api, err := proxyclient.New(proxyclient.Config{AccountSID: accountSID, AuthToken: authToken, BaseURL: fake.URL})
	if err != nil {
		t.Fatal(err)
	}
	dwork, err := dsvc.NewWorker(delivery.ClientFetcher(api), noLimit{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(worker.Config{Concurrency: 4, HTTPTimeout: 5 * time.Second, ShutdownTimeout: 10 * time.Second,
		Queues: map[string]int{tasks.DefaultQueue: 1, otherQueue: 1}},
		worker.Deps{Redis: opt, API: api, Delivery: dsvc, Tasks: dwork.Handlers()})
	if err != nil {
		t.Fatal(err)
	}
	if err := fake.Fake.ScriptDelivery(proxytest.DeliveryPlan{Final: proxytest.StatusUndelivered, ErrorCode: 30003}, 1); err != nil {
		t.Fatal(err)
	}
	if err := fake.Fake.ScriptDelivery(proxytest.DeliveryPlan{Final: proxytest.StatusDelivered}, 1); err != nil {
		t.Fatal(err)
	}
	fake.Fake.MarkParticipantUnknown(goneKP)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Shutdown)

	// One after the other, so that their enqueue times (and the fake's scripts) are in order.
	enq := tasks.NewEnqueuer(opt)
	t.Cleanup(func() { _ = enq.Close() })
	msg := func(kp, body string) tasks.Payload {
		return tasks.Payload{ServiceSID: serviceSID, SessionSID: sessionSID, ParticipantSID: kp, Body: body}
	}
	if _, err := enq.Enqueue(ctx, msg(riderKP, riderBody), tasks.IdempotencyKey(riderKey), tasks.Via("http")); err != nil {
		t.Fatal(err)
	}
	waitState(t, ctx, insp, riderKey, "completed")
	if _, err := enq.Enqueue(ctx, msg(driverKP, "On my way"), tasks.IdempotencyKey(driverKey), tasks.Queue(otherQueue)); err != nil {
		t.Fatal(err)
	}
	waitState(t, ctx, insp, driverKey, "completed")
	var archived []string
	for i, q := range []string{otherQueue, tasks.DefaultQueue} {
		res, err := enq.Enqueue(ctx, msg(goneKP, "Are you still there?"+strings.Repeat("!", i)), tasks.Queue(q))
		if err != nil {
			t.Fatal(err)
		}
		waitState(t, ctx, insp, res.TaskID, "archived")
		archived = append(archived, res.TaskID)
	}
	outcome := func(id string) *tasks.Outcome {
		t.Helper()
		st, err := tasks.Lookup(ctx, insp, id)
		if err != nil || st.Outcome == nil {
			t.Fatalf("%s: no outcome (%v)", id, err)
		}
		return st.Outcome
	}
	waitFor(t, ctx, "the rider's delivery error and the driver's delivery", func() bool {
		r, d := outcome(riderKey), outcome(driverKey)
		return r.DeliveryErrorCode == 30003 && d.OutboundStatus == delivery.StatusDelivered
	})
	rider, driver := outcome(riderKey), outcome(driverKey)
	if rider.InteractionSID == "" || rider.OutboundResourceSID == "" || driver.OutboundResourceSID == "" {
		t.Fatalf("sent messages without SIDs: rider %+v, driver %+v", rider, driver)
	}

	// The console, as an operator would reach it behind the dashboard's authentication.
	con, err := console.New(console.Config{}, rdb, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		con.ServeHTTP(w, r.WithContext(console.WithIdentity(r.Context(), console.Identity{Name: opUser, Role: console.RoleOperator})))
	}))
	t.Cleanup(srv.Close)
	search := func(q string) answer { return get(t, srv.URL+"/search?q="+url.QueryEscape(q), "", "") }

	t.Run("a key, KI or SM lands on the message", func(t *testing.T) {
		for _, c := range []struct{ q, id string }{
			{riderKey, riderKey}, {rider.InteractionSID, riderKey}, {rider.OutboundResourceSID, riderKey},
			{driverKey, driverKey}, {driver.InteractionSID, driverKey}, {driver.OutboundResourceSID, driverKey},
		} {
			if a := search(c.q); a.status != http.StatusSeeOther || !strings.HasSuffix(a.location, "/m/"+c.id) {
				t.Errorf("search %q: %d → %q, want the message %s", c.q, a.status, a.location, c.id)
			}
		}
	})

	t.Run("a KP or KC lists its messages, newest first", func(t *testing.T) {
		a := search(driverKP)
		if a.status != http.StatusOK || !strings.Contains(a.body, driverKey) || strings.Contains(a.body, riderKey) {
			t.Errorf("the driver's list: %d, driver's message %v, rider's %v", a.status, strings.Contains(a.body, driverKey), strings.Contains(a.body, riderKey))
		}
		a = search(goneKP)
		if i0, i1 := strings.Index(a.body, archived[0]), strings.Index(a.body, archived[1]); a.status != http.StatusOK || i0 < 0 || i1 < 0 || i1 > i0 {
			t.Errorf("the removed participant's list across both queues: %d, positions %d, %d (want newest first)", a.status, i1, i0)
		}
		a = search(sessionSID)
		iGone, iDriver, iRider := strings.Index(a.body, archived[1]), strings.Index(a.body, driverKey), strings.Index(a.body, riderKey)
		if a.status != http.StatusOK || iGone < 0 || iDriver < 0 || iRider < 0 || !(iGone < iDriver && iDriver < iRider) {
			t.Errorf("the session's list: %d, positions %d, %d, %d; want all three participants' messages, newest first", a.status, iGone, iDriver, iRider)
		}
	})

	t.Run("the message page shows enqueue, attempts and creation", func(t *testing.T) {
		a := get(t, srv.URL+"/m/"+riderKey, "", "")
		for _, want := range []string{"Enqueued", "Attempt 1", "Created at Twilio", rider.InteractionSID, rider.OutboundResourceSID, "30003"} {
			if !strings.Contains(a.body, want) {
				t.Errorf("the rider's page (%d) lacks %q", a.status, want)
			}
		}
		a = get(t, srv.URL+"/m/"+archived[0], "", "")
		for _, want := range []string{"Attempt 1", "20404"} {
			if !strings.Contains(a.body, want) {
				t.Errorf("the archived message's page (%d) lacks %q", a.status, want)
			}
		}
	})

	t.Run("top errors count the permanent failures", func(t *testing.T) {
		a := get(t, srv.URL+"/", "", "")
		panel := between(a.body, `class="top-errors"`, `</section>`)
		if !strings.Contains(panel, ">20404<") {
			t.Fatalf("the top errors panel lacks 20404:\n%s", panel)
		}
		// Two messages ended with it this hour, on two queues: counted in the hour and the day.
		if !strings.Contains(panel, `<td class="num">2</td><td class="num">2</td>`) {
			t.Errorf("20404 not counted twice in the hour and the day:\n%s", panel)
		}
	})

	t.Run("retry an archived message, audited", func(t *testing.T) {
		id := archived[0]
		page := get(t, srv.URL+"/m/"+id, "", "").body
		a := do(t, "POST", srv.URL+"/action/retry", "", "", "id="+id+"&csrf="+between(page, `name="csrf" value="`, `"`))
		if a.status != http.StatusSeeOther {
			t.Fatalf("retry: %d %s", a.status, a.body)
		}
		audit := get(t, srv.URL+"/audit", "", "").body
		if !strings.Contains(audit, id) || !strings.Contains(audit, "retried") || !strings.Contains(audit, opUser) {
			t.Errorf("the audit log lacks the retry of %s by %s:\n%s", id, opUser, audit)
		}
	})

	if n, err := rdb.Exists(ctx, "proxyq:console:audit").Result(); err != nil || n != 1 {
		t.Errorf("the audit list is not where the console reads it (%d, %v)", n, err)
	}
	log.Check(t, "EVAL", "EVALSHA", "HSETNX", "HKEYS", "HINCRBY", "HGETALL", "SMEMBERS", "HGET", "LPUSH", "LRANGE")
}
