package otelx

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// This file is the OTLP/HTTP trace client: what go.opentelemetry.io's otlptracehttp does, on
// top of the SDK's own otlptrace exporter (which turns spans into OTLP's messages). It is ours
// because otlptracehttp's configuration package and the OTLP collector package it sends with
// import gRPC: 66 packages and about a tenth of a cold build of proxyq, for a protocol the
// default build does not speak. What it keeps of otlptracehttp: the endpoint, headers, timeout,
// gzip, certificates from the OTEL_EXPORTER_OTLP_* variables (the …_TRACES_… form wins);
// retries of 429, 502, 503 and 504 with backoff and Retry-After within the export's timeout;
// partial successes reported to OpenTelemetry's error handler; http/protobuf and http/json.

// defaultTracesURL is the specification's default for OTLP/HTTP traces.
const defaultTracesURL = "http://localhost:4318/v1/traces"

// defaultOTLPTimeout bounds one export, retries included (the specification's default).
const defaultOTLPTimeout = 10 * time.Second

// otlpHTTPClient implements otlptrace.Client.
type otlpHTTPClient struct {
	url     string
	json    bool
	gzip    bool
	timeout time.Duration
	headers http.Header
	http    *http.Client
	uploads *uploads
}

// uploads tracks the exports in flight so that Provider.Shutdown can end them: the SDK's
// batch processor stops waiting for an export at Shutdown's deadline but leaves it running,
// and it calls the client's Stop only after the export returns.
type uploads struct {
	stop     context.Context
	stopNow  context.CancelFunc
	inFlight sync.WaitGroup
}

func newUploads() *uploads {
	stop, stopNow := context.WithCancel(context.Background())
	return &uploads{stop: stop, stopNow: stopNow}
}

// begin is the context of one export: ctx, bounded by timeout, and ended by end. done must be
// called when the export returns.
func (u *uploads) begin(ctx context.Context, timeout time.Duration) (_ context.Context, done func()) {
	u.inFlight.Add(1)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	unhook := context.AfterFunc(u.stop, cancel)
	return ctx, func() {
		unhook()
		cancel()
		u.inFlight.Done()
	}
}

// end cancels the exports in flight and waits for them to return.
func (u *uploads) end() {
	u.stopNow()
	u.inFlight.Wait()
}

// otlpSettings are the OTEL_EXPORTER_OTLP_* settings the client reads besides the endpoint
// and protocol (Config has those).
type otlpSettings struct {
	headers http.Header
	timeout time.Duration
	gzip    bool
	tls     *tls.Config // nil: the system's roots, no client certificate
}

// otlpSettingsFromEnv reads the exporter's variables through getenv; a malformed value is an
// error naming its variable.
func otlpSettingsFromEnv(getenv func(string) string) (otlpSettings, error) {
	lookup := func(suffix string) (string, string) { return tracesOrGeneral(getenv, suffix) }
	s := otlpSettings{timeout: defaultOTLPTimeout, headers: http.Header{}}

	if v, name := lookup("HEADERS"); v != "" {
		for _, pair := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(pair, "=")
			k = strings.TrimSpace(k)
			if !ok || k == "" {
				return s, fmt.Errorf("%s: %q is not key=value (want e.g. api-key=secret,tenant=a)", name, strings.TrimSpace(pair))
			}
			decoded, err := url.PathUnescape(strings.TrimSpace(val))
			if err != nil {
				return s, fmt.Errorf("%s: the value of %q is not URL-encoded: %v", name, k, err)
			}
			s.headers.Add(k, decoded)
		}
	}
	if v, name := lookup("TIMEOUT"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms <= 0 {
			return s, fmt.Errorf("%s=%q: want a positive number of milliseconds", name, v)
		}
		s.timeout = time.Duration(ms) * time.Millisecond
	}
	if v, name := lookup("COMPRESSION"); v != "" {
		switch strings.ToLower(v) {
		case "gzip":
			s.gzip = true
		case "none":
		default:
			return s, fmt.Errorf("%s=%q: want gzip or none", name, v)
		}
	}

	ca, caName := lookup("CERTIFICATE")
	cert, certName := lookup("CLIENT_CERTIFICATE")
	key, keyName := lookup("CLIENT_KEY")
	if ca != "" || cert != "" || key != "" {
		s.tls = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return s, fmt.Errorf("%s: %v", caName, err)
		}
		s.tls.RootCAs = x509.NewCertPool()
		if !s.tls.RootCAs.AppendCertsFromPEM(pem) {
			return s, fmt.Errorf("%s=%q: no PEM certificate in the file", caName, ca)
		}
	}
	if (cert == "") != (key == "") {
		return s, fmt.Errorf("%s and %s go together: set both or neither", certName, keyName)
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return s, fmt.Errorf("%s, %s: %v", certName, keyName, err)
		}
		s.tls.Certificates = []tls.Certificate{pair}
	}
	return s, nil
}

// tracesOrGeneral returns OTEL_EXPORTER_OTLP_TRACES_<suffix> when it is set, else
// OTEL_EXPORTER_OTLP_<suffix>, trimmed, with the name of the variable it read (for errors).
func tracesOrGeneral(getenv func(string) string, suffix string) (value, name string) {
	name = "OTEL_EXPORTER_OTLP_TRACES_" + suffix
	if v := strings.TrimSpace(getenv(name)); v != "" {
		return v, name
	}
	name = "OTEL_EXPORTER_OTLP_" + suffix
	return strings.TrimSpace(getenv(name)), name
}

// newOTLPHTTPExporter is the exporter for cfg (protocol http/protobuf or http/json).
func newOTLPHTTPExporter(ctx context.Context, cfg Config, s otlpSettings, inFlight *uploads) (*otlptrace.Exporter, error) {
	endpoint := cfg.EndpointURL
	if endpoint == "" {
		endpoint = defaultTracesURL
	}
	if s.timeout <= 0 {
		s.timeout = defaultOTLPTimeout // a Config built by hand, not by ConfigFromEnv
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if s.tls != nil {
		transport.TLSClientConfig = s.tls
	}
	return otlptrace.New(ctx, &otlpHTTPClient{
		url:     endpoint,
		json:    cfg.Protocol == "http/json",
		gzip:    s.gzip,
		timeout: s.timeout,
		headers: s.headers,
		http:    &http.Client{Transport: transport},
		uploads: inFlight,
	})
}

func (c *otlpHTTPClient) Start(context.Context) error { return nil }

func (c *otlpHTTPClient) Stop(context.Context) error {
	c.http.CloseIdleConnections()
	return nil
}

// UploadTraces sends one ExportTraceServiceRequest, retrying what the specification says is
// retryable until the export's timeout.
func (c *otlpHTTPClient) UploadTraces(ctx context.Context, spans []*tracepb.ResourceSpans) error {
	ctx, done := c.uploads.begin(ctx, c.timeout)
	defer done()
	body, contentType, err := c.encode(spans)
	if err != nil {
		return err
	}
	// Backoff from 1 s, doubling, jittered; otlptracehttp starts at 5 s, but the whole export
	// has only the timeout (10 s by default), and a collector's brief 503 is the common case.
	backoff := time.Second
	for attempt := 1; ; attempt++ {
		wait, err := c.post(ctx, body, contentType)
		if err == nil || wait < 0 {
			return err
		}
		if wait == 0 {
			wait = backoff/2 + rand.N(backoff) // jitter: processes that failed together retry apart
			backoff = min(2*backoff, 30*time.Second)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (after %d attempts; last: %v)", ctx.Err(), attempt, err)
		case <-time.After(wait):
		}
	}
}

// post sends body once. wait is -1 when err is final, 0 when it is retryable after a backoff,
// and the server's Retry-After when it gave one.
func (c *otlpHTTPClient) post(ctx context.Context, body []byte, contentType string) (wait time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return -1, err
	}
	for k, vs := range c.headers {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", "proxyq OTLP exporter (OpenTelemetry Go SDK "+otlptrace.Version()+")")
	if c.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return -1, fmt.Errorf("OTLP export to %s: %w", c.url, err)
		}
		return 0, fmt.Errorf("OTLP export to %s: %w", c.url, err) // connection refused, reset: retry
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		if rejected, msg := partialSuccess(answer, resp.Header.Get("Content-Type")); rejected != 0 || msg != "" {
			otel.Handle(fmt.Errorf("OTLP partial success: %d spans rejected: %s", rejected, msg))
		}
		return -1, nil
	}
	err = fmt.Errorf("OTLP export to %s: %s: %s", c.url, resp.Status, strings.TrimSpace(string(answer)))
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		if s, convErr := strconv.Atoi(resp.Header.Get("Retry-After")); convErr == nil && s > 0 {
			return time.Duration(s) * time.Second, err
		}
		return 0, err
	}
	return -1, err
}

// encode is the request body: ExportTraceServiceRequest, whose only field (1) is the repeated
// ResourceSpans, written with protowire so that the collector package (and gRPC) stay out.
func (c *otlpHTTPClient) encode(spans []*tracepb.ResourceSpans) (body []byte, contentType string, err error) {
	if c.json {
		body, err = otlpJSON(spans)
		contentType = "application/json"
	} else {
		for _, rs := range spans {
			body = protowire.AppendTag(body, 1, protowire.BytesType)
			body = protowire.AppendVarint(body, uint64(proto.Size(rs)))
			if body, err = (proto.MarshalOptions{}).MarshalAppend(body, rs); err != nil {
				break
			}
		}
		contentType = "application/x-protobuf"
	}
	if err != nil {
		return nil, "", fmt.Errorf("OTLP: encoding spans: %w", err)
	}
	if c.gzip {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(body)
		if err := zw.Close(); err != nil {
			return nil, "", err
		}
		body = buf.Bytes()
	}
	return body, contentType, nil
}

// otlpIDField is a trace or span ID as protojson writes it (base64); OTLP/JSON wants hex.
// protojson varies its spacing on purpose, hence \s*. Inside a JSON string a quote is escaped,
// so the pattern cannot match an attribute's text.
var otlpIDField = regexp.MustCompile(`"(traceId|spanId|parentSpanId)":\s*"([A-Za-z0-9+/=]*)"`)

// otlpJSON is the OTLP/JSON encoding of an ExportTraceServiceRequest: protobuf's JSON mapping
// with enums as numbers and IDs in hex, as the specification asks.
func otlpJSON(spans []*tracepb.ResourceSpans) ([]byte, error) {
	opts := protojson.MarshalOptions{UseEnumNumbers: true}
	out := []byte(`{"resourceSpans":[`)
	for i, rs := range spans {
		b, err := opts.Marshal(rs)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, b...)
	}
	out = append(out, "]}"...)
	var bad error
	out = otlpIDField.ReplaceAllFunc(out, func(m []byte) []byte {
		sub := otlpIDField.FindSubmatch(m)
		raw, err := base64.StdEncoding.DecodeString(string(sub[2]))
		if err != nil {
			bad = err
			return m
		}
		return fmt.Appendf(nil, `"%s":"%x"`, sub[1], raw)
	})
	return out, bad
}

// partialSuccess reads ExportTraceServiceResponse.partial_success (field 1: rejected_spans 1,
// error_message 2) from a protobuf answer; a JSON answer is searched for the same two fields.
func partialSuccess(answer []byte, contentType string) (rejected int64, msg string) {
	if len(answer) == 0 {
		return 0, ""
	}
	if strings.HasPrefix(contentType, "application/json") {
		var v struct {
			PartialSuccess struct {
				RejectedSpans json.RawMessage `json:"rejectedSpans"` // a number, or a string (int64 in JSON)
				ErrorMessage  string          `json:"errorMessage"`
			} `json:"partialSuccess"`
		}
		if json.Unmarshal(answer, &v) != nil {
			return 0, ""
		}
		rejected, _ = strconv.ParseInt(strings.Trim(string(v.PartialSuccess.RejectedSpans), `"`), 10, 64)
		return rejected, v.PartialSuccess.ErrorMessage
	}
	inner := protoField(answer, 1)
	if inner == nil {
		return 0, ""
	}
	for b := inner; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return rejected, msg
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return rejected, msg
			}
			rejected, b = int64(v), b[m:]
		case num == 2 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return rejected, msg
			}
			msg, b = string(v), b[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return rejected, msg
			}
			b = b[m:]
		}
	}
	return rejected, msg
}

// protoField returns the bytes of the first length-delimited field num of message b.
func protoField(b []byte, num protowire.Number) []byte {
	for len(b) > 0 {
		n, typ, m := protowire.ConsumeTag(b)
		if m < 0 {
			return nil
		}
		b = b[m:]
		if n == num && typ == protowire.BytesType {
			v, k := protowire.ConsumeBytes(b)
			if k < 0 {
				return nil
			}
			return v
		}
		k := protowire.ConsumeFieldValue(n, typ, b)
		if k < 0 {
			return nil
		}
		b = b[k:]
	}
	return nil
}
