package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"

	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/tasks"
)

func TestMain(m *testing.M) { redistest.Main(m) }

const (
	tokenA = "token-a-0123456789abcdef"
	tokenB = "token-b-fedcba9876543210"
	tokenC = "token-c-0011223344556677"

	ks = "KS0123456789abcdef0123456789abcdef"
	kc = "KC0123456789abcdef0123456789abcdef"
	kp = "KP0123456789abcdef0123456789abcdef"
)

// env is one API server on its own Redis database.
type env struct {
	t    *testing.T
	srv  *Server
	insp *asynq.Inspector
	db   redistest.DB
}

type envOption func(*Config, *SendGuard)

func withGuard(g SendGuard) envOption { return func(_ *Config, sg *SendGuard) { *sg = g } }
func withConfig(f func(*Config)) envOption {
	return func(c *Config, _ *SendGuard) { f(c) }
}

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	db := redistest.NewDB(t)
	cfg := Config{Tokens: []string{tokenA, tokenB}}
	var guard SendGuard
	for _, o := range opts {
		o(&cfg, &guard)
	}
	enq := tasks.NewEnqueuer(db.ConnOpt())
	insp := asynq.NewInspector(db.ConnOpt())
	t.Cleanup(func() { _ = enq.Close(); _ = insp.Close() })
	srv, err := New(cfg, enq, insp, guard, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &env{t: t, srv: srv, insp: insp, db: db}
}

// deadRedisEnv is a server whose Redis refuses connections: every Redis call fails fast.
func deadRedisEnv(t *testing.T) *env {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // nothing listens there now: connection refused
	opt := deadRedis{addr: addr}
	enq := tasks.NewEnqueuer(opt)
	insp := asynq.NewInspector(opt)
	t.Cleanup(func() { _ = enq.Close(); _ = insp.Close() })
	srv, err := New(Config{Tokens: []string{tokenA}}, enq, insp, nil, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, srv: srv, insp: insp}
}

// deadRedis makes go-redis clients that give up at the first refused dial, so the 503 tests
// do not sit through go-redis's retry backoff.
type deadRedis struct{ addr string }

func (d deadRedis) MakeRedisClient() any {
	return redis.NewClient(&redis.Options{Addr: d.addr, MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second})
}

type req struct {
	method, path string
	body         string
	token        string // "" = tokenA; "-" = no Authorization header
	header       map[string]string
}

func (e *env) do(r req) *httptest.ResponseRecorder {
	e.t.Helper()
	return do(e.t, e.srv, r)
}

func do(t testing.TB, h http.Handler, r req) *httptest.ResponseRecorder {
	t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr := httptest.NewRequest(r.method, r.path, body)
	if r.body != "" {
		hr.Header.Set("Content-Type", "application/json")
	}
	switch r.token {
	case "":
		hr.Header.Set("Authorization", "Bearer "+tokenA)
	case "-":
	default:
		hr.Header.Set("Authorization", "Bearer "+r.token)
	}
	for k, v := range r.header {
		if v == "" {
			hr.Header.Del(k)
		} else {
			hr.Header.Set(k, v)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, hr)
	return w
}

func post(path, body string, key string) req {
	r := req{method: http.MethodPost, path: path, body: body}
	if key != "" {
		r.header = map[string]string{"Idempotency-Key": key}
	}
	return r
}

// msgJSON builds a message body from the defaults plus overrides (nil value deletes a key).
func msgJSON(t testing.TB, over map[string]any) string {
	t.Helper()
	m := map[string]any{"service_sid": ks, "session_sid": kc, "participant_sid": kp, "body": "hello"}
	for k, v := range over {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func decodeInto[T any](t testing.TB, w *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %T from %d %q: %v", v, w.Code, w.Body.String(), err)
	}
	return v
}

func wantStatus(t testing.TB, w *httptest.ResponseRecorder, code int) {
	t.Helper()
	if w.Code != code {
		t.Fatalf("status %d, want %d; body %s", w.Code, code, w.Body.String())
	}
}

// wantProblem checks a problem answer and returns it.
func wantProblem(t testing.TB, w *httptest.ResponseRecorder, code int, typ string) Problem {
	t.Helper()
	wantStatus(t, w, code)
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json", ct)
	}
	p := decodeInto[Problem](t, w)
	if p.Status != code || p.Type != typ || p.Title == "" {
		t.Fatalf("problem %+v, want status %d type %s", p, code, typ)
	}
	return p
}

func hasFieldError(p Problem, field, ruleSubstr string) bool {
	for _, e := range p.Errors {
		if e.Field == field && strings.Contains(e.Rule, ruleSubstr) {
			return true
		}
	}
	return false
}

// countTasks counts asynq task records in every queue and state, straight from Redis.
func (e *env) countTasks() int {
	e.t.Helper()
	keys, err := e.db.Client(e.t).Keys(context.Background(), "asynq:{*}:t:*").Result()
	if err != nil {
		e.t.Fatal(err)
	}
	return len(keys)
}

func (e *env) taskInfo(id string) *asynq.TaskInfo {
	e.t.Helper()
	info, err := e.srv.findTask(context.Background(), id)
	if err != nil {
		e.t.Fatalf("find task %q: %v", id, err)
	}
	return info
}

func (e *env) wantNoTask(id string) {
	e.t.Helper()
	if _, err := e.srv.findTask(context.Background(), id); !errors.Is(err, tasks.ErrNotFound) {
		e.t.Fatalf("task %q: err %v, want ErrNotFound", id, err)
	}
}
