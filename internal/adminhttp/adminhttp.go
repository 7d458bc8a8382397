package adminhttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynq/x/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ReadyTimeout bounds one readiness check.
const ReadyTimeout = 2 * time.Second

// New returns the admin handler: GET /metrics from reg, GET /healthz, and GET /readyz backed by
// ready (nil: always ready). It never returns an error; a nil reg serves an empty registry.
func New(reg *prometheus.Registry, ready func(context.Context) error) http.Handler {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry: reg,
		// A failing collector (the queue collector while Redis is down) must not blank the
		// process's own metrics: those are what an operator needs most at that moment.
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := checkReady(r.Context(), ready); err != nil {
			writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
		writeText(w, http.StatusOK, "ready")
	})
	return mux
}

// checkReady runs ready with a ReadyTimeout deadline. It runs it in a goroutine so that a
// function that ignores its context still cannot hold the probe past the deadline.
func checkReady(parent context.Context, ready func(context.Context) error) error {
	if ready == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(parent, ReadyTimeout)
	defer cancel()
	done := make(chan error, 1) // buffered: a late answer must not block the goroutine forever
	go func() { done <- ready(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("readiness check did not answer within %v", ReadyTimeout)
	}
}

func writeText(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}

// RegisterRuntimeMetrics registers the Go runtime and process collectors on reg. Collectors
// that are already registered are left as they are. It returns any other registration error.
func RegisterRuntimeMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return fmt.Errorf("adminhttp: register runtime metrics: %w", err)
			}
		}
	}
	return nil
}

// RegisterQueueMetrics registers the runtime collectors (see RegisterRuntimeMetrics) and asynq's
// queue collector (asynq_queue_size, asynq_tasks_enqueued_total{queue,state}, …) reading the
// given Redis. The returned Closer releases the collector's Redis connection; call it when the
// process stops serving metrics. It returns a registration error, with nothing left open.
func RegisterQueueMetrics(reg prometheus.Registerer, redis asynq.RedisConnOpt) (io.Closer, error) {
	if err := RegisterRuntimeMetrics(reg); err != nil {
		return nil, err
	}
	insp := asynq.NewInspector(redis)
	if err := reg.Register(unchecked{metrics.NewQueueMetricsCollector(insp)}); err != nil {
		_ = insp.Close()
		return nil, fmt.Errorf("adminhttp: register queue metrics: %w", err)
	}
	return insp, nil
}

// unchecked hides a collector's descriptors from the registry. asynq's queue collector
// describes itself by collecting, which means a Redis round trip at registration time, and,
// when Redis is down then, descriptions that disagree with later scrapes. Its metric names are
// fixed and namespaced "asynq_", so the registry's consistency checks add nothing here.
type unchecked struct{ prometheus.Collector }

func (unchecked) Describe(chan<- *prometheus.Desc) {}

// Server is the admin handler listening on one address.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan error
}

// Listen starts serving h on addr (host:port; port 0 picks a free one). It returns the listen
// error, e.g. for an address in use.
func Listen(addr string, h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("adminhttp: listen on %s: %w", addr, err)
	}
	s := &Server{
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
		},
		ln:   ln,
		done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Addr is the address the server listens on, with the real port when 0 was asked for.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops accepting connections and waits, until ctx ends, for requests in progress. It
// returns ctx's error when it had to cut requests off, or the server's own error.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
		return err
	}
	if serveErr := <-s.done; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}
