package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/tasks"
)

func TestAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dash := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("dashboard " + r.URL.Path)) })
	e.srv.Mount("/dashboard/", dash)

	tests := []struct {
		name      string
		r         req
		want      int
		challenge string // expected WWW-Authenticate for 401
	}{
		{name: "no header", r: req{method: "GET", path: "/v1/message-interactions/x", token: "-"}, want: 401, challenge: `Bearer realm="proxyq"`},
		{name: "wrong token", r: req{method: "GET", path: "/v1/message-interactions/x", token: "wrong-token-0123456789"}, want: 401, challenge: `Bearer realm="proxyq", error="invalid_token"`},
		{name: "basic scheme", r: req{method: "GET", path: "/v1/message-interactions/x", token: "-", header: map[string]string{"Authorization": "Basic dXNlcjpwYXNz"}}, want: 401, challenge: `Bearer realm="proxyq", error="invalid_token"`},
		{name: "empty bearer", r: req{method: "GET", path: "/v1/message-interactions/x", token: "-", header: map[string]string{"Authorization": "Bearer "}}, want: 401, challenge: `Bearer realm="proxyq", error="invalid_token"`},
		{name: "token prefix", r: req{method: "GET", path: "/v1/message-interactions/x", token: tokenA[:10]}, want: 401, challenge: `Bearer realm="proxyq", error="invalid_token"`},
		{name: "first token", r: req{method: "GET", path: "/v1/message-interactions/x", token: tokenA}, want: 404},
		{name: "second token (rotation)", r: req{method: "GET", path: "/v1/message-interactions/x", token: tokenB}, want: 404},
		{name: "scheme is case-insensitive", r: req{method: "GET", path: "/v1/message-interactions/x", token: "-", header: map[string]string{"Authorization": "bearer " + tokenB}}, want: 404},
		{name: "post needs a token", r: req{method: "POST", path: "/v1/message-interactions", token: "-", body: "{}"}, want: 401, challenge: `Bearer realm="proxyq"`},
		{name: "openapi needs a token", r: req{method: "GET", path: "/v1/openapi.json", token: "-"}, want: 401, challenge: `Bearer realm="proxyq"`},
		{name: "unknown path needs a token", r: req{method: "GET", path: "/nope", token: "-"}, want: 401, challenge: `Bearer realm="proxyq"`},
		{name: "mounted handler needs a token", r: req{method: "GET", path: "/dashboard/queues", token: "-"}, want: 401, challenge: `Bearer realm="proxyq"`},
		{name: "mounted handler with token", r: req{method: "GET", path: "/dashboard/queues"}, want: 200},
		{name: "healthz is open", r: req{method: "GET", path: "/healthz", token: "-"}, want: 200},
		{name: "readyz is open", r: req{method: "GET", path: "/readyz", token: "-"}, want: 200},
		{name: "healthz with a wrong token is still open", r: req{method: "GET", path: "/healthz", token: "wrong-token-0123456789"}, want: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := e.do(tt.r)
			wantStatus(t, w, tt.want)
			if tt.want == 401 {
				wantProblem(t, w, 401, ProblemUnauthorized)
				if got := w.Header().Get("WWW-Authenticate"); got != tt.challenge {
					t.Fatalf("WWW-Authenticate %q, want %q", got, tt.challenge)
				}
			}
		})
	}
	if w := e.do(req{method: "GET", path: "/dashboard/queues"}); w.Body.String() != "dashboard /dashboard/queues" {
		t.Fatalf("mounted handler saw %q", w.Body.String())
	}
}

func TestMountRefusesAPIPaths(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := http.NotFoundHandler()
	for _, prefix := range []string{"", "/", "dashboard/", "/v1", "/v1/", "/v1/message-interactions/x", "/healthz", "/readyz/x"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Mount(%q) did not panic", prefix)
				}
			}()
			e.srv.Mount(prefix, h)
		}()
	}
	e.srv.Mount("/metrics", h) // fine
}

func TestCreate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	fixed := time.Now()
	e.srv.now = func() time.Time { return fixed }

	t.Run("without key", func(t *testing.T) {
		w := e.do(post("/v1/message-interactions", msgJSON(t, nil), ""))
		wantStatus(t, w, 202)
		a := decodeInto[Accepted](t, w)
		if a.ID == "" || a.Queue != "default" || a.State != "pending" || a.Links.Self != "/v1/message-interactions/"+a.ID {
			t.Fatalf("accepted %+v", a)
		}
		if w.Header().Get("Location") != a.Links.Self {
			t.Fatalf("Location %q", w.Header().Get("Location"))
		}
		info := e.taskInfo(a.ID)
		p, err := tasks.Decode(info.Payload)
		if err != nil || info.Type != tasks.TypeSendInteraction || p.Body != "hello" || p.ParticipantSID != kp {
			t.Fatalf("enqueued %s %+v (%v)", info.Type, p, err)
		}
		// Without a key, a repeat is a new message: documented.
		w2 := e.do(post("/v1/message-interactions", msgJSON(t, nil), ""))
		wantStatus(t, w2, 202)
		if decodeInto[Accepted](t, w2).ID == a.ID {
			t.Fatal("two keyless POSTs got one id")
		}
	})

	t.Run("key, schedule, queue and deadline", func(t *testing.T) {
		sendAt := fixed.Add(time.Hour).UTC().Truncate(time.Second)
		body := msgJSON(t, map[string]any{
			"send_at": sendAt.Format(time.RFC3339), "queue": "low",
			"send_before": sendAt.Add(time.Hour).Format(time.RFC3339), "media_url": []string{"https://example.com/a.png"},
		})
		w := e.do(post("/v1/message-interactions", body, "order-42:eta"))
		wantStatus(t, w, 202)
		a := decodeInto[Accepted](t, w)
		if a.ID != "order-42:eta" || a.Queue != "low" || a.State != "scheduled" || a.Links.Self != "/v1/message-interactions/order-42:eta" {
			t.Fatalf("accepted %+v", a)
		}
		info := e.taskInfo(a.ID)
		if info.Queue != "low" || info.State != asynq.TaskStateScheduled || !info.NextProcessAt.Equal(sendAt) {
			t.Fatalf("task %s %s next %s, want low scheduled %s", info.Queue, info.State, info.NextProcessAt, sendAt)
		}
	})

	t.Run("past send_at is now", func(t *testing.T) {
		w := e.do(post("/v1/message-interactions", msgJSON(t, map[string]any{"send_at": "2001-01-01T00:00:00Z"}), "past-1"))
		wantStatus(t, w, 202)
		if a := decodeInto[Accepted](t, w); a.State != "pending" || e.taskInfo("past-1").State != asynq.TaskStatePending {
			t.Fatalf("accepted %+v", a)
		}
	})

	t.Run("null optional keys", func(t *testing.T) {
		w := e.do(post("/v1/message-interactions", `{"service_sid":"`+ks+`","session_sid":"`+kc+`","participant_sid":"`+kp+`","body":"x","send_at":null,"queue":null}`, ""))
		wantStatus(t, w, 202)
	})
}

func TestCreateErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withConfig(func(c *Config) { c.MaxBodyBytes = 4096 }))
	valid := msgJSON(t, nil)
	big := msgJSON(t, map[string]any{"body": strings.Repeat("x", 5000)})
	tests := []struct {
		name   string
		r      req
		status int
		typ    string
		fields map[string]string // field → substring of its rule
	}{
		{name: "no content type", r: req{method: "POST", path: "/v1/message-interactions", body: valid, header: map[string]string{"Content-Type": ""}}, status: 415, typ: ProblemUnsupportedMedia},
		{name: "text/plain", r: req{method: "POST", path: "/v1/message-interactions", body: valid, header: map[string]string{"Content-Type": "text/plain"}}, status: 415, typ: ProblemUnsupportedMedia},
		{name: "form", r: req{method: "POST", path: "/v1/message-interactions", body: valid, header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, status: 415, typ: ProblemUnsupportedMedia},
		{name: "latin1", r: req{method: "POST", path: "/v1/message-interactions", body: valid, header: map[string]string{"Content-Type": "application/json; charset=iso-8859-1"}}, status: 415, typ: ProblemUnsupportedMedia},
		{name: "gzip", r: req{method: "POST", path: "/v1/message-interactions", body: valid, header: map[string]string{"Content-Encoding": "gzip"}}, status: 415, typ: ProblemUnsupportedMedia},
		{name: "too large", r: post("/v1/message-interactions", big, ""), status: 413, typ: ProblemTooLarge},
		{name: "too large without length", r: req{method: "POST", path: "/v1/message-interactions", body: big, header: map[string]string{"Content-Length": ""}}, status: 413, typ: ProblemTooLarge},
		{name: "empty body", r: req{method: "POST", path: "/v1/message-interactions", header: map[string]string{"Content-Type": "application/json"}}, status: 400, typ: ProblemMalformed},
		{name: "not json", r: post("/v1/message-interactions", "hello", ""), status: 400, typ: ProblemMalformed},
		{name: "array", r: post("/v1/message-interactions", "[]", ""), status: 400, typ: ProblemMalformed},
		{name: "null", r: post("/v1/message-interactions", "null", ""), status: 400, typ: ProblemMalformed},
		{name: "two objects", r: post("/v1/message-interactions", valid+valid, ""), status: 400, typ: ProblemMalformed},
		{name: "field errors", r: post("/v1/message-interactions", `{"service_sid":"KS1","participant_sid":"`+kp+`","media_url":["ftp://x/y"]}`, ""), status: 422, typ: ProblemValidation,
			fields: map[string]string{"service_sid": "must match", "session_sid": "is required", "media_url[0]": "absolute http"}},
		{name: "unknown key", r: post("/v1/message-interactions", msgJSON(t, map[string]any{"colour": "red"}), ""), status: 422, typ: ProblemValidation,
			fields: map[string]string{"colour": "not a known key"}},
		{name: "key in body", r: post("/v1/message-interactions", msgJSON(t, map[string]any{"idempotency_key": "k1"}), ""), status: 422, typ: ProblemValidation,
			fields: map[string]string{"idempotency_key": "Idempotency-Key header"}},
		{name: "wrong type", r: post("/v1/message-interactions", msgJSON(t, map[string]any{"body": 5}), ""), status: 422, typ: ProblemValidation,
			fields: map[string]string{"body": "must be a JSON string"}},
		{name: "bad send_at and queue", r: post("/v1/message-interactions", msgJSON(t, map[string]any{"send_at": "tomorrow", "queue": "nope"}), ""), status: 422, typ: ProblemValidation,
			fields: map[string]string{"send_at": "RFC 3339", "queue": "critical, default, low"}},
		{name: "deadline before send_at", r: post("/v1/message-interactions", msgJSON(t, map[string]any{"send_at": "2100-01-02T00:00:00Z", "send_before": "2100-01-01T00:00:00Z"}), ""), status: 422, typ: ProblemValidation,
			fields: map[string]string{"send_before": "after send_at"}},
		{name: "deadline past", r: post("/v1/message-interactions", msgJSON(t, map[string]any{"send_before": "2001-01-01T00:00:00Z"}), ""), status: 422, typ: ProblemValidation,
			fields: map[string]string{"send_before": "after send_at"}},
		{name: "body too long", r: post("/v1/message-interactions", msgJSON(t, map[string]any{"body": strings.Repeat("é", 1601)}), ""), status: 422, typ: ProblemValidation,
			fields: map[string]string{"body": "at most 1600"}},
		{name: "bad key header", r: post("/v1/message-interactions", valid, "has space"), status: 422, typ: ProblemValidation,
			fields: map[string]string{"Idempotency-Key": "may contain only"}},
		{name: "dot-dot key", r: post("/v1/message-interactions", valid, ".."), status: 422, typ: ProblemValidation,
			fields: map[string]string{"Idempotency-Key": "must not be . or .."}},
		{name: "bad key and bad body", r: post("/v1/message-interactions", msgJSON(t, map[string]any{"body": nil}), "bad key"), status: 422, typ: ProblemValidation,
			fields: map[string]string{"Idempotency-Key": "may contain only", "body": "is required"}},
		{name: "bad key and bad media type", r: req{method: "POST", path: "/v1/message-interactions", body: valid, header: map[string]string{"Idempotency-Key": "bad key", "Content-Type": "text/plain"}}, status: 415, typ: ProblemUnsupportedMedia},
		{name: "long key", r: post("/v1/message-interactions", valid, strings.Repeat("k", 201)), status: 422, typ: ProblemValidation,
			fields: map[string]string{"Idempotency-Key": "at most 200"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := e.do(tt.r)
			p := wantProblem(t, w, tt.status, tt.typ)
			if p.Instance != "/v1/message-interactions" {
				t.Errorf("instance %q", p.Instance)
			}
			for f, rule := range tt.fields {
				if !hasFieldError(p, f, rule) {
					t.Errorf("no error for %s (%q) in %+v", f, rule, p.Errors)
				}
			}
			if tt.status == 415 && w.Header().Get("Accept-Post") != "application/json" {
				t.Errorf("415 without Accept-Post")
			}
		})
	}
	if n := e.countTasks(); n != 0 {
		t.Fatalf("%d tasks enqueued by invalid requests", n)
	}
}

func TestGet(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	wantStatus(t, e.do(post("/v1/message-interactions", msgJSON(t, map[string]any{"send_before": "2100-01-01T00:00:00Z"}), "get-1")), 202)

	w := e.do(req{method: "GET", path: "/v1/message-interactions/get-1"})
	wantStatus(t, w, 200)
	got := decodeInto[tasks.Status](t, w)
	want, err := tasks.Lookup(context.Background(), e.insp, "get-1")
	if err != nil {
		t.Fatal(err)
	}
	gotJSON, _ := json.Marshal(got)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Fatalf("GET %s\nwant (tasks.Lookup) %s", gotJSON, wantJSON)
	}
	if got.State != "pending" || got.Message.ParticipantSID != kp || got.Message.SendBefore == nil {
		t.Fatalf("status %+v", got)
	}
	if strings.Contains(w.Body.String(), "hello") {
		t.Fatal("status shows the message body")
	}

	p := wantProblem(t, e.do(req{method: "GET", path: "/v1/message-interactions/nope"}), 404, ProblemNotFound)
	if p.ID != "nope" {
		t.Fatalf("404 id %q", p.ID)
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	var guardCalls atomic.Int32
	e := newEnv(t, withGuard(func(_ context.Context, id string) error {
		guardCalls.Add(1)
		if strings.HasPrefix(id, "inflight") {
			return errors.New("ledger: attempt in progress")
		}
		return nil
	}))
	create := func(key string, over map[string]any) {
		t.Helper()
		wantStatus(t, e.do(post("/v1/message-interactions", msgJSON(t, over), key)), 202)
	}

	t.Run("pending", func(t *testing.T) {
		create("del-pending", nil)
		w := e.do(req{method: "DELETE", path: "/v1/message-interactions/del-pending"})
		wantStatus(t, w, 200)
		if st := decodeInto[tasks.Status](t, w); st.ID != "del-pending" || st.State != "pending" {
			t.Fatalf("status before cancel %+v", st)
		}
		e.wantNoTask("del-pending")
		wantProblem(t, e.do(req{method: "GET", path: "/v1/message-interactions/del-pending"}), 404, ProblemNotFound)
		// The key is free again: documented.
		wantStatus(t, e.do(post("/v1/message-interactions", msgJSON(t, map[string]any{"body": "other"}), "del-pending")), 202)
	})
	t.Run("scheduled", func(t *testing.T) {
		create("del-scheduled", map[string]any{"send_at": time.Now().Add(time.Hour).Format(time.RFC3339)})
		w := e.do(req{method: "DELETE", path: "/v1/message-interactions/del-scheduled"})
		wantStatus(t, w, 200)
		if st := decodeInto[tasks.Status](t, w); st.State != "scheduled" {
			t.Fatalf("status before cancel %+v", st)
		}
		e.wantNoTask("del-scheduled")
	})
	t.Run("unknown", func(t *testing.T) {
		wantProblem(t, e.do(req{method: "DELETE", path: "/v1/message-interactions/never"}), 404, ProblemNotFound)
	})
	t.Run("guard says in flight", func(t *testing.T) {
		create("inflight-1", nil)
		before := guardCalls.Load()
		p := wantProblem(t, e.do(req{method: "DELETE", path: "/v1/message-interactions/inflight-1"}), 409, ProblemNotCancelable)
		if p.ID != "inflight-1" || guardCalls.Load() != before+1 {
			t.Fatalf("problem %+v, guard calls %d", p, guardCalls.Load()-before)
		}
		if strings.Contains(p.Detail, "ledger") {
			t.Fatal("guard's internal error leaked into the answer")
		}
		e.taskInfo("inflight-1") // still there
	})
	t.Run("archived", func(t *testing.T) {
		create("del-archived", nil)
		if err := e.insp.ArchiveTask("default", "del-archived"); err != nil {
			t.Fatal(err)
		}
		p := wantProblem(t, e.do(req{method: "DELETE", path: "/v1/message-interactions/del-archived"}), 409, ProblemNotCancelable)
		if p.State != "archived" {
			t.Fatalf("problem %+v", p)
		}
	})
	t.Run("unknown outcome", func(t *testing.T) {
		// A retrying task whose last attempt may have reached Twilio.
		create("del-unknown", nil)
		outcome := `{"state":"unknown","attempts":1,"recorded_at":"2030-01-01T00:00:00Z"}`
		rdb := e.db.Client(t)
		key := "asynq:{default}:t:del-unknown"
		if err := rdb.HSet(context.Background(), key, "result", outcome).Err(); err != nil {
			t.Fatal(err)
		}
		p := wantProblem(t, e.do(req{method: "DELETE", path: "/v1/message-interactions/del-unknown"}), 409, ProblemNotCancelable)
		if !strings.Contains(p.Detail, "unknown") {
			t.Fatalf("problem %+v", p)
		}
	})
}

// TestDeleteActiveAndCompleted runs a real asynq server whose handler holds the task until
// told, to see the two states a worker produces.
func TestDeleteActiveAndCompleted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	started := make(chan string, 1)
	release := make(chan struct{})
	worker := asynq.NewServer(e.db.ConnOpt(), asynq.Config{
		Concurrency: 1, Queues: map[string]int{"default": 1},
		TaskCheckInterval: 50 * time.Millisecond, LogLevel: asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeSendInteraction, func(ctx context.Context, task *asynq.Task) error {
		started <- task.ResultWriter().TaskID()
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	if err := worker.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(worker.Shutdown)
	var once atomic.Bool
	releaseOnce := func() {
		if once.CompareAndSwap(false, true) {
			close(release)
		}
	}
	t.Cleanup(releaseOnce)

	wantStatus(t, e.do(post("/v1/message-interactions", msgJSON(t, nil), "worked-1")), 202)
	select {
	case id := <-started:
		if id != "worked-1" {
			t.Fatalf("worker got %q", id)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the worker never picked the task up")
	}
	p := wantProblem(t, e.do(req{method: "DELETE", path: "/v1/message-interactions/worked-1"}), 409, ProblemNotCancelable)
	if p.State != "active" {
		t.Fatalf("active: %+v", p)
	}
	releaseOnce()
	state := ""
	for i := 0; i < 600 && state != "completed"; i++ {
		w := e.do(req{method: "GET", path: "/v1/message-interactions/worked-1"})
		wantStatus(t, w, 200)
		state = decodeInto[tasks.Status](t, w).State
		if state != "completed" {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if state != "completed" {
		t.Fatalf("task state %q, never completed", state)
	}
	p = wantProblem(t, e.do(req{method: "DELETE", path: "/v1/message-interactions/worked-1"}), 409, ProblemNotCancelable)
	if p.State != "completed" {
		t.Fatalf("completed: %+v", p)
	}
	// A completed task still holds its key: a retry is answered from it.
	w := e.do(post("/v1/message-interactions", msgJSON(t, nil), "worked-1"))
	wantStatus(t, w, 200)
	if r := decodeInto[Replayed](t, w); r.State != "completed" {
		t.Fatalf("replay %+v", r.Status)
	}
}

func TestRoutingProblems(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		r     req
		want  int
		allow string
	}{
		{r: req{method: "PUT", path: "/v1/message-interactions/x", body: "{}"}, want: 405, allow: "GET, DELETE, HEAD"},
		{r: req{method: "GET", path: "/v1/message-interactions"}, want: 405, allow: "POST"},
		{r: req{method: "GET", path: "/v1/message-interactions:batch"}, want: 405, allow: "POST"},
		{r: req{method: "POST", path: "/healthz", token: "-"}, want: 405, allow: "GET, HEAD"},
		{r: req{method: "GET", path: "/v2/anything"}, want: 404},
		{r: req{method: "GET", path: "/v1/message-interactions/a/b"}, want: 404},
	}
	for _, tt := range tests {
		t.Run(tt.r.method+" "+tt.r.path, func(t *testing.T) {
			w := e.do(tt.r)
			typ := ProblemNotFound
			if tt.want == 405 {
				typ = ProblemMethodNotAllowed
			}
			wantProblem(t, w, tt.want, typ)
			if got := w.Header().Get("Allow"); got != tt.allow {
				t.Fatalf("Allow %q, want %q", got, tt.allow)
			}
		})
	}
}

func TestHealthAndReady(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.do(req{method: "GET", path: "/healthz", token: "-"})
	wantStatus(t, w, 200)
	if decodeInto[Health](t, w).Status != "ok" {
		t.Fatal(w.Body.String())
	}
	w = e.do(req{method: "GET", path: "/readyz", token: "-"})
	wantStatus(t, w, 200)
	if decodeInto[Health](t, w).Status != "ready" {
		t.Fatal(w.Body.String())
	}
	e.srv.Drain()
	wantProblem(t, e.do(req{method: "GET", path: "/readyz", token: "-"}), 503, ProblemUnavailable)
	wantStatus(t, e.do(req{method: "GET", path: "/healthz", token: "-"}), 200) // still alive

	t.Run("custom check", func(t *testing.T) {
		ce := newEnv(t, withConfig(func(c *Config) {
			c.ReadyCheck = func(context.Context) error { return errors.New("nope") }
		}))
		wantProblem(t, ce.do(req{method: "GET", path: "/readyz", token: "-"}), 503, ProblemUnavailable)
	})
	t.Run("redis down", func(t *testing.T) {
		de := deadRedisEnv(t)
		wantProblem(t, de.do(req{method: "GET", path: "/readyz", token: "-"}), 503, ProblemUnavailable)
		wantStatus(t, de.do(req{method: "GET", path: "/healthz", token: "-"}), 200)
	})
}

func TestRedisDown(t *testing.T) {
	t.Parallel()
	e := deadRedisEnv(t)
	for _, r := range []req{
		post("/v1/message-interactions", msgJSON(t, nil), ""),
		post("/v1/message-interactions", msgJSON(t, nil), "k-down"),
		post("/v1/message-interactions:batch", `{"messages":[`+msgJSON(t, map[string]any{"idempotency_key": "b1"})+`]}`, ""),
		post("/v1/message-interactions:batch", `{"messages":[`+msgJSON(t, nil)+`]}`, ""),
		{method: "GET", path: "/v1/message-interactions/x"},
		{method: "DELETE", path: "/v1/message-interactions/x"},
	} {
		t.Run(r.method+" "+r.path, func(t *testing.T) {
			w := e.do(r)
			p := wantProblem(t, w, 503, ProblemUnavailable)
			if w.Header().Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			if strings.Contains(p.Detail, "127.0.0.1") {
				t.Errorf("detail leaks the Redis address: %q", p.Detail)
			}
		})
	}
}

func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.do(req{method: "GET", path: "/v1/openapi.json"})
	wantStatus(t, w, 200)
	if w.Body.String() != string(OpenAPI()) || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("served %q (%s)", w.Body.String()[:40], w.Header().Get("Content-Type"))
	}
}

func TestNewHTTPServer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	hs := NewHTTPServer("127.0.0.1:0", e.srv)
	if hs.ReadHeaderTimeout <= 0 || hs.ReadTimeout <= 0 || hs.WriteTimeout <= 0 || hs.IdleTimeout <= 0 || hs.MaxHeaderBytes <= 0 {
		t.Fatalf("timeouts not all set: %+v", hs)
	}
	if hs.WriteTimeout <= DefaultRequestTimeout {
		t.Fatalf("WriteTimeout %s must exceed the request timeout %s", hs.WriteTimeout, DefaultRequestTimeout)
	}
	l, err := net.Listen("tcp", hs.Addr)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(l) }()

	url := "http://" + l.Addr().String()
	hreq, _ := http.NewRequest("POST", url+"/v1/message-interactions", strings.NewReader(msgJSON(t, nil)))
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Authorization", "Bearer "+tokenB)
	hreq.Header.Set("Idempotency-Key", "over-tcp")
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("over TCP: %d", resp.StatusCode)
	}

	// The documented shutdown path: drain, then Shutdown.
	e.srv.Drain()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
}

// TestPanicIsProblem checks the recovery path with a mounted handler that panics.
func TestPanicIsProblem(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.srv.Mount("/boom", http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(fmt.Sprint("boom")) }))
	wantProblem(t, e.do(req{method: "GET", path: "/boom"}), 500, ProblemInternal)
}
