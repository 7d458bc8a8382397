package dashboard

import (
	"errors"
	"net/http"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"go.uber.org/zap"
)

// Dashboard is the asynq web console (asynqmon) behind proxyq's authentication, cross-origin
// protection and payload redaction. It is an http.Handler for RootPath and everything below
// it; mount it on a mux at that path. Safe for concurrent use.
type Dashboard struct {
	cfg     Config
	mon     *asynqmon.HTTPHandler
	handler http.Handler
}

// New validates cfg (after WithDefaults) and builds the dashboard on the given Redis. It
// returns a *ConfigError naming the field, or an error when redis is nil. With AllowNoAuth and
// no credentials it logs a warning on log (nil: no logs).
func New(cfg Config, redis asynq.RedisConnOpt, log *zap.Logger) (*Dashboard, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if redis == nil {
		return nil, errors.New("dashboard: a Redis connection option is required")
	}
	if log == nil {
		log = zap.NewNop()
	}
	opts := asynqmon.Options{
		RootPath:         cfg.RootPath,
		RedisConnOpt:     redis,
		ReadOnly:         cfg.ReadOnly,
		PayloadFormatter: asynqmon.PayloadFormatterFunc(RedactPayload),
		ResultFormatter:  asynqmon.ResultFormatterFunc(FormatResult),
	}
	if cfg.ShowMessageContent {
		opts.PayloadFormatter = asynqmon.PayloadFormatterFunc(FullPayload)
	}
	if cfg.RootPath == "/" {
		opts.RootPath = "" // asynqmon's own spelling of the root
	}
	mon := asynqmon.New(opts)

	// Inside out: asynqmon, then cross-origin protection (with Basic auth a browser would
	// attach cached credentials to a forged cross-site POST or DELETE; Go's
	// CrossOriginProtection refuses those using Sec-Fetch-Site and Origin), then
	// authentication, then headers that apply to every answer, 401s included.
	var h http.Handler = mon
	h = http.NewCrossOriginProtection().Handler(h)
	auth := newAuthenticator(cfg, log)
	if auth.enabled() {
		h = auth.wrap(h)
	} else {
		msg := "dashboard: authentication is OFF (--insecure-no-auth): anyone who can reach this address can read every queue"
		if !cfg.ReadOnly {
			msg += " and delete or re-run messages"
		}
		log.Warn(msg)
	}
	h = securityHeaders(h)
	log.Info("dashboard ready", zap.String("root_path", cfg.RootPath), zap.Bool("read_only", cfg.ReadOnly),
		zap.Bool("basic_auth", auth.basic), zap.Bool("bearer_auth", auth.bearer),
		zap.Bool("show_message_content", cfg.ShowMessageContent))
	return &Dashboard{cfg: cfg, mon: mon, handler: h}, nil
}

// ServeHTTP implements http.Handler.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) { d.handler.ServeHTTP(w, r) }

// RootPath returns the normalised root path ("/" or e.g. "/dashboard", no trailing slash).
func (d *Dashboard) RootPath() string { return d.cfg.RootPath }

// Close releases the dashboard's Redis connections. It returns the first close error.
func (d *Dashboard) Close() error { return d.mon.Close() }

// securityHeaders keeps the console out of frames (its buttons delete and re-run messages),
// stops MIME sniffing and referrer leaks, and keeps payload views out of caches.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}
