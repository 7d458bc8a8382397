//go:build cluster

package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/httpapi"
	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/worker"
)

// Every component on a real Redis Cluster named by REDIS_URL=redis-cluster://…: a worker
// process (waiting for a replica before each send), `proxyq enqueue` and `proxyq status`, the
// worker's and serve's health probes through `proxyq healthcheck`, `proxyq serve` with the
// dashboard mounted (POST, GET, DELETE with the send guard), the `proxyq dashboard` command
// and `proxyq dev` with REDIS_URL. Run with `make test-redis-ha`.
func TestClusterEndToEnd(t *testing.T) {
	c := redistest.StartCluster(t)
	fake := proxytest.NewServer(proxytest.Config{})
	t.Cleanup(fake.Close)
	insp := asynq.NewInspector(c.ConnOpt())
	t.Cleanup(func() { _ = insp.Close() })
	h := &harness{t: t, fake: fake, insp: insp, url: c.URL()}

	w := h.startWorker("PROXYQ_REDIS_WAIT_REPLICAS=1", "PROXYQ_LOG_LEVEL=info")
	if r := h.run("", "healthcheck", "--url", "http://"+w.admin+"/readyz"); r.code != 0 {
		t.Errorf("healthcheck of the worker: exit %d %s", r.code, r.stderr)
	}

	t.Run("enqueue, worker, status", func(t *testing.T) {
		msgs := make([]message, 30)
		for i := range msgs {
			msgs[i] = newMessage(i, fmt.Sprintf("cluster message %d", i)) // participants vary: many slots
			if i%2 == 0 {
				msgs[i].key = fmt.Sprintf("cluster-%d", i)
			}
		}
		// The producer waits for a replica too (PROXYQ_REDIS_WAIT_REPLICAS for enqueue).
		r := runBinary(t, h.env("PROXYQ_REDIS_WAIT_REPLICAS=1"), "", "enqueue", "--file", writeLines(t, msgs))
		if r.code != 0 {
			t.Fatalf("enqueue: exit %d %s", r.code, r.stderr)
		}
		ids := strings.Fields(r.stdout)
		if len(ids) != len(msgs) {
			t.Fatalf("enqueue printed %d IDs for %d messages", len(ids), len(msgs))
		}
		h.waitForState("default", asynq.TaskStateCompleted, 60*time.Second, ids...)
		sidOfBody := map[string]string{}
		for _, in := range fake.Fake.Created() {
			sidOfBody[in.Body] = in.SID
		}
		for i, m := range msgs {
			if n := fake.Fake.CreatesForBody(m.body); n != 1 {
				t.Errorf("message %d created %d times, want once", i, n)
			}
			st := h.status(ids[i])
			if st.Outcome == nil || st.Outcome.State != tasks.OutcomeSent || st.Outcome.InteractionSID != sidOfBody[m.body] {
				t.Errorf("message %d: status %+v, want sent with %s", i, st.Outcome, sidOfBody[m.body])
			}
		}
		if r := h.run("", "status", ids[0]); r.code != 0 || !strings.Contains(r.stdout, sidOfBody[msgs[0].body]) {
			t.Errorf("status %s: exit %d\n%s%s", ids[0], r.code, r.stdout, r.stderr)
		}
		// Keys already used come back as duplicates: asynq's unique check works per slot.
		r = h.run("", "enqueue", "--json", "--file", writeLines(t, []message{msgs[0]}))
		if r.code != 0 || !strings.Contains(r.stdout, `"duplicate":true`) {
			t.Errorf("re-enqueue: exit %d %s %s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("serve with the dashboard", func(t *testing.T) {
		p := startServe(t, map[string]string{"REDIS_URL": c.URL(), "PROXYQ_API_TOKENS": serveToken, "PROXYQ_LOG_FORMAT": "json", "PROXYQ_REDIS_WAIT_REPLICAS": "1"}, "--dashboard")
		for _, path := range []string{"/readyz", "/dashboard/queues/api/queues", "/dashboard/queues/api/redis_info"} {
			a := p.call(t, "GET", path, serveToken, "")
			if a.status != http.StatusOK {
				t.Errorf("GET %s: %d %.300s", path, a.status, a.body)
			}
			if path == "/dashboard/queues/api/redis_info" && !strings.Contains(string(a.body), `"cluster":true`) {
				t.Errorf("the dashboard does not see a cluster: %.300s", a.body)
			}
		}
		if r := h.run("", "healthcheck", "--url", p.base+"/readyz"); r.code != 0 {
			t.Errorf("healthcheck of serve: exit %d %s", r.code, r.stderr)
		}
		const key = "cluster-serve"
		a := p.call(t, "POST", "/v1/message-interactions", serveToken, serveMessage(1, "over HTTP on a cluster"), "Idempotency-Key", key)
		if a.status != http.StatusAccepted {
			t.Fatalf("POST: %d %s", a.status, a.body)
		}
		eventually(t, 30*time.Second, "the HTTP message to be sent", func() bool {
			var st tasks.Status
			p.call(t, "GET", "/v1/message-interactions/"+key, serveToken, "").decode(t, &st)
			return st.State == "completed" && st.Outcome != nil && st.Outcome.State == tasks.OutcomeSent
		})
		a = p.call(t, "DELETE", "/v1/message-interactions/"+key, serveToken, "")
		var prob httpapi.Problem
		a.decode(t, &prob)
		if a.status != http.StatusConflict || prob.Type != httpapi.ProblemNotCancelable {
			t.Errorf("DELETE after sent: %d %s, want 409", a.status, a.body)
		}
		// The send guard reads the ledger on the cluster: a scheduled task whose ledger says in
		// flight is refused.
		const guarded = "cluster-guarded"
		later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		if a := p.call(t, "POST", "/v1/message-interactions", serveToken, serveMessage(3, "guarded", "send_at", later), "Idempotency-Key", guarded); a.status != http.StatusAccepted {
			t.Fatalf("POST scheduled: %d %s", a.status, a.body)
		}
		ledger := worker.NewLedger(c.Client(t), time.Hour)
		own, err := ledger.AcquireToSend(context.Background(), tasks.DefaultQueue, guarded, time.Minute, worker.SendIntent{Lease: time.Minute, SendWithin: time.Hour})
		if err != nil || !own.Began {
			t.Fatalf("mark in flight: %+v %v", own, err)
		}
		if a := p.call(t, "DELETE", "/v1/message-interactions/"+guarded, serveToken, ""); a.status != http.StatusConflict {
			t.Errorf("DELETE of an in-flight message: %d %s, want 409", a.status, a.body)
		}
		const later2 = "cluster-later"
		if a := p.call(t, "POST", "/v1/message-interactions", serveToken, serveMessage(4, "later", "send_at", later), "Idempotency-Key", later2); a.status != http.StatusAccepted {
			t.Fatalf("POST scheduled: %d %s", a.status, a.body)
		}
		if a := p.call(t, "DELETE", "/v1/message-interactions/"+later2, serveToken, ""); a.status != http.StatusOK {
			t.Errorf("DELETE scheduled: %d %s, want 200", a.status, a.body)
		}
	})

	t.Run("dashboard command", func(t *testing.T) {
		p := startInProcess(t, map[string]string{"REDIS_URL": c.URL(), "PROXYQ_DASHBOARD_USER": "ops", "PROXYQ_DASHBOARD_PASSWORD": "pw"},
			"dashboard", "--addr", "127.0.0.1:0")
		host := p.waitOutput(t, dashboardURLLine, 15*time.Second)[1]
		for path, want := range map[string]string{"/readyz": "ready", "/queues/api/queues": `"queue":"default"`, "/queues/api/redis_info": `"cluster":true`} {
			r := request(t, "GET", host+path, basicAuth("ops", "pw"))
			if r.status != 200 || !strings.Contains(r.body, want) {
				t.Errorf("dashboard GET %s: %d %.300s, want 200 with %s", path, r.status, r.body, want)
			}
		}
		if code := p.stop(t); code != exitOK {
			t.Errorf("dashboard exit %d", code)
		}
	})

	t.Run("dev with REDIS_URL", func(t *testing.T) {
		// dev runs its own worker against its own fake: the test's worker, on the same queue
		// but another fake, must not take the demo's messages.
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-w.exited:
		case <-time.After(30 * time.Second):
			t.Fatal("the test's worker did not stop")
		}
		p := startInProcess(t, map[string]string{"REDIS_URL": c.URL()}, "dev", "--demo", "10", "--exit-after-demo", "--addr", "127.0.0.1:0")
		if code := p.wait(t, 90*time.Second); code != exitOK {
			t.Fatalf("dev on the cluster: exit %d\n%s\n%s", code, p.stdout, tail(p.stderr.String(), 3000))
		}
		if out := p.stdout.String(); devSummaryLine.FindStringSubmatch(out) == nil || strings.Contains(out, "DUPLICATES") {
			t.Errorf("dev summary:\n%s", out)
		}
	})
}

// writeLines writes msgs as a JSON-lines file and returns its path.
func writeLines(t *testing.T, msgs []message) string {
	t.Helper()
	path := t.TempDir() + "/m.jsonl"
	if err := os.WriteFile(path, []byte(linesOf(msgs)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
