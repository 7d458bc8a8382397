package main

import (
	"context"

	"go.uber.org/zap"

	"github.com/proxyq/proxyq/internal/otelx"
	"github.com/proxyq/proxyq/proxyclient"
)

// tracing is one command's OpenTelemetry set-up (README "Tracing"): off unless OTEL_* asks.
// Its Provider wraps the Proxy client's transport (WrapTransport) and the API (Handler).
type tracing struct {
	*otelx.Provider
	warn func(error)
}

// startTracing reads the OTEL_* variables and installs the tracer provider of the command
// (service.name "proxyq-<command>" unless OTEL_SERVICE_NAME says otherwise). A malformed
// variable is a usage error naming it. warn receives export errors.
func (m *Main) startTracing(ctx context.Context, command string, warn func(error)) (*tracing, error) {
	cfg, err := otelx.ConfigFromEnv(m.Getenv)
	if err != nil {
		return nil, usageError{err}
	}
	p, err := otelx.Start(ctx, cfg, "proxyq-"+command, proxyclient.Version, m.Stderr, warn)
	if err != nil {
		return nil, usageError{err}
	}
	return &tracing{Provider: p, warn: warn}, nil
}

// logWarn is a startTracing warn function for commands with a structured log.
func logWarn(log *zap.Logger) func(error) {
	return func(err error) { log.Warn("tracing: spans not exported", zap.Error(err)) }
}

// stop flushes the spans not exported yet; call it last, after the command's own work.
func (t *tracing) stop() {
	if err := t.Shutdown(); err != nil && t.warn != nil {
		t.warn(err)
	}
}
