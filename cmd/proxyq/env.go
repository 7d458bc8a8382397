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

// asUsage makes err, if any, a usage error.
func asUsage(err error) error {
	if err != nil {
		return usageError{err}
	}
	return nil
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
		return fmt.Errorf("redis at %s is unreachable: %w", redisurl.Redact(envconfig.New(m.Getenv).String("REDIS_URL", envconfig.DefaultRedisURL)), err)
	}
	return nil
}
