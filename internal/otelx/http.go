package otelx

import (
	"context"
	"net/http"
	"os"
	"regexp"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// sidSegment is one URL path segment holding a Twilio SID (two letters, 32 hex digits).
var sidSegment = regexp.MustCompile(`/([A-Z]{2})[0-9a-fA-F]{32}(/|$)`)

// RouteOf returns path with every SID replaced by {XX…} (its two-letter prefix), so a span
// name has few values: "/v1/Services/{KS}/Sessions/{KC}/Participants/{KP}/MessageInteractions".
func RouteOf(path string) string {
	// Twice: adjacent SIDs share the slash between them, which one pass consumes.
	for range 2 {
		path = sidSegment.ReplaceAllString(path, "/{$1}$2")
	}
	return path
}

// ClientTransport wraps rt (nil: http.DefaultTransport) so that each request to Twilio is a
// CLIENT span with OpenTelemetry's HTTP semantic conventions (method, url.full, server
// address, response status), named "POST /v1/Services/{KS}/…". Nothing is injected into the
// request: Twilio gets no trace context from us. Headers and bodies are never recorded.
func ClientTransport(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return otelhttp.NewTransport(rt,
		otelhttp.WithPropagators(propagation.NewCompositeTextMapPropagator()),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			return r.Method + " " + RouteOf(r.URL.EscapedPath())
		}))
}

// ServerHandler wraps the HTTP API so that each request under /v1/ is a SERVER span, the child
// of the request's traceparent/tracestate headers when it has them. Its span name is the route
// ("POST /v1/message-interactions", "GET /v1/message-interactions/{id}"); probes, the dashboard
// and metrics are not traced.
func ServerHandler(h http.Handler) http.Handler {
	return otelhttp.NewHandler(h, "proxyq serve",
		otelhttp.WithPropagators(propagation.TraceContext{}),
		otelhttp.WithFilter(func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/v1/") }),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			return r.Method + " " + apiRoute(r.URL.Path)
		}))
}

// apiRoute is the route template of an API path: the message ID becomes {id}.
func apiRoute(path string) string {
	const collection = "/v1/message-interactions"
	if rest, ok := strings.CutPrefix(path, collection+"/"); ok && rest != "" {
		return collection + "/{id}"
	}
	if path == collection || path == collection+":batch" || path == "/v1/openapi.json" {
		return path
	}
	return "/v1/…"
}

// ContextFromEnv returns ctx carrying the remote span context of the TRACEPARENT and
// TRACESTATE variables, the convention for handing trace context to a command line. A missing
// or malformed TRACEPARENT leaves ctx as it is.
func ContextFromEnv(ctx context.Context, getenv func(string) string) context.Context {
	if getenv == nil {
		getenv = os.Getenv
	}
	carrier := propagation.MapCarrier{}
	if v := strings.TrimSpace(getenv("TRACEPARENT")); v != "" {
		carrier["traceparent"] = v
	}
	if v := strings.TrimSpace(getenv("TRACESTATE")); v != "" {
		carrier["tracestate"] = v
	}
	return propagation.TraceContext{}.Extract(ctx, carrier)
}

// PropagateOnly is ServerHandler with tracing off: no span, only the request's traceparent and
// tracestate put in its context, so that the messages it enqueues carry the caller's trace
// context to workers that trace.
func PropagateOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("traceparent") != "" {
			r = r.WithContext(propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header)))
		}
		h.ServeHTTP(w, r)
	})
}

// WrapTransport is the Proxy client's WrapTransport under p: HTTP client spans
// (ClientTransport) when tracing is on, nil (not even a no-op wrapper) when off.
func (p *Provider) WrapTransport() func(http.RoundTripper) http.RoundTripper {
	if !p.Enabled() {
		return nil
	}
	return ClientTransport
}

// Handler wraps an HTTP API under p: SERVER spans (ServerHandler) when tracing is on; when
// off, only the request's trace context is passed on (PropagateOnly), for workers that trace.
func (p *Provider) Handler(h http.Handler) http.Handler {
	if !p.Enabled() {
		return PropagateOnly(h)
	}
	return ServerHandler(h)
}

// CommandSpan starts the span of a command-line run, named name, as the child of TRACEPARENT
// when set (ContextFromEnv).
func CommandSpan(ctx context.Context, getenv func(string) string, name string) (context.Context, trace.Span) {
	return otel.Tracer("github.com/proxyq/proxyq/cmd/proxyq").Start(ContextFromEnv(ctx, getenv), name)
}
