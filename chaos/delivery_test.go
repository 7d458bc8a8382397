//go:build chaos || cluster

package chaos

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/delivery"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
)

// authToken is the chaos account's Auth Token: the workers authenticate with it and the Fake
// signs its status callbacks with it.
const authToken = "chaos-token"

// startCallbacks turns delivery status on for a run: the Fake moves every SMS it creates
// through queued → sent → a final status (some undelivered or failed, some callbacks repeated
// or out of order, the first one posted before the create is answered, so it often arrives
// before the send is recorded — or long before, when the worker was killed and reconciliation
// records it a minute later) and posts signed callbacks to the route `proxyq serve` mounts,
// served here in the test process on the run's Redis. The workers index each recorded send
// (the delivery hook) and apply the callbacks that came early. Polling stays at its default
// (first poll after 15 minutes, beyond the run): every final status must come from a callback
// applied on the delivery tracking the workers set up.
func startCallbacks(t *testing.T, st store, fake *proxytest.Fake) *delivery.Metrics {
	t.Helper()
	metrics := delivery.NewMetrics(nil)
	svc, err := delivery.New(delivery.Config{AccountSID: accountSID}, st.client(t), metrics, nil)
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	if h, err = svc.CallbackHandler(delivery.CallbackConfig{PublicURL: srv.URL,
		Tokens: delivery.StaticToken{AccountSID: accountSID, Token: authToken}}); err != nil {
		t.Fatal(err)
	}
	if err := fake.SetCallbackConfig(proxytest.CallbackConfig{URL: srv.URL + delivery.CallbackPath, AuthToken: authToken,
		Undelivered: 0.05, Failed: 0.02, Duplicates: 0.1, OutOfOrder: 0.1, BeforeAnswer: true}); err != nil {
		t.Fatal(err)
	}
	return metrics
}

// verifyDelivery waits (up to a minute) for the Fake to have posted every callback, then
// checks that every message recorded as sent has a final delivery status, the one the Fake
// gave its SMS.
func verifyDelivery(t *testing.T, r *runResult, insp *asynq.Inspector, fake *proxytest.Fake, msgs []message) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st := fake.CallbackStats()
		if st.Pending == 0 && st.Delivered+st.Failed+st.Skipped+st.Dropped >= st.Scheduled {
			r.callbacksFailed = st.Failed
			break
		}
		if time.Now().After(deadline) {
			t.Logf("%s: the Fake still had %d callbacks to post after a minute", r.name, st.Pending)
			r.callbacksFailed = st.Failed
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	r.delivery = true
	for _, m := range msgs {
		info, err := insp.GetTaskInfo(tasks.DefaultQueue, m.id)
		if err != nil || info.State != asynq.TaskStateCompleted {
			continue // counted by verify
		}
		o, _ := tasks.ParseOutcome(info.Result)
		if o == nil || o.State != tasks.OutcomeSent {
			continue
		}
		want, ok := fake.MessageStatus(o.InteractionSID)
		switch {
		case !o.Final:
			r.notFinal++
			r.problems = append(r.problems, fmt.Sprintf("%s: sent (%s) but its delivery status is %q, not final (the Fake's: %s)",
				m.id, o.InteractionSID, o.OutboundStatus, want.Final))
		case !ok || o.OutboundStatus != want.Final:
			r.wrongFinal++
			r.problems = append(r.problems, fmt.Sprintf("%s: final delivery status %q, the Fake's %q", m.id, o.OutboundStatus, want.Final))
		default:
			r.final++
		}
	}
}
