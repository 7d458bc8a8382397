package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/delivery"
	"github.com/proxyq/proxyq/tasks"
)

// SendGuard reports whether a message may already be on its way to Twilio. It returns nil
// when cancelling the task is safe as far as the guard knows, and a non-nil error when a
// send may be in flight or done, or when it cannot tell (it must fail closed). The worker's
// send ledger provides one. DELETE answers 409 whenever the guard returns non-nil.
type SendGuard func(ctx context.Context, taskID string) error

// HTTP server timeouts set by NewHTTPServer.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 15 * time.Second  // whole request, body included (1 MiB on a slow link)
	WriteTimeout      = 30 * time.Second  // above Config.RequestTimeout's default 10s
	IdleTimeout       = 120 * time.Second // keep-alive between requests
	MaxHeaderBytes    = 64 << 10
)

// Server is the HTTP API of `proxyq serve`, an http.Handler. It is safe for concurrent use
// and holds no global state, so tests and `proxyq dev` can run several.
type Server struct {
	cfg    Config
	enq    *tasks.Enqueuer
	insp   *asynq.Inspector
	guard  SendGuard
	log    *zap.Logger
	tokens tokenSet
	dec    *decoder
	locks  keyLocks
	now    func() time.Time

	mux      *http.ServeMux
	routes   []route
	mounted  []string
	draining atomic.Bool
}

// route is one documented API operation; the OpenAPI test walks this table.
type route struct {
	method, pattern string
	public          bool // served without a bearer token
	handler         http.HandlerFunc
}

// publicPaths are served without authentication: probes carry no credentials.
var publicPaths = map[string]bool{"/healthz": true, "/readyz": true}

// New returns the API handler. enq enqueues, insp looks messages up and cancels them; the
// caller owns both and closes them after the HTTP server has shut down. guard may be nil
// (no ledger: only the tasks package's own checks protect a cancel). logger may be nil.
//
// It returns a *ConfigError for an invalid cfg (wrapping ErrNoTokens when cfg has no token:
// the API never runs open), or an error when enq or insp is nil.
func New(cfg Config, enq *tasks.Enqueuer, insp *asynq.Inspector, guard SendGuard, logger *zap.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if enq == nil || insp == nil {
		return nil, errors.New("httpapi: New needs a tasks.Enqueuer and an asynq.Inspector")
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	s := &Server{
		cfg: cfg, enq: enq, insp: insp, guard: guard, log: logger,
		tokens: newTokenSet(cfg.Tokens),
		now:    time.Now,
		mux:    http.NewServeMux(),
	}
	s.dec = newDecoder(cfg.Queues, cfg.MaxBatch, func() time.Time { return s.now() })
	s.dec.known = cfg.KnownAccount
	s.routes = []route{
		{method: http.MethodPost, pattern: "/v1/message-interactions", handler: s.handleCreate},
		{method: http.MethodPost, pattern: "/v1/message-interactions:batch", handler: s.handleBatch},
		{method: http.MethodPost, pattern: ConversationsPath, handler: s.handleCreateConversation},
		{method: http.MethodGet, pattern: "/v1/message-interactions/{id}", handler: s.handleGet},
		{method: http.MethodDelete, pattern: "/v1/message-interactions/{id}", handler: s.handleDelete},
		{method: http.MethodGet, pattern: "/v1/openapi.json", handler: s.handleOpenAPI},
		{method: http.MethodPost, pattern: delivery.CallbackPath, public: true, handler: s.handleCallback},
		{method: http.MethodPost, pattern: delivery.ReceiptsPath, public: true, handler: s.handleReceipts},
		{method: http.MethodGet, pattern: "/healthz", public: true, handler: s.handleHealth},
		{method: http.MethodGet, pattern: "/readyz", public: true, handler: s.handleReady},
	}
	allowed := map[string][]string{}
	var paths []string
	for _, rt := range s.routes {
		s.mux.HandleFunc(rt.method+" "+rt.pattern, rt.handler)
		if allowed[rt.pattern] == nil {
			paths = append(paths, rt.pattern)
		}
		allowed[rt.pattern] = append(allowed[rt.pattern], rt.method)
	}
	// A method-less pattern per path catches the other methods, so a 405 is a problem
	// document with an Allow header rather than net/http's plain text.
	for _, p := range paths {
		allow := allowed[p]
		if contains(allow, http.MethodGet) {
			allow = append(allow, http.MethodHead)
		}
		s.mux.HandleFunc(p, s.methodNotAllowed(strings.Join(allow, ", ")))
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, newProblem(http.StatusNotFound, ProblemNotFound, "no such route"))
	})
	return s, nil
}

// Mount serves h under prefix behind the same bearer-token check as the API: `proxyq serve
// --dashboard` mounts the asynq dashboard ("/dashboard/", with asynqmon's RootPath set to
// "/dashboard") and Prometheus metrics ("/metrics"). A prefix ending in "/" serves the whole
// subtree; h sees the full path (wrap it in http.StripPrefix if it wants otherwise).
//
// Mount panics, like http.ServeMux.Handle, on a programming error: a prefix that does not
// start with "/", or one that would shadow the API ("/", "/v1…", "/healthz", "/readyz").
// Call it before serving.
func (s *Server) Mount(prefix string, h http.Handler) {
	switch {
	case h == nil:
		panic("httpapi: Mount " + prefix + ": nil handler")
	case !strings.HasPrefix(prefix, "/") || prefix == "/":
		panic("httpapi: Mount prefix must start with / and name a path, got " + fmt.Sprintf("%q", prefix))
	case prefix == "/v1" || strings.HasPrefix(prefix, "/v1/") || strings.HasPrefix(prefix, "/healthz") || strings.HasPrefix(prefix, "/readyz"):
		panic("httpapi: Mount prefix " + fmt.Sprintf("%q", prefix) + " would shadow the API")
	}
	s.mux.Handle(prefix, h)
	s.mounted = append(s.mounted, prefix)
}

// Drain makes GET /readyz answer 503 from now on, so load balancers stop sending new
// requests while in-flight ones finish. Graceful shutdown in cmd:
//
//	api.Drain()                          // readiness fails
//	time.Sleep(drainDelay)               // optional: let endpoints update (a few seconds)
//	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
//	defer cancel()
//	err := httpSrv.Shutdown(ctx)         // stops accepting, waits for in-flight requests
//	enq.Close(); insp.Close()            // only after Shutdown returned
//
// Every request's Redis work is bounded by Config.RequestTimeout, so Shutdown with a
// timeout above it (PROXYQ_SHUTDOWN_TIMEOUT, 45s) lets each request finish.
func (s *Server) Drain() { s.draining.Store(true) }

// NewHTTPServer returns an http.Server for h with every timeout set (ReadHeaderTimeout,
// ReadTimeout, WriteTimeout, IdleTimeout and MaxHeaderBytes from this package's constants).
// Run it with ListenAndServe (which returns http.ErrServerClosed after Shutdown) and stop it
// with Shutdown as shown on Server.Drain.
func NewHTTPServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
}

// ServeHTTP authenticates every request except the health probes, then routes it. It logs
// one line per request (method, route, status, duration; never bodies or headers) and turns
// a handler panic into a 500 problem.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w}
	// The callback route authenticates by X-Twilio-Signature instead (package delivery).
	twilio := r.URL.Path == delivery.CallbackPath || r.URL.Path == delivery.ReceiptsPath
	public := publicPaths[r.URL.Path] || twilio
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("http handler panic", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Any("panic", v), zap.Stack("stack"))
			if rec.status == 0 {
				writeProblem(rec, r, newProblem(http.StatusInternalServerError, ProblemInternal, ""))
			}
		}
		s.logRequest(r, rec.status, time.Since(start), public && !twilio)
	}()
	if !public {
		authed := s.authenticate(rec, r)
		if authed == nil {
			return
		}
		r = authed
	}
	s.mux.ServeHTTP(rec, r)
}

func (s *Server) logRequest(r *http.Request, status int, d time.Duration, public bool) {
	if status == 0 {
		status = http.StatusOK
	}
	level := zap.InfoLevel
	switch {
	case public:
		level = zap.DebugLevel // probes every few seconds; a 503 while draining is expected
	case status >= 500:
		level = zap.ErrorLevel
	}
	route := r.Pattern
	if route == "" {
		route = "-"
	}
	fields := []zap.Field{
		zap.String("method", r.Method), zap.String("route", route), zap.Int("status", status),
		zap.Duration("duration", d), zap.String("remote", r.RemoteAddr),
	}
	if id := r.PathValue("id"); id != "" {
		fields = append(fields, zap.String("task_id", id))
	}
	if ce := s.log.Check(level, "http request"); ce != nil {
		ce.Write(fields...)
	}
}

// handleCallback routes Twilio's status callbacks to the delivery package, which checks
// their signature and records them.
func (s *Server) handleCallback(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Callbacks == nil {
		writeProblem(w, r, newProblem(http.StatusNotFound, ProblemNotFound,
			"status callbacks are not enabled on this server (set PROXYQ_PUBLIC_URL and TWILIO_AUTH_TOKEN)"))
		return
	}
	s.cfg.Callbacks.ServeHTTP(w, r)
}

// handleReceipts routes Twilio Conversations' delivery receipts (onDeliveryUpdated) to the
// delivery package, which checks their signature and records them.
func (s *Server) handleReceipts(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Receipts == nil {
		writeProblem(w, r, newProblem(http.StatusNotFound, ProblemNotFound,
			"Conversations delivery receipts are not enabled on this server (set PROXYQ_PUBLIC_URL and TWILIO_AUTH_TOKEN)"))
		return
	}
	s.cfg.Receipts.ServeHTTP(w, r)
}

func (s *Server) methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeProblem(w, r, newProblem(http.StatusMethodNotAllowed, ProblemMethodNotAllowed, "allowed: "+allow))
	}
}

// statusRecorder remembers the status code for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and deadlines of mounted handlers.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
