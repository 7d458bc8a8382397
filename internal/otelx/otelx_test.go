package otelx

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func envOf(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestConfigFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name      string
		env       []string
		enabled   bool
		endpoint  string
		protocol  string
		exporters string
	}{
		{name: "unset: off", env: nil},
		{name: "service name alone: off", env: []string{"OTEL_SERVICE_NAME", "x"}},
		{name: "base endpoint: otlp http, signal path appended", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"},
			enabled: true, endpoint: "http://collector:4318/v1/traces", protocol: "http/protobuf", exporters: "otlp"},
		{name: "traces endpoint used as is", env: []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://c.example/custom", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"},
			enabled: true, endpoint: "https://c.example/custom", protocol: "http/protobuf", exporters: "otlp"},
		{name: "traces protocol wins", env: []string{"OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"},
			enabled: true, protocol: "http/json", exporters: "otlp"},
		{name: "exporter otlp alone: default endpoint", env: []string{"OTEL_TRACES_EXPORTER", "otlp"}, enabled: true, protocol: "http/protobuf", exporters: "otlp"},
		{name: "console and otlp", env: []string{"OTEL_TRACES_EXPORTER", "console, otlp"}, enabled: true, protocol: "http/protobuf", exporters: "console,otlp"},
		{name: "none wins over an endpoint", env: []string{"OTEL_TRACES_EXPORTER", "none", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"}},
		{name: "sdk disabled", env: []string{"OTEL_SDK_DISABLED", "true", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ConfigFromEnv(envOf(tc.env...))
			if err != nil {
				t.Fatal(err)
			}
			if c.Enabled() != tc.enabled || c.EndpointURL != tc.endpoint || (tc.enabled && c.Protocol != tc.protocol) || strings.Join(c.Exporters, ",") != tc.exporters {
				t.Errorf("got %+v", c)
			}
		})
	}
}

func TestConfigFromEnvErrorsNameTheVariable(t *testing.T) {
	for _, tc := range []struct{ env []string }{
		{[]string{"OTEL_SDK_DISABLED", "maybe"}},
		{[]string{"OTEL_TRACES_EXPORTER", "jaeger"}},
		{[]string{"OTEL_TRACES_EXPORTER", "none,otlp"}},
		{[]string{"OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"}},
		{[]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://c"}},
		{[]string{"OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL", "thrift"}},
		{[]string{"OTEL_TRACES_EXPORTER", "otlp", "OTEL_TRACES_SAMPLER", "sometimes"}},
		{[]string{"OTEL_TRACES_EXPORTER", "otlp", "OTEL_TRACES_SAMPLER", "traceidratio", "OTEL_TRACES_SAMPLER_ARG", "2"}},
	} {
		_, err := ConfigFromEnv(envOf(tc.env...))
		if err == nil {
			t.Errorf("%v: accepted", tc.env)
			continue
		}
		// The variable named is the last one given.
		if v := tc.env[len(tc.env)-2]; !strings.Contains(err.Error(), v) {
			t.Errorf("%v: error %q does not name %s", tc.env, err, v)
		}
	}
}

// Off: Start installs nothing and Shutdown does nothing.
func TestStartOff(t *testing.T) {
	before := otel.GetTracerProvider()
	p, err := Start(context.Background(), Config{}, "proxyq-test", "dev", io.Discard, nil)
	if err != nil || p.Enabled() || p.Shutdown() != nil {
		t.Fatalf("Start off: %v %v", p, err)
	}
	if otel.GetTracerProvider() != before {
		t.Error("Start with tracing off replaced the global tracer provider")
	}
	if p.WrapTransport() != nil {
		t.Error("tracing off: the client transport is wrapped")
	}
	// Off, the API handler still hands the caller's trace context on.
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	var got string
	h := p.Handler(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		got = trace.SpanContextFromContext(r.Context()).TraceID().String()
	}))
	r := httptest.NewRequest("GET", "/v1/openapi.json", nil)
	r.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	h.ServeHTTP(httptest.NewRecorder(), r)
	if got != traceID {
		t.Errorf("tracing off: the handler's context has trace %q; want the caller's %s", got, traceID)
	}
}

// console: spans printed to the writer given (stderr in cmd), flushed by Shutdown, with the
// service name.
func TestStartConsole(t *testing.T) {
	prev := otel.GetTracerProvider()
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	var out strings.Builder
	p, err := Start(context.Background(), Config{Exporters: []string{"console"}}, "proxyq-test", "v9", &out, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, span := otel.Tracer("t").Start(context.Background(), "hello-span")
	span.End()
	if err := p.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"hello-span", "proxyq-test", "v9"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("console output lacks %q: %s", want, out.String())
		}
	}
}

func TestRouteOf(t *testing.T) {
	got := RouteOf("/twilio/v1/Services/KS0123456789abcdef0123456789abcdef/Sessions/KC0123456789abcdef0123456789abcdef/Participants/KP0123456789abcdef0123456789abcdef/MessageInteractions")
	if want := "/twilio/v1/Services/{KS}/Sessions/{KC}/Participants/{KP}/MessageInteractions"; got != want {
		t.Errorf("RouteOf = %q, want %q", got, want)
	}
	for path, want := range map[string]string{
		"/v1/message-interactions":           "/v1/message-interactions",
		"/v1/message-interactions:batch":     "/v1/message-interactions:batch",
		"/v1/message-interactions/ride-8812": "/v1/message-interactions/{id}",
		"/v1/other/secret":                   "/v1/…",
	} {
		if got := apiRoute(path); got != want {
			t.Errorf("apiRoute(%q) = %q, want %q", path, got, want)
		}
	}
}

func recorder(t *testing.T) (*tracetest.SpanRecorder, trace.Tracer) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	return rec, tp.Tracer("test")
}

// The client transport makes a CLIENT span with the HTTP conventions, sends no trace context
// to the server, and records neither the Authorization header nor the body.
func TestClientTransport(t *testing.T) {
	rec, tr := recorder(t)
	var gotHeader http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHeader = r.Header.Clone()
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	ctx, parent := tr.Start(context.Background(), "attempt")
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/Services/KS0123456789abcdef0123456789abcdef/X", strings.NewReader("Body=SECRET-BODY"))
	req.SetBasicAuth("AC1", "SECRET-TOKEN")
	resp, err := (&http.Client{Transport: ClientTransport(nil)}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	parent.End()
	if gotHeader.Get("traceparent") != "" {
		t.Errorf("trace context sent to the server: %q", gotHeader.Get("traceparent"))
	}
	spans := rec.Ended()
	if len(spans) != 2 || spans[0].Name() != "POST /v1/Services/{KS}/X" || spans[0].SpanKind() != trace.SpanKindClient || spans[0].Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Fatalf("spans %v", spans)
	}
	var sawStatus bool
	for _, kv := range spans[0].Attributes() {
		v := kv.Value.Emit()
		if strings.Contains(v, "SECRET") || strings.Contains(v, "Basic") {
			t.Errorf("attribute %s = %q", kv.Key, v)
		}
		if kv.Key == "http.response.status_code" && v == "201" {
			sawStatus = true
		}
	}
	if !sawStatus {
		t.Errorf("no http.response.status_code 201 in %v", spans[0].Attributes())
	}
}

// The server handler continues the caller's trace from its traceparent header and traces only
// the API's routes; PropagateOnly passes the caller's context on without a span.
func TestServerHandler(t *testing.T) {
	rec, _ := recorder(t)
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	var seen trace.SpanContext
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = trace.SpanContextFromContext(r.Context()) })
	for _, handler := range []http.Handler{ServerHandler(h), PropagateOnly(h)} {
		for _, path := range []string{"/v1/message-interactions/ride-1", "/healthz"} {
			req := httptest.NewRequest("GET", path, nil)
			req.Header.Set("traceparent", tp)
			req.Header.Set("Authorization", "Bearer SECRET-TOKEN")
			handler.ServeHTTP(httptest.NewRecorder(), req)
			if path == "/v1/message-interactions/ride-1" && seen.TraceID().String() != "0af7651916cd43dd8448eb211c80319c" {
				t.Errorf("%s: handler saw trace %v, want the caller's", path, seen.TraceID())
			}
		}
	}
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1 (the API route through ServerHandler; not /healthz, not PropagateOnly)", len(spans))
	}
	s := spans[0]
	if s.Name() != "GET /v1/message-interactions/{id}" || s.SpanKind() != trace.SpanKindServer || s.Parent().SpanID().String() != "b7ad6b7169203331" {
		t.Errorf("server span %s kind %v parent %v", s.Name(), s.SpanKind(), s.Parent().SpanID())
	}
	for _, kv := range s.Attributes() {
		if strings.Contains(kv.Value.Emit(), "SECRET") {
			t.Errorf("attribute %s = %q", kv.Key, kv.Value.Emit())
		}
	}
}

func TestContextFromEnv(t *testing.T) {
	ctx := ContextFromEnv(context.Background(), envOf("TRACEPARENT", " 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01 ", "TRACESTATE", "k=v"))
	sc := trace.SpanContextFromContext(ctx)
	if sc.TraceID().String() != "0af7651916cd43dd8448eb211c80319c" || sc.TraceState().Get("k") != "v" {
		t.Errorf("span context %v", sc)
	}
	if sc := trace.SpanContextFromContext(ContextFromEnv(context.Background(), envOf("TRACEPARENT", "nonsense"))); sc.IsValid() {
		t.Errorf("malformed TRACEPARENT gave %v", sc)
	}
}

// A collector that does not answer delays Shutdown by at most ShutdownTimeout, and the lost
// spans are reported; one that is down is reported at once.
func TestShutdownBoundedWhenCollectorFails(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the flush timeout")
	}
	release := make(chan struct{})
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer hanging.Close()
	defer close(release)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close() // nothing listens there any more

	for _, url := range []string{down.URL, hanging.URL} {
		p, reported := startOTLP(t, url)
		_, span := otel.Tracer("t").Start(context.Background(), "lost")
		span.End()
		began := time.Now()
		err := p.Shutdown()
		if took := time.Since(began); took > ShutdownTimeout+2*time.Second {
			t.Errorf("%s: Shutdown took %v, want at most about %v", url, took, ShutdownTimeout)
		}
		if err == nil && len(reported()) == 0 {
			t.Errorf("%s: spans lost without an error from Shutdown or the error handler", url)
		}
	}
}

// An export still retrying when Shutdown's bound passes is ended by Shutdown: nothing goes on
// posting, or reporting into whatever error handler is installed next, after it returned.
// (It did: a test's export kept retrying a closed collector into the next test's handler.)
func TestShutdownEndsExportsStillRetrying(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the flush timeout")
	}
	col := &collector{t: t, failStatus: http.StatusServiceUnavailable, failures: 1 << 30, retryAfter: true}
	srv := httptest.NewServer(col)
	defer srv.Close()
	p, reported := startOTLP(t, srv.URL, "OTEL_EXPORTER_OTLP_TIMEOUT", "60000")
	_, span := otel.Tracer("t").Start(context.Background(), "lost")
	span.End()
	if err := p.Shutdown(); err == nil {
		t.Error("Shutdown against a collector answering 503 returned no error")
	}
	time.Sleep(50 * time.Millisecond) // the processor reports the ended export just after it returns
	calls, errs := col.calls.Load(), len(reported())
	time.Sleep(2500 * time.Millisecond) // the collector asks for a retry every second
	if got := col.calls.Load(); got != calls {
		t.Errorf("the export went on after Shutdown: %d requests then, %d now", calls, got)
	}
	if got := len(reported()); got != errs {
		t.Errorf("errors were reported after Shutdown: %d then, %d now", errs, got)
	}
}

// TestGRPCProtocolNeedsTheBuildTag: the default build has no gRPC exporter, and asking for one
// is an error naming the variable and what is supported; with -tags otlpgrpc it is accepted and
// the endpoint is used without a signal path, as the specification says for gRPC.
func TestGRPCProtocolNeedsTheBuildTag(t *testing.T) {
	for _, v := range []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"} {
		c, err := ConfigFromEnv(envOf("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317", v, "grpc"))
		if newGRPCExporter == nil {
			if err == nil {
				t.Fatalf("%s=grpc accepted by a build without gRPC: %+v", v, c)
			}
			for _, want := range []string{v + `="grpc"`, "http/protobuf", "http/json", "-tags otlpgrpc"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%s=grpc: error %q does not say %q", v, err, want)
				}
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s=grpc with -tags otlpgrpc: %v", v, err)
		}
		if c.Protocol != "grpc" || c.EndpointURL != "http://collector:4317" {
			t.Errorf("%s=grpc: got %+v", v, c)
		}
		if _, err := newExporter(context.Background(), c, "otlp", nil, newUploads()); err != nil {
			t.Errorf("grpc exporter: %v", err)
		}
	}
}

// Errors are marked as the conventions say: a client span for a 4xx/5xx answer or a failed
// request, a server span for a 5xx; both carry the status and error.type.
func TestHTTPSpansMarkErrors(t *testing.T) {
	rec, _ := recorder(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	client := &http.Client{Transport: ClientTransport(nil)}
	resp, err := client.Get(srv.URL + "/v1/Services")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	srv.Close()
	if _, err := client.Get(srv.URL + "/v1/Services"); err == nil { // closed: the request fails
		t.Fatal("request to a closed server succeeded")
	}
	api := ServerHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	api.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/v1/message-interactions", nil))

	spans := rec.Ended()
	if len(spans) != 3 {
		t.Fatalf("%d spans, want 3", len(spans))
	}
	attrs := func(i int) map[string]string {
		m := map[string]string{}
		for _, kv := range spans[i].Attributes() {
			m[string(kv.Key)] = kv.Value.Emit()
		}
		return m
	}
	if a := attrs(0); a["http.response.status_code"] != "503" || a["error.type"] != "503" || spans[0].Status().Code != codes.Error {
		t.Errorf("client 503 span: %v %v", a, spans[0].Status())
	}
	if a := attrs(1); a["error.type"] == "" || a["http.response.status_code"] != "" || spans[1].Status().Code != codes.Error {
		t.Errorf("client failed-request span: %v %v", a, spans[1].Status())
	}
	if a := attrs(2); a["http.response.status_code"] != "500" || a["http.route"] != "/v1/message-interactions" || spans[2].Status().Code != codes.Error {
		t.Errorf("server 500 span: %v %v", a, spans[2].Status())
	}
}
