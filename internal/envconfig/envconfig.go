package envconfig

import (
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/proxyq/proxyq/conversations"
	"github.com/proxyq/proxyq/httpapi"
	"github.com/proxyq/proxyq/internal/redisurl"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/worker"
)

// DefaultRedisURL is REDIS_URL's default.
const DefaultRedisURL = "redis://127.0.0.1:6379/0"

// Env reads typed values through Getenv, remembering the first malformed one in Err so a
// caller can report it by variable name after reading everything. Values are trimmed; an
// empty value means the default.
type Env struct {
	Getenv func(string) string
	Err    error // the first malformed value: NAME="value": what is wanted
}

// New is an Env reading through getenv.
func New(getenv func(string) string) *Env { return &Env{Getenv: getenv} }

// Fail records a malformed value unless one was recorded before.
func (e *Env) Fail(name, value, want string) {
	if e.Err == nil {
		e.Err = fmt.Errorf("%s=%q: %s", name, value, want)
	}
}

// String is the variable's value, or def when it is unset or blank.
func (e *Env) String(name, def string) string {
	if v := strings.TrimSpace(e.Getenv(name)); v != "" {
		return v
	}
	return def
}

// Duration is a Go duration, 0 or more.
func (e *Env) Duration(name string, def time.Duration) time.Duration {
	v := strings.TrimSpace(e.Getenv(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		e.Fail(name, v, "want a Go duration such as 15s, 500ms or 1h")
		return def
	}
	return d
}

// Int is a whole number, 0 or more.
func (e *Env) Int(name string, def int) int {
	v := strings.TrimSpace(e.Getenv(name))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		e.Fail(name, v, "want a whole number, 0 or more")
		return def
	}
	return n
}

// Float is a finite number, 0 or more.
func (e *Env) Float(name string, def float64) float64 {
	v := strings.TrimSpace(e.Getenv(name))
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || !(f >= 0) || math.IsInf(f, 0) {
		e.Fail(name, v, "want a finite number, 0 or more")
		return def
	}
	return f
}

// RedisURL parses a REDIS_URL value: a single server, a Sentinel-managed master or a Redis
// Cluster (the forms are internal/redisurl's). The error quotes the URL with its password
// redacted.
func RedisURL(url string) (asynq.RedisConnOpt, error) {
	opt, err := redisurl.Parse(url)
	var perr *redisurl.Error
	if errors.As(err, &perr) {
		return nil, fmt.Errorf("REDIS_URL=%q: %v (want e.g. %s)", perr.URL, perr.Err, redisurl.Example)
	}
	return opt, nil
}

// Redis reads REDIS_URL (default DefaultRedisURL).
func Redis(getenv func(string) string) (asynq.RedisConnOpt, error) {
	return RedisURL(New(getenv).String("REDIS_URL", DefaultRedisURL))
}

// Client reads the Twilio credentials and API location (TWILIO_*, PROXYQ_API_BASE_URL,
// PROXYQ_HTTP_TIMEOUT), applies defaults and validates.
func Client(getenv func(string) string) (proxyclient.Config, error) {
	e := New(getenv)
	cfg := proxyclient.Config{
		AccountSID:  e.String("TWILIO_ACCOUNT_SID", ""),
		AuthToken:   e.String("TWILIO_AUTH_TOKEN", ""),
		APIKey:      e.String("TWILIO_API_KEY", ""),
		APISecret:   e.String("TWILIO_API_SECRET", ""),
		Edge:        e.String("TWILIO_EDGE", ""),
		Region:      e.String("TWILIO_REGION", ""),
		BaseURL:     e.String("PROXYQ_API_BASE_URL", ""),
		HTTPTimeout: e.Duration("PROXYQ_HTTP_TIMEOUT", worker.DefaultHTTPTimeout),
	}
	if e.Err != nil {
		return cfg, e.Err
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return cfg, ClientError(err)
	}
	return cfg, nil
}

// Conversations is the Conversations client's configuration: the Proxy client's credentials,
// edge, region, timeout and user agent (one Twilio account serves both APIs), with its own API
// location, PROXYQ_CONVERSATIONS_BASE_URL (default conversations.twilio.com, by edge and
// region). Validation errors name the variables.
func Conversations(getenv func(string) string, proxy proxyclient.Config) (conversations.Config, error) {
	cfg := conversations.Config{
		AccountSID: proxy.AccountSID, AuthToken: proxy.AuthToken, APIKey: proxy.APIKey, APISecret: proxy.APISecret,
		Edge: proxy.Edge, Region: proxy.Region, HTTPTimeout: proxy.HTTPTimeout, MaxRetryAfter: proxy.MaxRetryAfter,
		MaxIdleConnsPerHost: proxy.MaxIdleConnsPerHost, UserAgent: proxy.UserAgent,
		BaseURL: New(getenv).String("PROXYQ_CONVERSATIONS_BASE_URL", ""),
	}.WithDefaults()
	if err := cfg.Validate(); err != nil {
		var verr *proxyclient.ValidationError
		if errors.As(err, &verr) && verr.Field == "BaseURL" {
			return cfg, fmt.Errorf("PROXYQ_CONVERSATIONS_BASE_URL %s", verr.Rule)
		}
		return cfg, ClientError(err)
	}
	return cfg, nil
}

// ClientError names the environment variable behind a proxyclient config field in a
// validation error; other errors pass through.
func ClientError(err error) error {
	envOf := map[string]string{
		"AccountSID": "TWILIO_ACCOUNT_SID", "AuthToken": "TWILIO_AUTH_TOKEN", "APIKey": "TWILIO_API_KEY",
		"APISecret": "TWILIO_API_SECRET", "Edge": "TWILIO_EDGE", "Region": "TWILIO_REGION",
		"BaseURL": "PROXYQ_API_BASE_URL", "HTTPTimeout": "PROXYQ_HTTP_TIMEOUT",
	}
	var verr *proxyclient.ValidationError
	if errors.As(err, &verr) && envOf[verr.Field] != "" {
		// The rule may name other fields ("is required (or APIKey with APISecret)"): the
		// operator sets variables, so name those too.
		rule := verr.Rule
		for field, env := range envOf {
			rule = regexp.MustCompile(`\b`+field+`\b`).ReplaceAllString(rule, env)
		}
		return fmt.Errorf("%s %s", envOf[verr.Field], rule)
	}
	return err
}

// Worker reads the worker policy (see worker.Config for meanings and defaults), applies
// defaults and validates.
func Worker(getenv func(string) string) (worker.Config, error) {
	cfg, err := RawWorker(getenv)
	if err != nil {
		return cfg, err
	}
	return FinishWorker(cfg, nil)
}

// RawWorker reads the worker variables without applying defaults or validating, so that
// flags can override values before defaults derived from them (ShutdownTimeout from
// HTTPTimeout) are computed. It returns an error naming a malformed variable.
func RawWorker(getenv func(string) string) (worker.Config, error) {
	e := New(getenv)
	cfg := worker.Config{
		Concurrency:          e.Int("PROXYQ_CONCURRENCY", 0),
		DequeueLoops:         e.Int("PROXYQ_DEQUEUE_LOOPS", 0),
		HTTPTimeout:          e.Duration("PROXYQ_HTTP_TIMEOUT", 0),
		ShutdownTimeout:      e.Duration("PROXYQ_SHUTDOWN_TIMEOUT", 0),
		PollInterval:         e.Duration("PROXYQ_POLL_INTERVAL", 0),
		LaneRecheck:          e.Duration("PROXYQ_LANE_RECHECK", 0),
		DelayedCheckInterval: e.Duration("PROXYQ_DELAYED_CHECK_INTERVAL", 0),
		SendWithin:           e.Duration("PROXYQ_SEND_WITHIN", 0),
		BackoffBase:          e.Duration("PROXYQ_BACKOFF_BASE", 0),
		BackoffMax:           e.Duration("PROXYQ_BACKOFF_MAX", 0),
		MaxInFlight:          e.Int("PROXYQ_MAX_IN_FLIGHT", 0),
		RateLimit:            e.Float("PROXYQ_RATE_LIMIT", 0),
		RateBurst:            e.Int("PROXYQ_RATE_BURST", 0),
		LimiterMaxWait:       e.Duration("PROXYQ_LIMITER_MAX_WAIT", 0),
		ReconcileSettle:      e.Duration("PROXYQ_RECONCILE_SETTLE", 0),
		ReconcileSkew:        e.Duration("PROXYQ_RECONCILE_SKEW", 0),
		ReconcileMaxPages:    e.Int("PROXYQ_RECONCILE_MAX_PAGES", 0),
		RedisWaitReplicas:    e.Int("PROXYQ_REDIS_WAIT_REPLICAS", 0),
		RedisWaitTimeout:     e.Duration("PROXYQ_REDIS_WAIT_TIMEOUT", 0),
	}
	if q := e.String("PROXYQ_QUEUES", ""); q != "" {
		queues, err := worker.ParseQueues(q)
		if err != nil {
			e.Fail("PROXYQ_QUEUES", q, err.Error())
		}
		cfg.Queues = queues
	}
	return cfg, e.Err
}

// FinishWorker applies defaults and validates. flagOf maps a worker.Config field to the
// flag that set it, so the error names what the operator typed; other fields are named by
// their environment variable.
func FinishWorker(cfg worker.Config, flagOf map[string]string) (worker.Config, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return cfg, workerError(err, flagOf)
	}
	return cfg, nil
}

// workerEnvOf maps worker.Config fields to their environment variables.
var workerEnvOf = map[string]string{
	"BackoffBase": "PROXYQ_BACKOFF_BASE", "BackoffMax": "PROXYQ_BACKOFF_MAX",
	"Concurrency": "PROXYQ_CONCURRENCY", "DequeueLoops": "PROXYQ_DEQUEUE_LOOPS", "DelayedCheckInterval": "PROXYQ_DELAYED_CHECK_INTERVAL",
	"HTTPTimeout": "PROXYQ_HTTP_TIMEOUT", "LimiterMaxWait": "PROXYQ_LIMITER_MAX_WAIT",
	"MaxInFlight": "PROXYQ_MAX_IN_FLIGHT", "RateLimit": "PROXYQ_RATE_LIMIT", "RateBurst": "PROXYQ_RATE_BURST",
	"PollInterval": "PROXYQ_POLL_INTERVAL", "LaneRecheck": "PROXYQ_LANE_RECHECK", "Queues": "PROXYQ_QUEUES",
	"ReconcileMaxPages": "PROXYQ_RECONCILE_MAX_PAGES", "ReconcileSettle": "PROXYQ_RECONCILE_SETTLE",
	"ReconcileSkew": "PROXYQ_RECONCILE_SKEW", "SendWithin": "PROXYQ_SEND_WITHIN",
	"ShutdownTimeout":   "PROXYQ_SHUTDOWN_TIMEOUT",
	"RedisWaitReplicas": "PROXYQ_REDIS_WAIT_REPLICAS", "RedisWaitTimeout": "PROXYQ_REDIS_WAIT_TIMEOUT",
	"ServiceWindow": "PROXYQ_SERVICE_WINDOW", // named by checks that compare with it
}

var workerFieldPattern = func() *regexp.Regexp {
	fields := make([]string, 0, len(workerEnvOf))
	for f := range workerEnvOf {
		fields = append(fields, f)
	}
	return regexp.MustCompile(`\b(` + strings.Join(fields, "|") + `)\b`)
}()

// workerError rewrites worker.Config's field names in a validation message as the
// variables (or flags) that set them: "PROXYQ_CONCURRENCY must be between 1 and 10000, got 0".
// The worker's messages start with "worker config: <Field> …"; anything else passes through.
func workerError(err error, flagOf map[string]string) error {
	msg := strings.TrimPrefix(err.Error(), "worker config: ")
	return errors.New(workerFieldPattern.ReplaceAllStringFunc(msg, func(field string) string {
		if f := flagOf[field]; f != "" {
			return f
		}
		return workerEnvOf[field]
	}))
}

// EnqueueOptions reads the producer-side task options: PROXYQ_MAX_RETRY (failed
// attempts before a message is archived, default 25) and PROXYQ_RETENTION (how long a finished
// message and its outcome stay readable, default 72h). They are fixed when a message is
// enqueued, so every producer path (enqueue, serve) applies them.
func EnqueueOptions(getenv func(string) string) ([]tasks.Option, error) {
	e := New(getenv)
	maxRetry := e.Int("PROXYQ_MAX_RETRY", tasks.DefaultMaxRetry)
	retention := e.Duration("PROXYQ_RETENTION", tasks.DefaultRetention)
	if e.Err != nil {
		return nil, e.Err
	}
	return []tasks.Option{tasks.MaxRetry(maxRetry), tasks.Retention(retention)}, nil
}

// EnqueuerOptions reads PROXYQ_REDIS_WAIT_REPLICAS and PROXYQ_REDIS_WAIT_TIMEOUT for the
// producers (enqueue, serve): with replicas, an enqueue is reported done only once that many
// replicas have it, as the worker waits before each POST.
func EnqueuerOptions(getenv func(string) string) ([]tasks.EnqueuerOption, error) {
	e := New(getenv)
	n := e.Int("PROXYQ_REDIS_WAIT_REPLICAS", 0)
	timeout := e.Duration("PROXYQ_REDIS_WAIT_TIMEOUT", worker.DefaultRedisWaitTimeout)
	switch {
	case e.Err != nil:
		return nil, e.Err
	case n > 100:
		return nil, fmt.Errorf("PROXYQ_REDIS_WAIT_REPLICAS=%d: want 0 to 100", n)
	case timeout < time.Millisecond || timeout > 2*time.Second:
		return nil, fmt.Errorf("PROXYQ_REDIS_WAIT_TIMEOUT=%v: want 1ms to 2s", timeout)
	}
	return []tasks.EnqueuerOption{tasks.WaitForReplicas(n, timeout)}, nil
}

// Logger builds the zap logger writing to w from PROXYQ_LOG_LEVEL (debug|info|warn|error,
// default info; levelFlag, from a --log-level flag, wins when not "") and PROXYQ_LOG_FORMAT
// (json|console, default json).
func Logger(getenv func(string) string, levelFlag string, w io.Writer) (*zap.Logger, error) {
	e := New(getenv)
	levelName, source := e.String("PROXYQ_LOG_LEVEL", "info"), "PROXYQ_LOG_LEVEL"
	if levelFlag != "" {
		levelName, source = levelFlag, "--log-level"
	}
	level, err := zapcore.ParseLevel(levelName)
	if err != nil {
		return nil, fmt.Errorf("%s=%q: want debug, info, warn or error", source, levelName)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	switch format := e.String("PROXYQ_LOG_FORMAT", "json"); format {
	case "json":
		enc = zapcore.NewJSONEncoder(encCfg)
	case "console":
		encCfg.EncodeLevel = zapcore.CapitalColorLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	default:
		return nil, fmt.Errorf("PROXYQ_LOG_FORMAT=%q: want json or console", format)
	}
	// Lock: w may be any writer (a test buffer), and zap writes from many goroutines.
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level)), nil
}

// ServiceLimits reads PROXYQ_SERVICE_RATE ("off" switches per-Service limits off),
// PROXYQ_SERVICE_WINDOW, PROXYQ_SERVICE_MARGIN, PROXYQ_SERVICE_BURST, PROXYQ_SERVICE_MAX_WAIT and
// PROXYQ_SERVICE_LIMITS (KS…=rate,…), and the per-conversation limit of Conversations messages,
// PROXYQ_CONVERSATION_RATE over PROXYQ_CONVERSATION_WINDOW (default 30 per 1s).
func ServiceLimits(getenv func(string) string) (worker.ServiceLimits, error) {
	e := New(getenv)
	var lim worker.ServiceLimits
	if strings.EqualFold(e.String("PROXYQ_SERVICE_RATE", ""), "off") {
		lim.Off = true
		return lim, nil
	}
	lim.Rate = e.Float("PROXYQ_SERVICE_RATE", 0)
	lim.Window = e.Duration("PROXYQ_SERVICE_WINDOW", 0)
	lim.Margin = e.Duration("PROXYQ_SERVICE_MARGIN", 0)
	lim.MaxWait = e.Duration("PROXYQ_SERVICE_MAX_WAIT", 0)
	lim.BurstRate = e.Float("PROXYQ_SERVICE_BURST", 0)
	lim.ConversationRate = e.Float("PROXYQ_CONVERSATION_RATE", 0)
	lim.ConversationWindow = e.Duration("PROXYQ_CONVERSATION_WINDOW", 0)
	if s := e.String("PROXYQ_SERVICE_LIMITS", ""); s != "" {
		rates, err := worker.ParseServiceRates(s)
		if err != nil {
			e.Fail("PROXYQ_SERVICE_LIMITS", s, err.Error()+" (want KS…=60,KS…=100: requests/s per Service)")
		}
		lim.Services = rates
	}
	if e.Err != nil {
		return lim, e.Err
	}
	if err := lim.WithDefaults().Validate(); err != nil {
		r := strings.NewReplacer("ServiceRate", "PROXYQ_SERVICE_RATE", "ServiceWindow", "PROXYQ_SERVICE_WINDOW",
			"ServiceMargin", "PROXYQ_SERVICE_MARGIN", "ServiceMaxWait", "PROXYQ_SERVICE_MAX_WAIT", "ServiceBurst", "PROXYQ_SERVICE_BURST", "ServiceOverrides", "PROXYQ_SERVICE_LIMITS",
			"ConversationRate", "PROXYQ_CONVERSATION_RATE", "ConversationWindow", "PROXYQ_CONVERSATION_WINDOW")
		return lim, errors.New(r.Replace(strings.TrimPrefix(err.Error(), "service limits: ")))
	}
	return lim, nil
}

// API reads the HTTP API's configuration: the bearer tokens (PROXYQ_API_TOKENS or
// PROXYQ_API_TOKENS_FILE; one is required), the queue allow-list (PROXYQ_QUEUES, the workers'
// queues) and the producer options, validated; and PROXYQ_SHUTDOWN_TIMEOUT (defaultShutdown
// when unset or 0).
func API(getenv func(string) string, defaultShutdown time.Duration) (httpapi.Config, time.Duration, error) {
	var s httpapi.Config
	tokens, err := httpapi.LoadTokens(getenv("PROXYQ_API_TOKENS"), strings.TrimSpace(getenv("PROXYQ_API_TOKENS_FILE")))
	switch {
	case errors.Is(err, httpapi.ErrNoTokens):
		return s, 0, errors.New("no API bearer token: set PROXYQ_API_TOKENS (comma separated) or PROXYQ_API_TOKENS_FILE (a file with one token per line); the API never runs open")
	case err != nil:
		return s, 0, err
	}
	s.Tokens = tokens

	e := New(getenv)
	// The allow-list is the workers' queues: a message on a queue no worker reads would
	// never be sent. The names are sorted so logs and error messages are stable.
	queues := worker.DefaultQueues()
	if q := e.String("PROXYQ_QUEUES", ""); q != "" {
		if queues, err = worker.ParseQueues(q); err != nil {
			return s, 0, fmt.Errorf("PROXYQ_QUEUES=%q: %v", q, err)
		}
	}
	for name := range queues {
		s.Queues = append(s.Queues, name)
	}
	sort.Strings(s.Queues)

	shutdown := e.Duration("PROXYQ_SHUTDOWN_TIMEOUT", defaultShutdown)
	if e.Err != nil {
		return s, 0, e.Err
	}
	if shutdown == 0 {
		shutdown = defaultShutdown // 0 means the default, as for the worker
	}
	// PROXYQ_SEND_WITHIN is not applied here: it would stamp a send_before that differs on
	// each retry of a keyed POST (see httpapi.Config.EnqueueOptions); the worker applies it.
	if s.EnqueueOptions, err = EnqueueOptions(getenv); err != nil {
		return s, 0, err
	}
	if err := s.Validate(); err != nil {
		return s, 0, APIError(err)
	}
	return s, shutdown, nil
}

// APIError names the environment variable behind an httpapi.Config field in a validation
// error; other errors pass through.
func APIError(err error) error {
	var ce *httpapi.ConfigError
	if !errors.As(err, &ce) {
		return err
	}
	switch field := ce.Field; {
	case strings.HasPrefix(field, "Tokens"):
		return fmt.Errorf("PROXYQ_API_TOKENS / PROXYQ_API_TOKENS_FILE: %s %s", field, ce.Rule)
	case strings.HasPrefix(field, "Queues"):
		return fmt.Errorf("PROXYQ_QUEUES: %s", ce.Rule)
	}
	return err
}
