package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/worker"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Roles. A viewer reads; an operator also retries, cancels and reveals message content.
const (
	RoleViewer   = "viewer"
	RoleOperator = "operator"
)

// Config configures the console.
type Config struct {
	// AsynqmonPath is where the host serves asynqmon (links to a task there), e.g. "/queues".
	// Empty: no links.
	AsynqmonPath string

	// Now is the clock (default time.Now).
	Now func() time.Time

	// PageSize is the number of messages per list page (default 25, at most 200).
	PageSize int

	// ReadOnly refuses every action and hides the buttons, whatever the caller's role.
	ReadOnly bool

	// RootPath is the path the console is mounted at ("" or "/" for the root, or e.g. "/dashboard").
	RootPath string

	// ShowMessageContent lets every caller reveal a message's body and media URLs (audited);
	// without it only operators may.
	ShowMessageContent bool
}

// WithDefaults returns c with its zero fields defaulted.
func (c Config) WithDefaults() Config {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.PageSize == 0 {
		c.PageSize = 25
	}
	c.RootPath = strings.TrimRight(c.RootPath, "/")
	c.AsynqmonPath = strings.TrimRight(c.AsynqmonPath, "/")
	return c
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if c.PageSize < 1 || c.PageSize > 200 {
		return fmt.Errorf("console: PageSize must be between 1 and 200, got %d", c.PageSize)
	}
	if c.RootPath != "" && !strings.HasPrefix(c.RootPath, "/") {
		return fmt.Errorf("console: RootPath must start with \"/\", got %q", c.RootPath)
	}
	return nil
}

// Console is the operator UI as an http.Handler for its RootPath and below. Safe for
// concurrent use.
type Console struct {
	cfg   Config
	rdb   redis.UniversalClient
	insp  *asynq.Inspector
	log   *zap.Logger
	pages map[string]*template.Template
	mux   *http.ServeMux
	// guard refuses to cancel a message whose send may be in flight or done (the ledger's
	// view, as `proxyq serve` checks before its cancel).
	guard  func(ctx context.Context, taskID string) error
	secret []byte // keys the CSRF tokens; per process
}

// New builds the console on rdb (the Redis asynq and proxyq use). It returns an error for an
// invalid cfg or a nil rdb. log may be nil.
func New(cfg Config, rdb redis.UniversalClient, log *zap.Logger) (*Console, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if rdb == nil {
		return nil, errors.New("console: a Redis client is required")
	}
	if log == nil {
		log = zap.NewNop()
	}
	c := &Console{cfg: cfg, rdb: rdb, insp: asynq.NewInspectorFromRedisClient(rdb), log: log, pages: map[string]*template.Template{}}
	c.secret = make([]byte, 32)
	if _, err := rand.Read(c.secret); err != nil {
		return nil, err
	}
	base := template.New("layout.html").Funcs(c.funcs())
	base = template.Must(base.ParseFS(templateFS, "templates/layout.html", "templates/parts.html"))
	for _, page := range []string{"home", "message", "list", "audit", "confirm", "error"} {
		t := template.Must(template.Must(base.Clone()).ParseFS(templateFS, "templates/"+page+".html"))
		c.pages[page] = t
	}
	c.guard = worker.NewSendGuard(worker.NewLedger(rdb, worker.DefaultLedgerTTL), c.insp)
	sub, _ := fs.Sub(staticFS, "static")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", c.home)
	mux.HandleFunc("GET /search", c.search)
	mux.HandleFunc("GET /m/{id}", c.message)
	mux.HandleFunc("GET /audit", c.audit)
	mux.HandleFunc("GET /static/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		http.StripPrefix("/static/", http.FileServerFS(sub)).ServeHTTP(w, r)
	})
	mux.HandleFunc("POST /action/{action}", c.action)
	mux.HandleFunc("POST /bulk-retry", c.bulkRetry)
	c.mux = mux
	return c, nil
}

// ServeHTTP implements http.Handler. Requests are routed below RootPath.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if h.Get("Cache-Control") == "" {
		h.Set("Cache-Control", "no-store")
	}
	path := strings.TrimPrefix(r.URL.Path, c.cfg.RootPath)
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = path
	r2.URL.RawPath = ""
	c.mux.ServeHTTP(w, r2)
}

// Identity is who a request comes from, as the host's authentication established it.
type Identity struct {
	Name string // user name, "token", or "anonymous" when the host runs without authentication
	Role string // RoleViewer or RoleOperator
}

type identityKey struct{}

// WithIdentity returns ctx carrying who the caller is; the host's authentication sets it.
// Without it a request is an anonymous viewer.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

func (c *Console) identity(r *http.Request) Identity {
	id, ok := r.Context().Value(identityKey{}).(Identity)
	if !ok {
		id = Identity{Name: "anonymous", Role: RoleViewer}
	}
	if c.cfg.ReadOnly {
		id.Role = RoleViewer
	}
	return id
}

func (c *Console) canAct(id Identity) bool { return !c.cfg.ReadOnly && id.Role == RoleOperator }

func (c *Console) canReveal(id Identity) bool {
	return c.cfg.ShowMessageContent || id.Role == RoleOperator
}

// csrfToken binds a form to the caller: HMAC of the caller's name under a per-process secret.
func (c *Console) csrfToken(id Identity) string {
	m := hmac.New(sha256.New, c.secret)
	m.Write([]byte(id.Name))
	return hex.EncodeToString(m.Sum(nil))
}

func (c *Console) checkCSRF(r *http.Request, id Identity) bool {
	got, err := hex.DecodeString(r.PostFormValue("csrf"))
	if err != nil {
		return false
	}
	want, _ := hex.DecodeString(c.csrfToken(id))
	return hmac.Equal(got, want)
}

// page is what every template gets.
type page struct {
	Root      string
	Title     string
	Who       Identity
	CanAct    bool
	CanReveal bool
	ReadOnly  bool
	CSRF      string
	Query     string
	Asynqmon  string
	Live      bool // the page refreshes its #live part every 2 s
	Data      any
}

func (c *Console) newPage(r *http.Request, title string, data any) page {
	id := c.identity(r)
	return page{Root: c.cfg.RootPath, Title: title, Who: id, CanAct: c.canAct(id), CanReveal: c.canReveal(id),
		ReadOnly: c.cfg.ReadOnly, CSRF: c.csrfToken(id), Asynqmon: c.cfg.AsynqmonPath, Data: data}
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, name string, status int, p page) {
	t := c.pages[name]
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	tmpl := "layout.html"
	if r.URL.Query().Get("fragment") == "1" {
		tmpl = "live" // only the part that refreshes
	}
	w.WriteHeader(status)
	if err := t.ExecuteTemplate(w, tmpl, p); err != nil {
		c.log.Warn("console: render", zap.String("page", name), zap.Error(err))
	}
}

func (c *Console) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	c.render(w, r, "error", status, c.newPage(r, http.StatusText(status), msg))
}

func (c *Console) funcs() template.FuncMap {
	return template.FuncMap{
		"when": func(t time.Time) string {
			if t.IsZero() {
				return "–"
			}
			return t.UTC().Format("2006-01-02 15:04:05.000Z")
		},
		"ago": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			d := c.cfg.Now().Sub(t).Round(time.Second)
			if d < 0 {
				return "in " + (-d).String()
			}
			return d.String() + " ago"
		},
		"ms":          func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) + " ms" },
		"codeMeaning": codeMeaning,
		"twilioURL":   twilioURL,
		"pathEscape":  pathEscape,
		"json": func(v any) string {
			b, _ := json.MarshalIndent(v, "", "  ")
			return string(b)
		},
		"add":  func(a, b int) int { return a + b },
		"list": func(s ...string) []string { return s },
		"root": func() string { return c.cfg.RootPath },
		// errState is where messages with an error code end: a delivery error (30xxx) on a
		// completed message, a refused create in the archive.
		"errState": func(code int) string {
			if code >= 30000 && code < 31000 {
				return "completed"
			}
			return "archived"
		},
	}
}
