package main

import (
	"context"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/internal/envconfig"
	"github.com/proxyq/proxyq/internal/redisurl"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/worker"
)

// The environment is mapped to the components' configs by internal/envconfig; the loaders
// here report its errors as usage errors (exit 2).

// usage passes v on and makes err, if any, a usage error.
func usage[T any](v T, err error) (T, error) {
	if err != nil {
		return v, usageError{err}
	}
	return v, nil
}

// envReader is envconfig.Env for the loaders still in this package, its first malformed value
// kept as a usage error in err.
type envReader struct {
	env envconfig.Env
	err error
}

func (m *Main) env() *envReader { return &envReader{env: envconfig.Env{Getenv: m.Getenv}} }

func (e *envReader) sync() {
	if e.err == nil && e.env.Err != nil {
		e.err = usageError{e.env.Err}
	}
}

func (e *envReader) fail(name, value, want string) { e.env.Fail(name, value, want); e.sync() }
func (e *envReader) str(name, def string) string   { return e.env.String(name, def) }
func (e *envReader) duration(name string, def time.Duration) time.Duration {
	defer e.sync()
	return e.env.Duration(name, def)
}
func (e *envReader) integer(name string, def int) int { defer e.sync(); return e.env.Int(name, def) }
func (e *envReader) float(name string, def float64) float64 {
	defer e.sync()
	return e.env.Float(name, def)
}

func redisOpt(url string) (asynq.RedisConnOpt, error)     { return usage(envconfig.RedisURL(url)) }
func (m *Main) redisFromEnv() (asynq.RedisConnOpt, error) { return usage(envconfig.Redis(m.Getenv)) }
func (m *Main) clientConfigFromEnv() (proxyclient.Config, error) {
	return usage(envconfig.Client(m.Getenv))
}
func (m *Main) workerConfigFromEnv() (worker.Config, error) { return usage(envconfig.Worker(m.Getenv)) }
func (m *Main) enqueueOptionsFromEnv() ([]tasks.Option, error) {
	return usage(envconfig.EnqueueOptions(m.Getenv))
}
func (m *Main) enqueuerOptionsFromEnv() ([]tasks.EnqueuerOption, error) {
	return usage(envconfig.EnqueuerOptions(m.Getenv))
}

// logger builds the log from PROXYQ_LOG_* with the level of a --log-level flag ("": none).
func (m *Main) logger(levelFlag string) (*zap.Logger, error) {
	return usage(envconfig.Logger(m.Getenv, levelFlag, m.Stderr))
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
		return fmt.Errorf("redis at %s is unreachable: %w", redisurl.Redact(m.env().str("REDIS_URL", envconfig.DefaultRedisURL)), err)
	}
	return nil
}
