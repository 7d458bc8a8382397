package dashboard

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/console"
)

// QueuesPath is where asynqmon is served below the root path; the console (package console) is
// the home page.
const QueuesPath = "/queues"

// Dashboard is the asynq web console (asynqmon) behind proxyq's authentication, cross-origin
// protection and payload redaction. It is an http.Handler for RootPath and everything below
// it; mount it on a mux at that path. Safe for concurrent use.
type Dashboard struct {
	cfg     Config
	mon     *asynqmon.HTTPHandler
	rdb     redis.UniversalClient // the console's
	handler http.Handler
}

// New validates cfg (after WithDefaults) and builds the dashboard on the given Redis. It
// returns a *ConfigError naming the field, or an error when redis is nil. With AllowNoAuth and
// no credentials it logs a warning on log (nil: no logs).
func New(cfg Config, redisOpt asynq.RedisConnOpt, log *zap.Logger) (*Dashboard, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if redisOpt == nil {
		return nil, errors.New("dashboard: a Redis connection option is required")
	}
	if log == nil {
		log = zap.NewNop()
	}
	root := strings.TrimSuffix(cfg.RootPath, "/")
	opts := asynqmon.Options{
		RootPath:         root + QueuesPath,
		RedisConnOpt:     redisOpt,
		ReadOnly:         cfg.ReadOnly,
		PayloadFormatter: asynqmon.PayloadFormatterFunc(RedactPayload),
		ResultFormatter:  asynqmon.ResultFormatterFunc(FormatResult),
	}
	if cfg.ShowMessageContent {
		opts.PayloadFormatter = asynqmon.PayloadFormatterFunc(FullPayload)
	}
	mon := asynqmon.New(opts)
	rdb, ok := redisOpt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		_ = mon.Close()
		return nil, fmt.Errorf("dashboard: unsupported Redis option %T", redisOpt)
	}
	con, err := console.New(console.Config{RootPath: root, AsynqmonPath: root + QueuesPath, ReadOnly: cfg.ReadOnly,
		ShowMessageContent: cfg.ShowMessageContent}, rdb, log.Named("console"))
	if err != nil {
		_ = mon.Close()
		_ = rdb.Close()
		return nil, err
	}
	// The console is the home page; asynqmon answers below QueuesPath.
	site := http.NewServeMux()
	site.Handle(root+QueuesPath+"/", mon)
	site.Handle(root+QueuesPath, http.RedirectHandler(root+QueuesPath+"/", http.StatusFound))
	site.Handle(root+"/", con)

	// Inside out: the console and asynqmon, then cross-origin protection (with Basic auth a
	// browser would attach cached credentials to a forged cross-site POST or DELETE; Go's
	// CrossOriginProtection refuses those using Sec-Fetch-Site and Origin), then
	// authentication, then headers that apply to every answer, 401s included.
	var h http.Handler = site
	h = http.NewCrossOriginProtection().Handler(h)
	auth := newAuthenticator(cfg, log)
	if auth.enabled() {
		h = auth.wrap(h)
	} else {
		h = anonymous(h, cfg.ReadOnly)
		if !cfg.AuthenticatedUpstream {
			msg := "dashboard: authentication is OFF (--insecure-no-auth): anyone who can reach this address can read every queue"
			if !cfg.ReadOnly {
				msg += " and delete or re-run messages"
			}
			log.Warn(msg)
		}
	}
	h = securityHeaders(h)
	log.Info("dashboard ready", zap.String("root_path", cfg.RootPath), zap.Bool("read_only", cfg.ReadOnly),
		zap.Bool("basic_auth", auth.basic), zap.Bool("bearer_auth", auth.bearer),
		zap.Bool("show_message_content", cfg.ShowMessageContent))
	return &Dashboard{cfg: cfg, mon: mon, rdb: rdb, handler: h}, nil
}

// ServeHTTP implements http.Handler.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) { d.handler.ServeHTTP(w, r) }

// Mount routes d's root path, and everything below it, to d on mux; a root path other than "/"
// also gets a redirect from "/", so the bare address leads somewhere.
func (d *Dashboard) Mount(mux *http.ServeMux) {
	root := d.RootPath()
	if root == "/" {
		mux.Handle("/", d)
		return
	}
	mux.Handle(root+"/", d)
	mux.Handle(root, http.RedirectHandler(root+"/", http.StatusFound))
	mux.Handle("GET /{$}", http.RedirectHandler(root+"/", http.StatusFound))
}

// RootPath returns the normalised root path ("/" or e.g. "/dashboard", no trailing slash).
func (d *Dashboard) RootPath() string { return d.cfg.RootPath }

// Close releases the dashboard's Redis connections. It returns the first close error.
func (d *Dashboard) Close() error { return errors.Join(d.mon.Close(), d.rdb.Close()) }

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
