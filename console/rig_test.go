package console_test

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/conversations"
	"github.com/proxyq/proxyq/conversations/convtest"
	"github.com/proxyq/proxyq/dashboard"
	"github.com/proxyq/proxyq/delivery"
	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/worker"
)

// The support agent's world, as `proxyq dev` runs it: real Redis, the Proxy fake posting
// signed status callbacks to the delivery package's handler, a worker with the delivery
// hook, status webhooks to an application that is down (answers 503: the webhooks wait to be
// retried, and the console shows the answer), and the dashboard (the console as home page)
// with an operator login and a read-only one.
const (
	accountSID = "AC0123456789abcdef0123456789abcdef"
	authToken  = "test-auth-token"
	serviceSID = "KS0123456789abcdef0123456789abc000"
	sessionSID = "KC0123456789abcdef0123456789abc000"
	riderKP    = "KP0123456789abcdef0123456789abc001" // the rider: the message to them ends undelivered, 30003
	driverKP   = "KP0123456789abcdef0123456789abc002" // the driver: delivered
	goneKP     = "KP0123456789abcdef0123456789abc0ff" // removed from the session: sends fail for good (20404)
	riderKey   = "order-8812-eta"
	riderBody  = "Your driver Sam is 2 minutes away"
	clinicCH   = "CH0123456789abcdef0123456789abc0c1" // a Conversations message to it ends delivered
	clinicIS   = "IS0123456789abcdef0123456789abc0c1"

	opUser, opPassword = "ops", "operator password 1"
	roUser, roPassword = "support", "viewer password 1"
)

type rig struct {
	db       redistest.DB
	insp     *asynq.Inspector
	base     string // the operator dashboard's root URL (the console)
	roBase   string // the read-only dashboard's
	archived []string
	driverID string
	convID   string // the Conversations message's task ID
	convIM   string // the Message it created (IM…)
}

func newRig(t *testing.T, ctx context.Context) *rig {
	t.Helper()
	db := redistest.NewDB(t)
	rdb := db.Client(t)
	r := &rig{db: db, insp: asynq.NewInspector(db.ConnOpt())}
	t.Cleanup(func() { _ = r.insp.Close() })

	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The application takes the Conversations message's webhooks (the console shows them
		// accepted, after asynq deleted their tasks) and refuses the others.
		if b, _ := io.ReadAll(r.Body); strings.Contains(string(b), `"api":"conversations"`) {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
	}))
	t.Cleanup(app.Close)
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123"))
	dsvc, err := delivery.New(delivery.Config{AccountSID: accountSID, PollOff: true, WebhookURL: app.URL, WebhookSecret: secret}, rdb, nil, nil)
	if err != nil {
		t.Fatal(err)
	}

	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	cb, err := dsvc.CallbackHandler(delivery.CallbackConfig{PublicURL: srv.URL,
		Tokens: delivery.StaticToken{AccountSID: accountSID, Token: authToken}})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("POST "+delivery.CallbackPath, cb)
	receipts, err := dsvc.ReceiptsHandler(delivery.CallbackConfig{PublicURL: srv.URL,
		Tokens: delivery.StaticToken{AccountSID: accountSID, Token: authToken}})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("POST "+delivery.ReceiptsPath, receipts)
	for _, d := range []struct {
		root       string
		user, pass string
		readOnly   bool
	}{{"/ops", opUser, opPassword, false}, {"/support", roUser, roPassword, true}} {
		dash, err := dashboard.New(dashboard.Config{RootPath: d.root, User: d.user, Password: d.pass, ReadOnly: d.readOnly}, db.ConnOpt(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = dash.Close() })
		mux.Handle(d.root+"/", dash)
	}
	r.base, r.roBase = srv.URL+"/ops", srv.URL+"/support"

	fake := proxytest.NewServer(proxytest.Config{Callbacks: proxytest.CallbackConfig{
		URL: srv.URL + delivery.CallbackPath, AuthToken: authToken, Delay: 30 * time.Millisecond}})
	t.Cleanup(fake.Close)
	api, err := proxyclient.New(proxyclient.Config{AccountSID: accountSID, AuthToken: authToken, BaseURL: fake.URL})
	if err != nil {
		t.Fatal(err)
	}
	convFake, err := convtest.NewServer(convtest.Config{Delivery: convtest.DeliveryConfig{URL: srv.URL + delivery.ReceiptsPath,
		AuthToken: authToken, Delay: 30 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(convFake.Close)
	conv, err := conversations.New(conversations.Config{AccountSID: accountSID, AuthToken: authToken, BaseURL: convFake.URL})
	if err != nil {
		t.Fatal(err)
	}
	dwork, err := dsvc.NewWorker(delivery.ClientFetcher(api), noLimit{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(worker.Config{Concurrency: 4, HTTPTimeout: 5 * time.Second, ShutdownTimeout: 10 * time.Second},
		worker.Deps{Redis: db.ConnOpt(), API: api, Conversations: conv, Delivery: dsvc, Tasks: dwork.Handlers()})
	if err != nil {
		t.Fatal(err)
	}

	// The rider's message ends undelivered with 30003, the driver's delivered (in this order:
	// the fake's scripts apply to creates in turn, so the two are sent one after the other).
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
	enq := tasks.NewEnqueuer(db.ConnOpt())
	t.Cleanup(func() { _ = enq.Close() })
	msg := func(kp, body string) tasks.Payload {
		return tasks.Payload{ServiceSID: serviceSID, SessionSID: sessionSID, ParticipantSID: kp, Body: body}
	}
	if _, err := enq.Enqueue(ctx, msg(riderKP, riderBody), tasks.IdempotencyKey(riderKey), tasks.Via("http")); err != nil {
		t.Fatal(err)
	}
	waitState(t, ctx, r.insp, riderKey, "completed")
	res, err := enq.Enqueue(ctx, msg(driverKP, "On my way"))
	if err != nil {
		t.Fatal(err)
	}
	r.driverID = res.TaskID
	waitState(t, ctx, r.insp, r.driverID, "completed")
	cres, err := enq.EnqueueConversation(ctx, tasks.ConversationPayload{ConversationSID: clinicCH, ServiceSID: clinicIS,
		Author: "clinic", Body: "Your appointment is at 3pm"}, tasks.Via("http:clinic-app"))
	if err != nil {
		t.Fatal(err)
	}
	r.convID = cres.TaskID
	waitFor(t, ctx, "the Conversations message delivered", func() bool {
		st, err := tasks.Lookup(ctx, r.insp, r.convID)
		if err != nil || st.State != "completed" || st.Outcome == nil || !st.Outcome.Final {
			return false
		}
		r.convIM = st.Outcome.MessageSID
		answers, err := delivery.WebhookAnswers(ctx, rdb, "default", r.convID)
		return err == nil && len(answers) > 0 && answers[len(answers)-1].Status == "delivered"
	})
	for i := range 3 {
		res, err := enq.Enqueue(ctx, msg(goneKP, "Are you still there? "+strings.Repeat("!", i)))
		if err != nil {
			t.Fatal(err)
		}
		r.archived = append(r.archived, res.TaskID)
	}
	for _, id := range r.archived {
		waitState(t, ctx, r.insp, id, "archived")
	}
	// The rider's timeline is complete once its delivery error is in and the application
	// refused the webhook that announced it.
	waitFor(t, ctx, "the rider's delivery error and its status webhook's answer", func() bool {
		st, err := tasks.Lookup(ctx, r.insp, riderKey)
		if err != nil || st.Outcome == nil || st.Outcome.DeliveryErrorCode != 30003 {
			return false
		}
		info, err := r.insp.GetTaskInfo("default", delivery.WebhookTaskID("default", riderKey, "undelivered"))
		return err == nil && info.LastErr != ""
	})
	return r
}

type noLimit struct{}

func (noLimit) Acquire(context.Context, string, time.Duration) (func(bool), error) {
	return func(bool) {}, nil
}

func waitState(t *testing.T, ctx context.Context, insp *asynq.Inspector, id, state string) {
	t.Helper()
	waitFor(t, ctx, id+" "+state, func() bool {
		st, err := tasks.Lookup(ctx, insp, id)
		return err == nil && st.State == state
	})
}

func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
