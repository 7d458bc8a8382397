package proxytest

import (
	"net/http"
	"net/http/httptest"
)

// DefaultPrefix is the path NewServer mounts the Fake under. It is not empty on purpose: a
// client that drops the base URL's path, or builds absolute URLs from the host alone, fails
// against it instead of passing by luck.
const DefaultPrefix = "/twilio"

// Server is a Fake served over HTTP on a loopback port.
type Server struct {
	// URL is the base URL to give a client: scheme, 127.0.0.1:port and the prefix, with no
	// trailing slash, e.g. "http://127.0.0.1:41234/twilio". API paths go after it
	// ("/v1/Services/…").
	URL string
	// Fake is the fake being served: script faults and read counters through it.
	Fake *Fake

	ts *httptest.Server
}

// ServerOption customises NewServer.
type ServerOption func(*serverOptions)

type serverOptions struct {
	prefix string
	tls    bool
}

// WithPrefix mounts the Fake under prefix instead of DefaultPrefix; "" mounts it at the root.
func WithPrefix(prefix string) ServerOption {
	return func(o *serverOptions) { o.prefix = prefix }
}

// WithTLS serves HTTPS with httptest's self-signed certificate; use Server.Client, which
// trusts it.
func WithTLS() ServerOption {
	return func(o *serverOptions) { o.tls = true }
}

// NewServer starts a Fake configured by cfg on 127.0.0.1, mounted under DefaultPrefix unless
// WithPrefix says otherwise. Call Close when done (t.Cleanup(srv.Close)). Like New, it panics
// with a *ConfigError when cfg is invalid.
func NewServer(cfg Config, opts ...ServerOption) *Server {
	o := serverOptions{prefix: DefaultPrefix}
	for _, opt := range opts {
		opt(&o)
	}
	f := New(cfg)
	h := f.Mount(o.prefix)
	var ts *httptest.Server
	if o.tls {
		ts = httptest.NewTLSServer(h)
	} else {
		ts = httptest.NewServer(h)
	}
	return &Server{URL: ts.URL + cleanPrefix(o.prefix), Fake: f, ts: ts}
}

// Client returns an HTTP client for the server (it trusts the certificate under WithTLS).
func (s *Server) Client() *http.Client { return s.ts.Client() }

// Close closes the Fake first, so hangs and latency waits end, then the listener, waiting for
// requests in progress to finish.
func (s *Server) Close() {
	s.Fake.Close()
	s.ts.Close()
}
