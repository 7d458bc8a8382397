package main

// End-to-end tracing: the real binary as worker, `proxyq serve` and `proxyq enqueue`, each
// exporting OTLP/HTTP to a receiver in the test, which decodes the protobuf export requests.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
)

// otlpSpan is one received span with the service.name of the process that sent it.
type otlpSpan struct {
	service string
	span    *tracepb.Span
}

func (s otlpSpan) traceID() string  { return hex.EncodeToString(s.span.TraceId) }
func (s otlpSpan) spanID() string   { return hex.EncodeToString(s.span.SpanId) }
func (s otlpSpan) parentID() string { return hex.EncodeToString(s.span.ParentSpanId) }

func (s otlpSpan) attr(key string) string {
	for _, kv := range s.span.Attributes {
		if kv.Key == key {
			return kv.Value.GetStringValue()
		}
	}
	return ""
}

// otlpReceiver is a minimal OTLP/HTTP trace collector on loopback.
type otlpReceiver struct {
	url   string
	mu    sync.Mutex
	spans []otlpSpan
	raw   [][]byte // every request body, decoded from gzip, to search for what must not be sent
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	r := &otlpReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
			http.Error(w, "not an OTLP trace export", http.StatusNotFound)
			return
		}
		var body io.Reader = req.Body
		if req.Header.Get("Content-Encoding") == "gzip" {
			gz, err := gzip.NewReader(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = gz
		}
		data, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var export coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(data, &export); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.raw = append(r.raw, data)
		for _, rs := range export.ResourceSpans {
			service := ""
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.Key == "service.name" {
					service = kv.Value.GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					r.spans = append(r.spans, otlpSpan{service, s})
				}
			}
		}
		r.mu.Unlock()
		resp, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(resp)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

// trace returns the spans received for one trace ID.
func (r *otlpReceiver) trace(traceID string) []otlpSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []otlpSpan
	for _, s := range r.spans {
		if s.traceID() == traceID {
			out = append(out, s)
		}
	}
	return out
}

func find(spans []otlpSpan, service, name string) []otlpSpan {
	var out []otlpSpan
	for _, s := range spans {
		if s.service == service && s.span.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// startServeBinary runs `proxyq serve` as a process and returns its base URL.
func startServeBinary(t *testing.T, env []string) string {
	t.Helper()
	cmd := exec.Command(proxyqBinary(t), "serve", "--addr", "127.0.0.1:0", "--drain-delay", "0s")
	cmd.Env = env
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	log := &lockedBuffer{}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "proxyq serve: "); ok {
				urls <- u
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(exited) }()
	stopAtCleanup(t, cmd, exited, "serve", log)
	select {
	case u := <-urls:
		return u
	case <-exited:
		t.Fatalf("proxyq serve exited before listening:\n%s", log.String())
	case <-time.After(15 * time.Second):
		t.Fatalf("proxyq serve did not print its URL within 15s:\n%s", log.String())
	}
	return ""
}

// A message enqueued with `proxyq enqueue` under TRACEPARENT, and one POSTed to `proxyq serve`
// with a traceparent header, are each followed in their caller's trace across three processes:
// the producer's spans and every attempt of the worker process (a 503 and a retry among them)
// carry the caller's trace ID, each attempt the child of its producer span. Each process names
// itself in service.name, and no export request holds the message body.
func TestE2ETracingAcrossProcesses(t *testing.T) {
	skipIfShort(t)
	h := newHarness(t, proxytest.Config{})
	must(t, h.fake.Fake.Inject(proxytest.Fault503, 1))
	rcv := newOTLPReceiver(t)
	otelEnv := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + rcv.url, "OTEL_BSP_SCHEDULE_DELAY=50"}
	h.startWorker(otelEnv...)

	const (
		cliTrace    = "4bf92f3577b34da6a3ce929d0e0e4736"
		cliParent   = "00f067aa0ba902b7"
		httpTrace   = "0af7651916cd43dd8448eb211c80319c"
		httpParent  = "b7ad6b7169203331"
		secretCLI   = "SECRET-E2E-BODY-cli: gate code 1234"
		secretHTTP  = "SECRET-E2E-BODY-http: gate code 5678"
		serveTokenE = "e2e-trace-token-0123456789abcdef"
	)
	cliEnv := h.env(append(otelEnv, "TRACEPARENT=00-"+cliTrace+"-"+cliParent+"-01")...)
	r := runBinary(t, cliEnv, "", "enqueue", "--service", sid("KS", 1), "--session", sid("KC", 2),
		"--participant", sid("KP", 0x7ace), "--body", secretCLI, "--idempotency-key", "trace-cli")
	if r.code != 0 {
		t.Fatalf("enqueue: exit %d: %s", r.code, r.stderr)
	}

	base := startServeBinary(t, h.env(append(otelEnv, "PROXYQ_API_TOKENS="+serveTokenE)...))
	req, _ := http.NewRequest("POST", base+"/v1/message-interactions", strings.NewReader(serveMessage(0x7ace, secretHTTP)))
	req.Header.Set("Authorization", "Bearer "+serveTokenE)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "trace-http")
	req.Header.Set("traceparent", "00-"+httpTrace+"-"+httpParent+"-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %d", resp.StatusCode)
	}

	sentIn := func(traceID string) bool {
		for _, s := range find(rcv.trace(traceID), "proxyq-worker", "proxyq.attempt") {
			if s.attr("proxyq.outcome") == "sent" {
				return true
			}
		}
		return false
	}
	// Each process exports in its own batches: wait for the last span of each (serve's request
	// span ends after its answer, which can be after the worker sent).
	eventually(t, 30*time.Second, "the worker's sent attempts and serve's request span exported", func() bool {
		return sentIn(cliTrace) && sentIn(httpTrace) &&
			len(find(rcv.trace(httpTrace), "proxyq-serve", "POST /v1/message-interactions")) > 0
	})

	attempts := 0
	for _, tc := range []struct {
		trace, parent, service, entry string
		via                           string // a span between the entry and proxyq.enqueue
	}{
		{cliTrace, cliParent, "proxyq-enqueue", "proxyq enqueue", "proxyq.enqueue_batch"}, // the CLI enqueues a batch
		{httpTrace, httpParent, "proxyq-serve", "POST /v1/message-interactions", ""},
	} {
		spans := rcv.trace(tc.trace)
		entry := find(spans, tc.service, tc.entry)
		if len(entry) != 1 || entry[0].parentID() != tc.parent {
			t.Errorf("trace %s: want one %q span from %s under the caller's span %s, got %d", tc.trace, tc.entry, tc.service, tc.parent, len(entry))
			continue
		}
		above := entry[0]
		if tc.via != "" {
			via := find(spans, tc.service, tc.via)
			if len(via) != 1 || via[0].parentID() != entry[0].spanID() {
				t.Errorf("trace %s: want one %s span from %s under %q", tc.trace, tc.via, tc.service, tc.entry)
				continue
			}
			above = via[0]
		}
		enq := find(spans, tc.service, "proxyq.enqueue")
		if len(enq) != 1 || enq[0].parentID() != above.spanID() {
			t.Errorf("trace %s: want one proxyq.enqueue span from %s under %q", tc.trace, tc.service, above.span.Name)
			continue
		}
		for _, a := range find(spans, "proxyq-worker", "proxyq.attempt") {
			attempts++
			if a.parentID() != enq[0].spanID() {
				t.Errorf("trace %s: worker attempt (outcome %s) has parent %s, want the producer's enqueue span %s", tc.trace, a.attr("proxyq.outcome"), a.parentID(), enq[0].spanID())
			}
		}
		var post bool
		for _, s := range spans {
			if s.service == "proxyq-worker" && strings.HasPrefix(s.span.Name, "POST ") && strings.HasSuffix(s.span.Name, "/MessageInteractions") {
				post = true
			}
		}
		if !post {
			t.Errorf("trace %s: no POST span from the worker", tc.trace)
		}
	}
	if attempts != 3 {
		t.Errorf("%d worker attempts across both traces, want 3 (one 503 retried)", attempts)
	}

	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for _, data := range rcv.raw {
		for _, secret := range []string{"SECRET-E2E-BODY", serveTokenE} {
			if bytes.Contains(data, []byte(secret)) {
				t.Errorf("an OTLP export request holds %q", secret)
			}
		}
	}
}

// `proxyq dev` with OTEL_TRACES_EXPORTER=console prints its spans to stderr on exit: the demo's
// messages, their attempts and their POSTs to the fake, as service proxyq-dev. A malformed
// OTEL_* variable stops it before anything starts, naming the variable (exit 2).
func TestDevTracesToConsole(t *testing.T) {
	db := redistest.NewDB(t)
	p := startInProcess(t, map[string]string{"REDIS_URL": db.URL(), "OTEL_TRACES_EXPORTER": "console"},
		"dev", "--demo", "5", "--exit-after-demo", "--addr", "127.0.0.1:0")
	if code := p.wait(t, 45*time.Second); code != exitOK {
		t.Fatalf("exit %d, want 0\nstderr:\n%s", code, tail(p.stderr.String(), 4000))
	}
	out := p.stderr.String()
	for _, want := range []string{`"Name":"proxyq.enqueue"`, `"Name":"proxyq.attempt"`, `"Name":"proxyq.ledger.acquire"`,
		`/Participants/{KP}/MessageInteractions"`, `"Value":"proxyq-dev"`} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr lacks %s", want)
		}
	}

	var stdout, stderr bytes.Buffer
	m := &Main{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr,
		Getenv: func(k string) string {
			return map[string]string{"OTEL_TRACES_SAMPLER": "sometimes", "OTEL_TRACES_EXPORTER": "otlp"}[k]
		}}
	if code := m.Run(context.Background(), []string{"dev", "--addr", "127.0.0.1:0"}); code != exitUsage || !strings.Contains(stderr.String(), "OTEL_TRACES_SAMPLER") {
		t.Errorf("dev with a bad sampler: exit %d, stderr %q; want 2 naming OTEL_TRACES_SAMPLER", code, stderr.String())
	}
}
