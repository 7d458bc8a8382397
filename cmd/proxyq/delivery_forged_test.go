package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	dto "github.com/prometheus/client_model/go"

	"github.com/proxyq/proxyq/accounts"
	"github.com/proxyq/proxyq/delivery"
	"github.com/proxyq/proxyq/internal/envconfig"
	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/tasks"
)

// Issue 20 item 1: a fleet serving two accounts (both in the accounts file, each with its Auth
// Token). Whoever holds B's token signs callbacks naming A's interaction: they must change
// nothing of A's message — whether they reach it directly or wait as early callbacks until its
// send is recorded — and be counted; A's genuine callbacks still apply.
func TestCallbackOfAnotherAccountChangesNothing(t *testing.T) {
	t.Parallel()
	const (
		acctA, tokenA = "AC000000000000000000000000000000a1", "token-of-a"
		acctB, tokenB = "AC000000000000000000000000000000b2", "token-of-b"
		public        = "https://proxyq.example.com"
	)
	path := filepath.Join(t.TempDir(), "accounts.yaml")
	file := "accounts:\n"
	for _, a := range [][2]string{{acctA, tokenA}, {acctB, tokenB}} {
		file += "  - account_sid: " + a[0] + "\n    auth_token: " + a[1] + "\n"
	}
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	reg, err := accounts.New(accounts.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"PROXYQ_PUBLIC_URL": public}
	ccfg, err := envconfig.Callbacks(func(k string) string { return env[k] }, reg)
	if err != nil {
		t.Fatal(err)
	}

	db := redistest.NewDB(t)
	rdb := db.Client(t)
	metrics := delivery.NewMetrics(nil)
	svc, err := delivery.New(delivery.Config{}, rdb, metrics, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := svc.CallbackHandler(*ccfg)
	if err != nil {
		t.Fatal(err)
	}
	cli := asynq.NewClient(db.ConnOpt())
	t.Cleanup(func() { _ = cli.Close() })
	insp := asynq.NewInspector(db.ConnOpt())
	t.Cleanup(func() { _ = insp.Close() })
	ctx := context.Background()

	// message writes a sent outcome as account A's worker records it (not yet told to delivery).
	message := func(ki string) (string, *tasks.Outcome) {
		t.Helper()
		info, err := cli.Enqueue(asynq.NewTask(tasks.TypeSendInteraction, []byte(`{}`)), asynq.ProcessIn(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		sent := time.Now().UTC().Add(-time.Second).Truncate(time.Millisecond)
		o := &tasks.Outcome{State: tasks.OutcomeSent, InteractionSID: ki, OutboundStatus: "queued",
			OutboundResourceSID: "SM" + ki[2:], Attempts: 1, SentAt: &sent, RecordedAt: sent}
		data, _ := json.Marshal(o)
		if err := rdb.HSet(ctx, "asynq:{default}:t:"+info.ID, "result", data).Err(); err != nil {
			t.Fatal(err)
		}
		return info.ID, o
	}
	post := func(ki, account, token, status string) {
		t.Helper()
		p := url.Values{"interactionSid": {ki}, "interactionAccountSid": {account}, "interactionType": {"message"},
			"outboundResourceSid": {"SM" + ki[2:]}, "outboundResourceStatus": {status}}
		req := httptest.NewRequest(http.MethodPost, delivery.CallbackPath, strings.NewReader(p.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Twilio-Signature", delivery.Signature(token, public+delivery.CallbackPath, p))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("callback %s %s signed by %s: %d", ki, status, account, rec.Code)
		}
	}
	outcome := func(id string) *tasks.Outcome {
		t.Helper()
		info, err := insp.GetTaskInfo("default", id)
		if err != nil {
			t.Fatal(err)
		}
		o, err := tasks.ParseOutcome(info.Result)
		if err != nil || o == nil {
			t.Fatalf("outcome of %s: %v %v", id, o, err)
		}
		return o
	}
	refused := func() float64 {
		var m dto.Metric
		if err := metrics.Callbacks.WithLabelValues(delivery.ResultWrongAccount).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}

	// Recorded first: B's forgery reaches A's message directly.
	const kiDirect = "KI000000000000000000000000000000d1"
	idDirect, o := message(kiDirect)
	if err := svc.Recorded(ctx, "default", idDirect, acctA, o, false); err != nil {
		t.Fatal(err)
	}
	post(kiDirect, acctB, tokenB, "failed")
	if got := outcome(idDirect); got.OutboundStatus != "queued" || got.Final {
		t.Fatalf("a callback signed by account B changed account A's message: %+v", got)
	}
	if n := refused(); n != 1 {
		t.Errorf("wrong_account callbacks = %v, want 1", n)
	}
	post(kiDirect, acctA, tokenA, "delivered")
	if got := outcome(idDirect); got.OutboundStatus != "delivered" || !got.Final {
		t.Fatalf("account A's own callback did not apply: %+v", got)
	}

	// Early: B's forgery waits with A's genuine callback until the send is recorded.
	const kiEarly = "KI000000000000000000000000000000e2"
	idEarly, o := message(kiEarly)
	post(kiEarly, acctB, tokenB, "undelivered")
	post(kiEarly, acctA, tokenA, "sent")
	if err := svc.Recorded(ctx, "default", idEarly, acctA, o, false); err != nil {
		t.Fatal(err)
	}
	got := outcome(idEarly)
	if got.OutboundStatus != "sent" || got.Final {
		t.Fatalf("early callbacks: %+v, want sent (A's own) and not final (B's refused)", got)
	}
	for _, e := range got.StatusHistory {
		if e.Status == "undelivered" {
			t.Fatalf("account B's early callback is in account A's history: %+v", got.StatusHistory)
		}
	}
	if n := refused(); n != 2 {
		t.Errorf("wrong_account callbacks = %v, want 2", n)
	}
}
