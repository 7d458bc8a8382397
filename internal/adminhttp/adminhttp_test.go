package adminhttp_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/proxyq/proxyq/internal/adminhttp"
	"github.com/proxyq/proxyq/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// get serves one request through h and returns the status and body.
func get(t *testing.T, h http.Handler, method, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Code, rec.Body.String()
}

func TestEndpoints(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "adminhttp_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)

	tests := []struct {
		name       string
		ready      func(context.Context) error
		method     string
		path       string
		wantStatus int
		wantBody   string
	}{
		{"healthz", nil, http.MethodGet, "/healthz", http.StatusOK, "ok\n"},
		{"healthz while unready", func(context.Context) error { return errors.New("down") }, http.MethodGet, "/healthz", http.StatusOK, "ok\n"},
		{"readyz without check", nil, http.MethodGet, "/readyz", http.StatusOK, "ready\n"},
		{"readyz ready", func(context.Context) error { return nil }, http.MethodGet, "/readyz", http.StatusOK, "ready\n"},
		{"readyz not ready", func(context.Context) error { return errors.New("redis: connection refused") }, http.MethodGet, "/readyz", http.StatusServiceUnavailable, "not ready: redis: connection refused\n"},
		{"readyz head", nil, http.MethodHead, "/readyz", http.StatusOK, ""},
		{"metrics", nil, http.MethodGet, "/metrics", http.StatusOK, "adminhttp_test_total 3"},
		{"metrics post", nil, http.MethodPost, "/metrics", http.StatusMethodNotAllowed, ""},
		{"unknown path", nil, http.MethodGet, "/debug/pprof/", http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, body := get(t, adminhttp.New(reg, tt.ready), tt.method, tt.path)
			if status != tt.wantStatus {
				t.Fatalf("%s %s: status %d, want %d (body %q)", tt.method, tt.path, status, tt.wantStatus, body)
			}
			if !strings.Contains(body, tt.wantBody) {
				t.Fatalf("%s %s: body %q, want it to contain %q", tt.method, tt.path, body, tt.wantBody)
			}
		})
	}
}

// A check that ignores its context must not hold the probe: the answer is 503 at the deadline.
func TestReadyzCheckThatHangs(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	sawDeadline := make(chan bool, 1)
	h := adminhttp.New(nil, func(ctx context.Context) error {
		_, ok := ctx.Deadline()
		sawDeadline <- ok
		<-release
		return nil
	})
	status, body := get(t, h, http.MethodGet, "/readyz")
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "did not answer") {
		t.Fatalf("status %d body %q, want 503 naming the timeout", status, body)
	}
	if !<-sawDeadline {
		t.Fatal("the check's context had no deadline")
	}
}

func TestNilRegistryServesEmptyMetrics(t *testing.T) {
	t.Parallel()
	if status, _ := get(t, adminhttp.New(nil, nil), http.MethodGet, "/metrics"); status != http.StatusOK {
		t.Fatalf("status %d, want 200", status)
	}
}

func TestRegisterQueueMetrics(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	client := asynq.NewClient(db.ConnOpt())
	t.Cleanup(func() { _ = client.Close() })
	for range 2 {
		if _, err := client.Enqueue(asynq.NewTask("adminhttp:test", nil), asynq.Queue("critical")); err != nil {
			t.Fatalf("enqueue: %v", err)
		}
	}

	reg := prometheus.NewRegistry()
	closer, err := adminhttp.RegisterQueueMetrics(reg, db.ConnOpt())
	if err != nil {
		t.Fatalf("RegisterQueueMetrics: %v", err)
	}
	t.Cleanup(func() { _ = closer.Close() })
	// The runtime collectors tolerate being registered again.
	if err := adminhttp.RegisterRuntimeMetrics(reg); err != nil {
		t.Fatalf("RegisterRuntimeMetrics after RegisterQueueMetrics: %v", err)
	}

	status, body := get(t, adminhttp.New(reg, nil), http.MethodGet, "/metrics")
	if status != http.StatusOK {
		t.Fatalf("status %d, want 200", status)
	}
	for _, want := range []string{
		`asynq_queue_size{queue="critical"} 2`,
		`asynq_tasks_enqueued_total{queue="critical",state="pending"} 2`,
		"go_goroutines ",
		"process_start_time_seconds ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// With Redis gone, the queue collector fails but the scrape still serves everything else.
func TestQueueMetricsWithRedisDown(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	closer, err := adminhttp.RegisterQueueMetrics(reg, asynq.RedisClientOpt{Addr: closedPort(t), DialTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("RegisterQueueMetrics: %v", err)
	}
	t.Cleanup(func() { _ = closer.Close() })
	status, body := get(t, adminhttp.New(reg, nil), http.MethodGet, "/metrics")
	if status != http.StatusOK || !strings.Contains(body, "go_goroutines ") {
		t.Fatalf("status %d, want 200 with the runtime metrics; body starts %.200q", status, body)
	}
	if strings.Contains(body, "asynq_queue_size") {
		t.Fatal("queue metrics served without Redis")
	}
}

func TestListenAndClose(t *testing.T) {
	t.Parallel()
	srv, err := adminhttp.Listen("127.0.0.1:0", adminhttp.New(nil, nil))
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	resp, err := http.Get("http://" + srv.Addr() + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Fatalf("GET /healthz: %d %q", resp.StatusCode, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := http.Get("http://" + srv.Addr() + "/healthz"); err == nil {
		t.Fatal("server still answers after Close")
	}

	// The address is now free, and a taken address is an error naming it.
	other, err := adminhttp.Listen("127.0.0.1:0", adminhttp.New(nil, nil))
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { _ = other.Close(context.Background()) })
	if _, err := adminhttp.Listen(other.Addr(), adminhttp.New(nil, nil)); err == nil || !strings.Contains(err.Error(), other.Addr()) {
		t.Fatalf("Listen on a taken address: %v, want an error naming %s", err, other.Addr())
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
