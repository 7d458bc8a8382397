package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/proxyq/proxyq/internal/redisurl"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/worker"
)

// The environment mapping of every component's config lives here and only here; the README's
// configuration table lists the same variables.

const defaultRedisURL = "redis://127.0.0.1:6379/0"

// envReader reads typed values from the environment, remembering the first malformed one so a
// caller can report it by variable name after reading everything.
type envReader struct {
	getenv func(string) string
	err    error
}

func (m *Main) env() *envReader { return &envReader{getenv: m.Getenv} }

func (e *envReader) fail(name, value, want string) {
	if e.err == nil {
		e.err = usagef("%s=%q: %s", name, value, want)
	}
}

func (e *envReader) str(name, def string) string {
	if v := strings.TrimSpace(e.getenv(name)); v != "" {
		return v
	}
	return def
}

func (e *envReader) duration(name string, def time.Duration) time.Duration {
	v := strings.TrimSpace(e.getenv(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		e.fail(name, v, "want a Go duration such as 15s, 500ms or 1h")
		return def
	}
	return d
}

func (e *envReader) integer(name string, def int) int {
	v := strings.TrimSpace(e.getenv(name))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		e.fail(name, v, "want a whole number, 0 or more")
		return def
	}
	return n
}

func (e *envReader) float(name string, def float64) float64 {
	v := strings.TrimSpace(e.getenv(name))
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || !(f >= 0) || math.IsInf(f, 0) {
		e.fail(name, v, "want a finite number, 0 or more")
		return def
	}
	return f
}

// redisOpt parses a REDIS_URL value: a single server, a Sentinel-managed master or a Redis
// Cluster (the forms are internal/redisurl's).
func redisOpt(url string) (asynq.RedisConnOpt, error) {
	opt, err := redisurl.Parse(url)
	var perr *redisurl.Error
	if errors.As(err, &perr) {
		return nil, usagef("REDIS_URL=%q: %v (want e.g. %s)", perr.URL, perr.Err, redisurl.Example)
	}
	return opt, nil
}

// redactURL hides the passwords in a Redis URL for messages.
func redactURL(u string) string { return redisurl.Redact(u) }

// redisFromEnv reads REDIS_URL (default redis://127.0.0.1:6379/0).
func (m *Main) redisFromEnv() (asynq.RedisConnOpt, error) {
	return redisOpt(m.env().str("REDIS_URL", defaultRedisURL))
}

// clientConfigFromEnv reads the Twilio credentials and API location.
func (m *Main) clientConfigFromEnv() (proxyclient.Config, error) {
	e := m.env()
	cfg := proxyclient.Config{
		AccountSID:  e.str("TWILIO_ACCOUNT_SID", ""),
		AuthToken:   e.str("TWILIO_AUTH_TOKEN", ""),
		APIKey:      e.str("TWILIO_API_KEY", ""),
		APISecret:   e.str("TWILIO_API_SECRET", ""),
		Edge:        e.str("TWILIO_EDGE", ""),
		Region:      e.str("TWILIO_REGION", ""),
		BaseURL:     e.str("PROXYQ_API_BASE_URL", ""),
		HTTPTimeout: e.duration("PROXYQ_HTTP_TIMEOUT", worker.DefaultHTTPTimeout),
	}
	if e.err != nil {
		return cfg, e.err
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return cfg, usageError{clientConfigError(err)}
	}
	return cfg, nil
}

// clientConfigError names the environment variable behind a proxyclient config field.
func clientConfigError(err error) error {
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

// workerConfigFromEnv reads the worker policy (see worker.Config for meanings and defaults).
func (m *Main) workerConfigFromEnv() (worker.Config, error) {
	cfg, err := m.rawWorkerConfigFromEnv()
	if err != nil {
		return cfg, err
	}
	return finishWorkerConfig(cfg, nil)
}

// rawWorkerConfigFromEnv reads the worker variables without applying defaults or validating,
// so that flags can override values before defaults derived from them (ShutdownTimeout from
// HTTPTimeout) are computed. It returns a usageError naming a malformed variable.
func (m *Main) rawWorkerConfigFromEnv() (worker.Config, error) {
	e := m.env()
	cfg := worker.Config{
		Concurrency:          e.integer("PROXYQ_CONCURRENCY", 0),
		DequeueLoops:         e.integer("PROXYQ_DEQUEUE_LOOPS", 0),
		HTTPTimeout:          e.duration("PROXYQ_HTTP_TIMEOUT", 0),
		ShutdownTimeout:      e.duration("PROXYQ_SHUTDOWN_TIMEOUT", 0),
		PollInterval:         e.duration("PROXYQ_POLL_INTERVAL", 0),
		LaneRecheck:          e.duration("PROXYQ_LANE_RECHECK", 0),
		DelayedCheckInterval: e.duration("PROXYQ_DELAYED_CHECK_INTERVAL", 0),
		SendWithin:           e.duration("PROXYQ_SEND_WITHIN", 0),
		BackoffBase:          e.duration("PROXYQ_BACKOFF_BASE", 0),
		BackoffMax:           e.duration("PROXYQ_BACKOFF_MAX", 0),
		MaxInFlight:          e.integer("PROXYQ_MAX_IN_FLIGHT", 0),
		RateLimit:            e.float("PROXYQ_RATE_LIMIT", 0),
		RateBurst:            e.integer("PROXYQ_RATE_BURST", 0),
		LimiterMaxWait:       e.duration("PROXYQ_LIMITER_MAX_WAIT", 0),
		ReconcileSettle:      e.duration("PROXYQ_RECONCILE_SETTLE", 0),
		ReconcileSkew:        e.duration("PROXYQ_RECONCILE_SKEW", 0),
		ReconcileMaxPages:    e.integer("PROXYQ_RECONCILE_MAX_PAGES", 0),
		RedisWaitReplicas:    e.integer("PROXYQ_REDIS_WAIT_REPLICAS", 0),
		RedisWaitTimeout:     e.duration("PROXYQ_REDIS_WAIT_TIMEOUT", 0),
	}
	if q := e.str("PROXYQ_QUEUES", ""); q != "" {
		queues, err := worker.ParseQueues(q)
		if err != nil {
			e.fail("PROXYQ_QUEUES", q, err.Error())
		}
		cfg.Queues = queues
	}
	return cfg, e.err
}

// finishWorkerConfig applies defaults and validates. flagOf maps a worker.Config field to the
// flag that set it, so the error names what the operator typed; other fields are named by
// their environment variable.
func finishWorkerConfig(cfg worker.Config, flagOf map[string]string) (worker.Config, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return cfg, usageError{workerConfigError(err, flagOf)}
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

// workerConfigError rewrites worker.Config's field names in a validation message as the
// variables (or flags) that set them: "PROXYQ_CONCURRENCY must be between 1 and 10000, got 0".
// The worker's messages start with "worker config: <Field> …"; anything else passes through.
func workerConfigError(err error, flagOf map[string]string) error {
	msg := strings.TrimPrefix(err.Error(), "worker config: ")
	return errors.New(workerFieldPattern.ReplaceAllStringFunc(msg, func(field string) string {
		if f := flagOf[field]; f != "" {
			return f
		}
		return workerEnvOf[field]
	}))
}

// enqueueOptionsFromEnv reads the producer-side task options: PROXYQ_MAX_RETRY (failed
// attempts before a message is archived, default 25) and PROXYQ_RETENTION (how long a finished
// message and its outcome stay readable, default 72h). They are fixed when a message is
// enqueued, so every producer path (enqueue, serve) applies them.
func (m *Main) enqueueOptionsFromEnv() ([]tasks.Option, error) {
	e := m.env()
	maxRetry := e.integer("PROXYQ_MAX_RETRY", tasks.DefaultMaxRetry)
	retention := e.duration("PROXYQ_RETENTION", tasks.DefaultRetention)
	if e.err != nil {
		return nil, e.err
	}
	return []tasks.Option{tasks.MaxRetry(maxRetry), tasks.Retention(retention)}, nil
}

// enqueuerOptionsFromEnv reads PROXYQ_REDIS_WAIT_REPLICAS and PROXYQ_REDIS_WAIT_TIMEOUT for the
// producers (enqueue, serve): with replicas, an enqueue is reported done only once that many
// replicas have it, as the worker waits before each POST.
func (m *Main) enqueuerOptionsFromEnv() ([]tasks.EnqueuerOption, error) {
	e := m.env()
	n := e.integer("PROXYQ_REDIS_WAIT_REPLICAS", 0)
	timeout := e.duration("PROXYQ_REDIS_WAIT_TIMEOUT", worker.DefaultRedisWaitTimeout)
	switch {
	case e.err != nil:
		return nil, e.err
	case n > 100:
		return nil, usagef("PROXYQ_REDIS_WAIT_REPLICAS=%d: want 0 to 100", n)
	case timeout < time.Millisecond || timeout > 2*time.Second:
		return nil, usagef("PROXYQ_REDIS_WAIT_TIMEOUT=%v: want 1ms to 2s", timeout)
	}
	return []tasks.EnqueuerOption{tasks.WaitForReplicas(n, timeout)}, nil
}

// pingRedis checks that Redis answers within a few seconds, so that commands fail at once
// with a clear message instead of after the client's retries. It returns an error naming the
// server (password redacted).
func (m *Main) pingRedis(ctx context.Context, opt asynq.RedisConnOpt) error {
	rdb, ok := opt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return fmt.Errorf("unsupported Redis option %T", opt)
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis at %s is unreachable: %w", redactURL(m.env().str("REDIS_URL", defaultRedisURL)), err)
	}
	return nil
}

// loggerFromEnv builds the zap logger from PROXYQ_LOG_LEVEL (debug|info|warn|error, default
// info) and PROXYQ_LOG_FORMAT (json|console, default json).
func (m *Main) loggerFromEnv() (*zap.Logger, error) { return m.logger("") }

// logger is loggerFromEnv with the level given by a --log-level flag ("" = PROXYQ_LOG_LEVEL).
func (m *Main) logger(levelFlag string) (*zap.Logger, error) {
	e := m.env()
	levelName, source := e.str("PROXYQ_LOG_LEVEL", "info"), "PROXYQ_LOG_LEVEL"
	if levelFlag != "" {
		levelName, source = levelFlag, "--log-level"
	}
	level, err := zapcore.ParseLevel(levelName)
	if err != nil {
		return nil, usagef("%s=%q: want debug, info, warn or error", source, levelName)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	switch format := e.str("PROXYQ_LOG_FORMAT", "json"); format {
	case "json":
		enc = zapcore.NewJSONEncoder(encCfg)
	case "console":
		encCfg.EncodeLevel = zapcore.CapitalColorLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	default:
		return nil, usagef("PROXYQ_LOG_FORMAT=%q: want json or console", format)
	}
	// Lock: m.Stderr may be any writer (a test buffer), and zap writes from many goroutines.
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(m.Stderr)), level)), nil
}
