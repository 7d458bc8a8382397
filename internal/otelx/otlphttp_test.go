package otelx

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// collector is an OTLP/HTTP trace receiver that answers the first `failures` requests with
// `failStatus` (and Retry-After: 1 when retryAfter), then accepts; it decodes protobuf bodies
// with the collector package (test code only: the exporter itself must not import it).
type collector struct {
	t          *testing.T
	failStatus int
	failures   int32
	retryAfter bool
	answer     []byte // a successful answer's body (protobuf)

	calls   atomic.Int32
	mu      sync.Mutex
	headers []http.Header
	bodies  [][]byte // decoded from gzip
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := c.calls.Add(1)
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		body = zr
	}
	data, _ := io.ReadAll(body)
	c.mu.Lock()
	c.headers = append(c.headers, r.Header.Clone())
	c.bodies = append(c.bodies, data)
	c.mu.Unlock()
	if n <= c.failures {
		if c.retryAfter {
			w.Header().Set("Retry-After", "1")
		}
		http.Error(w, "collector busy", c.failStatus)
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(c.answer)
}

// startOTLP starts tracing to the OTLP endpoint url, with env's other variables, and returns
// the provider and the export errors reported so far; the global tracer provider is put back
// when the test ends.
func startOTLP(t *testing.T, url string, env ...string) (p *Provider, reported func() []error) {
	t.Helper()
	prev := otel.GetTracerProvider()
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	cfg, err := ConfigFromEnv(envOf(append([]string{"OTEL_EXPORTER_OTLP_ENDPOINT", url}, env...)...))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var errs []error
	p, err = Start(context.Background(), cfg, "proxyq-test", "v1", io.Discard, func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	return p, func() []error {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(errs)
	}
}

// exportOne starts tracing with env pointed at col, ends one span named name and shuts down.
func exportOne(t *testing.T, col http.Handler, name string, env ...string) (traceID string, shutdownErr error, reported []error) {
	t.Helper()
	srv := httptest.NewServer(col)
	t.Cleanup(srv.Close)
	p, errs := startOTLP(t, srv.URL, env...)
	_, span := otel.Tracer("t").Start(context.Background(), name)
	traceID = span.SpanContext().TraceID().String()
	span.End()
	shutdownErr = p.Shutdown()
	return traceID, shutdownErr, errs()
}

func decodeExport(t *testing.T, body []byte) *coltracepb.ExportTraceServiceRequest {
	t.Helper()
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		t.Fatalf("body is not an ExportTraceServiceRequest: %v", err)
	}
	return &req
}

// The default protocol: protobuf to /v1/traces, with the headers and gzip asked for, the
// resource's service name, the span's own trace ID; a 503 with Retry-After is retried.
func TestOTLPHTTPProtobufHeadersGzipAndRetry(t *testing.T) {
	col := &collector{t: t, failStatus: http.StatusServiceUnavailable, failures: 1, retryAfter: true}
	traceID, err, reported := exportOne(t, col, "hello-span",
		"OTEL_EXPORTER_OTLP_HEADERS", "api-key=s%3Dcret, tenant=a",
		"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")
	if err != nil || len(reported) > 0 {
		t.Fatalf("shutdown: %v; reported: %v", err, reported)
	}
	if got := col.calls.Load(); got != 2 {
		t.Fatalf("collector saw %d requests; want 2 (one 503, one retry)", got)
	}
	h := col.headers[1]
	for k, want := range map[string]string{"Api-Key": "s=cret", "Tenant": "a", "Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"} {
		if got := h.Get(k); got != want {
			t.Errorf("header %s = %q; want %q", k, got, want)
		}
	}
	req := decodeExport(t, col.bodies[1])
	if len(req.ResourceSpans) != 1 {
		t.Fatalf("resource spans: %d", len(req.ResourceSpans))
	}
	rs := req.ResourceSpans[0]
	service := ""
	for _, kv := range rs.GetResource().GetAttributes() {
		if kv.Key == "service.name" {
			service = kv.Value.GetStringValue()
		}
	}
	span := rs.ScopeSpans[0].Spans[0]
	if service != "proxyq-test" || span.Name != "hello-span" || hex.EncodeToString(span.TraceId) != traceID {
		t.Errorf("got service %q, span %q trace %x; want proxyq-test, hello-span, %s", service, span.Name, span.TraceId, traceID)
	}
}

// A 400 is final: one request, and the loss is reported.
func TestOTLPHTTPBadRequestIsNotRetried(t *testing.T) {
	col := &collector{t: t, failStatus: http.StatusBadRequest, failures: 100}
	_, err, reported := exportOne(t, col, "x")
	if got := col.calls.Load(); got != 1 {
		t.Errorf("collector saw %d requests for a 400; want 1", got)
	}
	if err == nil && len(reported) == 0 {
		t.Fatal("a refused export was neither returned nor reported")
	}
	all := errors.Join(append(reported, err)...)
	if !strings.Contains(all.Error(), "400") || !strings.Contains(all.Error(), "collector busy") {
		t.Errorf("error %q does not give the status and the collector's answer", all)
	}
}

// A partial success (some spans rejected) reaches the error handler with the count and message.
func TestOTLPHTTPPartialSuccessReported(t *testing.T) {
	answer, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{
		RejectedSpans: 3, ErrorMessage: "spans too old"}})
	col := &collector{t: t, answer: answer}
	_, err, reported := exportOne(t, col, "x")
	if err != nil {
		t.Fatal(err)
	}
	joined := errors.Join(reported...)
	if joined == nil || !strings.Contains(joined.Error(), "3 spans rejected: spans too old") {
		t.Errorf("reported %v; want the partial success", reported)
	}
}

// http/json: OTLP's JSON, IDs in hex (not protobuf JSON's base64), span kind as a number.
func TestOTLPHTTPJSON(t *testing.T) {
	col := &collector{t: t}
	traceID, err, _ := exportOne(t, col, "json-span", "OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
	if err != nil {
		t.Fatal(err)
	}
	if ct := col.headers[0].Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var req struct {
		ResourceSpans []struct {
			ScopeSpans []struct {
				Spans []struct {
					TraceID string `json:"traceId"`
					SpanID  string `json:"spanId"`
					Name    string `json:"name"`
					Kind    int    `json:"kind"`
				} `json:"spans"`
			} `json:"scopeSpans"`
		} `json:"resourceSpans"`
	}
	if err := json.Unmarshal(col.bodies[0], &req); err != nil {
		t.Fatalf("%v: %s", err, col.bodies[0])
	}
	s := req.ResourceSpans[0].ScopeSpans[0].Spans[0]
	if s.TraceID != traceID || len(s.SpanID) != 16 || s.Name != "json-span" || s.Kind != 1 {
		t.Errorf("span %+v; want trace %s in hex, a 16-digit span ID, kind 1 (internal)", s, traceID)
	}
}

func TestOTLPSettingsErrorsNameTheVariable(t *testing.T) {
	for _, tc := range []struct{ env []string }{
		{[]string{"OTEL_EXPORTER_OTLP_HEADERS", "no-equals-sign"}},
		{[]string{"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "k=%zz"}},
		{[]string{"OTEL_EXPORTER_OTLP_TIMEOUT", "10s"}},
		{[]string{"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "zstd"}},
		{[]string{"OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem"}},
		{[]string{"OTEL_EXPORTER_OTLP_CLIENT_KEY", "/nonexistent/key.pem"}},
	} {
		env := append([]string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"}, tc.env...)
		_, err := ConfigFromEnv(envOf(env...))
		if err == nil {
			t.Errorf("%v: accepted", tc.env)
			continue
		}
		if v := tc.env[0]; !strings.Contains(err.Error(), v) {
			t.Errorf("%v: error %q does not name %s", tc.env, err, v)
		}
	}
}

// The default build of proxyq has no gRPC: it was 66 packages and a tenth of a cold build,
// for an exporter the default protocol does not use (-tags otlpgrpc brings it back).
func TestDefaultBuildHasNoGRPC(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", "github.com/proxyq/proxyq/cmd/proxyq").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "google.golang.org/grpc") || strings.Contains(pkg, "otlptracehttp") {
			t.Errorf("cmd/proxyq imports %s", pkg)
		}
	}
}
