package convtest

import (
	"context"
	"net/http"
	"net/http/httptest"
)

// DefaultPrefix is where NewServer mounts the Fake: not empty, so a client that drops the
// base URL's path fails loudly.
const DefaultPrefix = "/twilio"

// Server is a Fake on a loopback port. URL is the base URL for a client (prefix included).
type Server struct {
	URL  string
	Fake *Fake
	ts   *httptest.Server
}

// NewServer starts a Fake on 127.0.0.1 under DefaultPrefix. It returns New's error.
func NewServer(cfg Config) (*Server, error) {
	f, err := New(cfg)
	if err != nil {
		return nil, err
	}
	ts := httptest.NewServer(f.Mount(DefaultPrefix))
	return &Server{URL: ts.URL + DefaultPrefix, Fake: f, ts: ts}, nil
}

// Close closes the Fake (ending hangs and deliveries), then the listener.
func (s *Server) Close() {
	s.Fake.Close()
	s.ts.Close()
}

type prefixKey struct{}

func withPrefix(ctx context.Context, p string) context.Context {
	return context.WithValue(ctx, prefixKey{}, p)
}

// absURL is the absolute URL of path (below the mount prefix) as the client addressed us.
func absURL(r *http.Request, path string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	p, _ := r.Context().Value(prefixKey{}).(string)
	return scheme + "://" + r.Host + p + path
}
