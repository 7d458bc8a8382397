package main

// End-to-end tests of delivery status with real processes: the proxyq binary as a worker and
// as two `serve` replicas behind a round-robin proxy (standing in for a load balancer and TLS
// terminator: PROXYQ_PUBLIC_URL is the proxy's URL), the fake Twilio posting signed status
// callbacks (duplicated, out of order, some before the create is answered, some for a POST
// that answered 500 and is reconciled), and a test application receiving status webhooks and
// verifying them with its own implementation of the Standard Webhooks signature.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/delivery"
	"github.com/proxyq/proxyq/internal/webhooktest"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
)

const (
	e2eAuthToken     = "e2e-auth-token-do-not-log"
	e2eAPIToken      = "e2e-api-token-0123456789"
	e2eWebhookSecret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
)

// serveBin is a `proxyq serve` child process.
type serveBin struct {
	base string
	log  *lockedBuffer
	cmd  *exec.Cmd
}

func (h *harness) startServeBinary(extraEnv ...string) *serveBin {
	h.t.Helper()
	t := h.t
	addr := freeAddr(t)
	cmd := exec.Command(proxyqBinary(t), "serve", "--addr", addr, "--drain-delay", "0s", "--metrics")
	cmd.Env = append(h.env(extraEnv...), "PROXYQ_API_TOKENS="+e2eAPIToken)
	s := &serveBin{base: "http://" + addr, log: &lockedBuffer{}, cmd: cmd}
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stopAtCleanup(t, cmd, exited, "serve", s.log)
	eventually(t, 15*time.Second, "serve /readyz answering 200", func() bool {
		select {
		case <-exited:
			t.Fatalf("serve exited before it was ready:\n%s", s.log.String())
		default:
		}
		status, _ := httpGet(t, s.base+"/readyz")
		return status == http.StatusOK
	})
	return s
}

// roundRobin forwards each request to the next backend: two serve replicas receive the
// callbacks of one message at once.
func roundRobin(t *testing.T, backends ...string) *httptest.Server {
	var n atomic.Int64
	proxies := make([]*httputil.ReverseProxy, len(backends))
	for i, b := range backends {
		u, _ := url.Parse(b)
		proxies[i] = httputil.NewSingleHostReverseProxy(u)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxies[int(n.Add(1))%len(proxies)].ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// appReceiver is the application: it verifies every status webhook independently of the
// library proxyq signs with, and keeps the last event per webhook-id.
type appReceiver struct {
	mu       sync.Mutex
	byID     map[string]delivery.Event
	posts    int
	rejected []string
	srv      *httptest.Server
}

func newAppReceiver(t *testing.T, secret string) *appReceiver {
	a := &appReceiver{byID: map[string]delivery.Event{}}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		err := webhooktest.Verify(secret, r.Header, body, time.Now())
		var ev delivery.Event
		if err == nil {
			err = json.Unmarshal(body, &ev)
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		a.posts++
		if err != nil {
			a.rejected = append(a.rejected, err.Error())
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a.byID[r.Header.Get("webhook-id")] = ev
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func TestE2EDeliveryCallbacks(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	h := newHarness(t, proxytest.Config{})
	app := newAppReceiver(t, e2eWebhookSecret)

	// Two replicas behind one public URL; the proxy is started first so its URL can be
	// configured, then pointed at the replicas.
	var lb http.Handler
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { lb.ServeHTTP(w, r) }))
	t.Cleanup(front.Close)
	env := []string{"TWILIO_AUTH_TOKEN=" + e2eAuthToken, "PROXYQ_PUBLIC_URL=" + front.URL,
		"PROXYQ_STATUS_WEBHOOK_URL=" + app.srv.URL + "/hooks?tenant=t1", "PROXYQ_STATUS_WEBHOOK_SECRET=" + e2eWebhookSecret,
		"PROXYQ_LOG_LEVEL=debug"}
	a, b := h.startServeBinary(env...), h.startServeBinary(env...)
	lb = roundRobin(t, a.base, b.base).Config.Handler
	w := h.startWorker(env...)

	fake := h.fake.Fake
	must(t, fake.SetCallbackConfig(proxytest.CallbackConfig{URL: front.URL + delivery.CallbackPath, AuthToken: e2eAuthToken,
		Delay: 100 * time.Millisecond, Undelivered: 0.2, Failed: 0.1, Duplicates: 0.3, OutOfOrder: 0.3, BeforeAnswer: true}))
	// The first creates answer 500 after creating: their callbacks (the first one sent before
	// the answer) wait as pending until reconciliation adopts the interaction.
	must(t, fake.Inject(proxytest.Fault500AfterCreate, 4))

	const n = 30
	msgs := make([]message, n)
	for i := range msgs {
		msgs[i] = newMessage(i, fmt.Sprintf("secret body %d, never logged", i))
	}
	ids := h.enqueueFile(msgs)
	h.waitForState("default", asynq.TaskStateCompleted, 60*time.Second, ids...)

	// Every message's record ends final, as the fake decided, with the right history.
	outcomes := map[string]*tasks.Outcome{}
	eventually(t, 60*time.Second, "every message's delivery status final", func() bool {
		// A reordered callback may still be on its way after the final one was applied: read
		// the records once the fake has no callback left to send.
		if st := fake.CallbackStats(); st.Pending > 0 || st.Delivered+st.Failed < st.Scheduled {
			return false
		}
		for _, id := range ids {
			info, err := h.insp.GetTaskInfo("default", id)
			if err != nil {
				return false
			}
			o, _ := tasks.ParseOutcome(info.Result)
			if o == nil || !o.Final || (o.OutboundStatus != "delivered" && o.DeliveryErrorCode == 0) {
				return false
			}
			outcomes[id] = o
		}
		return true
	})
	reconciled, finals := 0, map[string]int{}
	for _, id := range ids {
		o := outcomes[id]
		st, ok := fake.MessageStatus(o.OutboundResourceSID)
		if !ok {
			t.Fatalf("%s: the fake has no message %s", id, o.OutboundResourceSID)
		}
		if o.OutboundStatus != st.Final || o.DeliveryErrorCode != st.ErrorCode || o.DeliveryError != st.ErrorMessage {
			t.Errorf("%s: record %s %d %q, fake %s %d %q", id, o.OutboundStatus, o.DeliveryErrorCode, o.DeliveryError, st.Final, st.ErrorCode, st.ErrorMessage)
		}
		got := statuses(o)
		for _, want := range st.History {
			if !slices.Contains(got, want) {
				t.Errorf("%s: history %v lacks %s (fake: %v)", id, got, want, st.History)
			}
		}
		if len(got) != len(st.History) {
			t.Errorf("%s: history %v, fake went through %v (each status once)", id, got, st.History)
		}
		if (o.OutboundStatus == "delivered") != (o.DeliveredAt != nil) {
			t.Errorf("%s: delivered_at %v with status %s", id, o.DeliveredAt, o.OutboundStatus)
		}
		if o.Reconciled {
			reconciled++
		}
		finals[o.OutboundStatus]++
	}
	t.Logf("finals %v, %d reconciled after a 500, callbacks %+v", finals, reconciled, fake.CallbackStats())
	if reconciled < 4 {
		t.Errorf("%d messages reconciled after a 500, want the 4 injected", reconciled)
	}

	// The application heard of every message's final status, verified.
	eventually(t, 30*time.Second, "a verified webhook for every final status", func() bool {
		app.mu.Lock()
		defer app.mu.Unlock()
		finalSeen := map[string]bool{}
		for _, ev := range app.byID {
			if ev.Data.Final {
				finalSeen[ev.Data.ID] = true
			}
		}
		return len(finalSeen) == n
	})
	app.mu.Lock()
	if len(app.rejected) > 0 {
		t.Errorf("webhooks failed verification: %v", app.rejected)
	}
	for _, ev := range app.byID {
		o := outcomes[ev.Data.ID]
		if ev.Data.Final && (ev.Data.Status != o.OutboundStatus || ev.Data.ErrorCode != o.DeliveryErrorCode || ev.Data.InteractionSID != o.InteractionSID) {
			t.Errorf("final webhook %+v, record %s %d", ev.Data, o.OutboundStatus, o.DeliveryErrorCode)
		}
	}
	app.mu.Unlock()

	// Status through the CLI (text and JSON) and the HTTP API.
	id := ids[0]
	r := h.run("", "status", id)
	if r.code != 0 || !strings.Contains(r.stdout, "Status history:") || !strings.Contains(r.stdout, "Delivery:") {
		t.Errorf("status text:\n%s", r.stdout)
	}
	if st := h.status(id); st.Outcome == nil || !st.Outcome.Final || len(st.Outcome.StatusHistory) == 0 {
		t.Errorf("status --json: %+v", st.Outcome)
	}
	req, _ := http.NewRequest(http.MethodGet, a.base+"/v1/message-interactions/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+e2eAPIToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var api tasks.Status
	_ = json.NewDecoder(resp.Body).Decode(&api)
	resp.Body.Close()
	if api.Outcome == nil || !api.Outcome.Final || api.Outcome.OutboundStatus != outcomes[id].OutboundStatus {
		t.Errorf("GET /v1/message-interactions/%s: %+v", id, api.Outcome)
	}

	// Both replicas took callbacks; some waited as pending for their send to be recorded.
	var pending float64
	for name, srv := range map[string]*serveBin{"a": a, "b": b} {
		m := scrape(t, srv.base)
		if m[`proxyq_delivery_callbacks_total{result="accepted"}`] == 0 {
			t.Errorf("serve %s accepted no callback:\n%v", name, m)
		}
		pending += m[`proxyq_delivery_callbacks_total{result="pending"}`]
	}
	if pending == 0 {
		t.Error("no callback waited for its send to be recorded (BeforeAnswer and 500-after-create should cause some)")
	}

	// A forged callback is refused and changes nothing; one for an unknown interaction is 200.
	before, _ := h.insp.GetTaskInfo("default", id)
	forged := url.Values{"interactionSid": {outcomes[id].InteractionSID}, "interactionAccountSid": {testAccountSID},
		"outboundResourceStatus": {"failed"}}
	for _, sig := range []string{"", delivery.Signature("wrong-token", front.URL+delivery.CallbackPath, forged)} {
		if code := postCallback(t, front.URL, forged, sig); code != http.StatusForbidden {
			t.Errorf("forged callback: %d, want 403", code)
		}
	}
	after, _ := h.insp.GetTaskInfo("default", id)
	if string(before.Result) != string(after.Result) {
		t.Errorf("a forged callback changed the record")
	}
	unknown := url.Values{"interactionSid": {sid("KI", 999999)}, "interactionAccountSid": {testAccountSID}, "outboundResourceStatus": {"delivered"}}
	if code := postCallback(t, front.URL, unknown, delivery.Signature(e2eAuthToken, front.URL+delivery.CallbackPath, unknown)); code != http.StatusOK {
		t.Errorf("unknown interaction: %d, want 200", code)
	}

	// No secrets, tokens or bodies in any log.
	for name, log := range map[string]string{"serve a": a.log.String(), "serve b": b.log.String(), "worker": w.log.String()} {
		for _, secret := range []string{e2eAuthToken, e2eWebhookSecret, strings.TrimPrefix(e2eWebhookSecret, "whsec_"), "secret body", "tenant=t1", e2eAPIToken} {
			if strings.Contains(log, secret) {
				t.Errorf("%s log contains %q", name, secret)
			}
		}
	}
	if !strings.Contains(a.log.String()+b.log.String(), `"msg":"delivery status"`) {
		t.Error("no delivery status logged by serve")
	}
}

// With callbacks off (no callback_url at the fake), the worker's poll finds every final status.
func TestE2EDeliveryPollingFallback(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	h := newHarness(t, proxytest.Config{})
	must(t, h.fake.Fake.SetCallbackConfig(proxytest.CallbackConfig{Advance: true, Delay: 50 * time.Millisecond, Undelivered: 0.3}))
	h.startWorker("PROXYQ_DELIVERY_POLL_AFTER=1s", "PROXYQ_DELIVERY_POLL_EVERY=1s", "PROXYQ_DELIVERY_SWEEP_INTERVAL=300ms",
		"PROXYQ_DELIVERY_POLL_BATCH=5")
	msgs := make([]message, 12)
	for i := range msgs {
		msgs[i] = newMessage(i, fmt.Sprintf("poll %d", i))
	}
	ids := h.enqueueFile(msgs)
	h.waitForState("default", asynq.TaskStateCompleted, 30*time.Second, ids...)
	eventually(t, 45*time.Second, "every message final through polling", func() bool {
		for _, id := range ids {
			info, err := h.insp.GetTaskInfo("default", id)
			if err != nil {
				return false
			}
			o, _ := tasks.ParseOutcome(info.Result)
			if o == nil || !o.Final {
				return false
			}
			st, _ := h.fake.Fake.MessageStatus(o.OutboundResourceSID)
			if o.OutboundStatus != st.Final || o.DeliveryErrorCode != st.ErrorCode {
				t.Fatalf("%s: polled %s %d, fake %s %d", id, o.OutboundStatus, o.DeliveryErrorCode, st.Final, st.ErrorCode)
			}
		}
		return true
	})
	if st := h.fake.Fake.CallbackStats(); st.Attempts != 0 {
		t.Fatalf("callbacks were sent: %+v", st)
	}
}

func postCallback(t *testing.T, base string, p url.Values, sig string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, base+delivery.CallbackPath, strings.NewReader(p.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if sig != "" {
		req.Header.Set("X-Twilio-Signature", sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func statuses(o *tasks.Outcome) []string {
	var s []string
	for _, e := range o.StatusHistory {
		s = append(s, e.Status)
	}
	return s
}

// scrape reads serve's /metrics (behind the API token) as "name{labels}" → value.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+e2eAPIToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			v, _ := strconv.ParseFloat(line[i+1:], 64)
			out[line[:i]] = v
		}
	}
	return out
}
