package main

import (
	"context"
	"fmt"
	"net/http"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/internal/otelx"
	"github.com/proxyq/proxyq/proxyclient"
)

// tracing is one command's OpenTelemetry set-up (README "Tracing"): off unless OTEL_* asks.
type tracing struct {
	provider *otelx.Provider
	warn     func(error)
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
	return &tracing{provider: p, warn: warn}, nil
}

// logWarn is a startTracing warn function for commands with a structured log.
func logWarn(log *zap.Logger) func(error) {
	return func(err error) { log.Warn("tracing: spans not exported", zap.Error(err)) }
}

// stop flushes the spans not exported yet; call it last, after the command's own work.
func (t *tracing) stop() {
	if err := t.provider.Shutdown(); err != nil && t.warn != nil {
		t.warn(err)
	}
}

// clientTransport is the Proxy client's WrapTransport: HTTP spans when tracing is on, nothing
// (not even a no-op wrapper) when off.
func (t *tracing) clientTransport() func(http.RoundTripper) http.RoundTripper {
	if !t.provider.Enabled() {
		return nil
	}
	return otelx.ClientTransport
}

// serverHandler wraps the HTTP API: SERVER spans when tracing is on; when off, only the
// request's traceparent is passed on to the messages it enqueues, for workers that trace.
func (t *tracing) serverHandler(h http.Handler) http.Handler {
	if !t.provider.Enabled() {
		return otelx.PropagateOnly(h)
	}
	return otelx.ServerHandler(h)
}

// commandSpan starts the span of a command-line run, the child of TRACEPARENT when set.
func (m *Main) commandSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	ctx = otelx.ContextFromEnv(ctx, m.Getenv)
	return otel.Tracer("github.com/proxyq/proxyq/cmd/proxyq").Start(ctx, fmt.Sprintf("proxyq %s", name))
}
