package otelx

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
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
// CLIENT span with OpenTelemetry's HTTP semantic conventions (method, url.full, server address
// and port, response status, error.type), named "POST /v1/Services/{KS}/…". Nothing is
// injected into the request: Twilio gets no trace context from us. Headers and bodies are
// never recorded.
//
// These wrappers are ours rather than the contrib otelhttp package's: for the few attributes
// we record it brought httpsnoop, its semantic-convention packages and about 3 s of CPU to a
// cold build.
func ClientTransport(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return clientTransport{rt}
}

type clientTransport struct{ next http.RoundTripper }

func (c clientTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	u := *r.URL
	u.User = nil // never a credential in an attribute
	ctx, span := otel.Tracer(tracerName).Start(r.Context(), r.Method+" "+RouteOf(r.URL.EscapedPath()),
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("url.full", u.String()),
			attribute.String("server.address", u.Hostname()),
			attribute.Int("server.port", portOf(&u)),
		))
	resp, err := c.next.RoundTrip(r.WithContext(ctx))
	switch {
	case err != nil:
		span.SetAttributes(attribute.String("error.type", fmt.Sprintf("%T", err)))
		span.SetStatus(codes.Error, err.Error())
		span.End()
	default:
		span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
		if resp.StatusCode >= 400 {
			span.SetAttributes(attribute.String("error.type", strconv.Itoa(resp.StatusCode)))
			span.SetStatus(codes.Error, "")
		}
		span.End() // at the response's headers: the bodies here are small and read at once
	}
	return resp, err
}

// portOf is the URL's port, or its scheme's default.
func portOf(u *url.URL) int {
	if p, err := strconv.Atoi(u.Port()); err == nil {
		return p
	}
	if u.Scheme == "https" {
		return 443
	}
	return 80
}

// ServerHandler wraps the HTTP API so that each request under /v1/ is a SERVER span, the child
// of the request's traceparent/tracestate headers when it has them. Its span name is the route
// ("POST /v1/message-interactions", "GET /v1/message-interactions/{id}"); probes, the dashboard
// and metrics are not traced.
func ServerHandler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/") {
			h.ServeHTTP(w, r)
			return
		}
		ctx := propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		route := apiRoute(r.URL.Path)
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		attrs := []attribute.KeyValue{
			attribute.String("http.request.method", r.Method),
			attribute.String("http.route", route),
			attribute.String("url.path", r.URL.Path),
			attribute.String("url.scheme", scheme),
			attribute.String("server.address", r.Host),
		}
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			attrs = append(attrs, attribute.String("client.address", host))
		}
		if ua := r.UserAgent(); ua != "" {
			attrs = append(attrs, attribute.String("user_agent.original", ua))
		}
		ctx, span := otel.Tracer(tracerName).Start(ctx, r.Method+" "+route,
			trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
		defer span.End()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r.WithContext(ctx))
		span.SetAttributes(attribute.Int("http.response.status_code", sw.status))
		if sw.status >= 500 {
			span.SetAttributes(attribute.String("error.type", strconv.Itoa(sw.status)))
			span.SetStatus(codes.Error, "")
		}
	})
}

// tracerName is the instrumentation scope of the spans made here.
const tracerName = "github.com/proxyq/proxyq/internal/otelx"

// statusWriter remembers the status a handler answered with. Unwrap lets
// http.ResponseController reach the writer's Flush and deadlines.
type statusWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader && code >= 200 { // 1xx are informational: the final status is still to come
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

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
