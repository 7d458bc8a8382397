package proxyclient_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/proxyq/proxyq/proxyclient"
)

func TestClassifyTable(t *testing.T) {
	t.Parallel()
	httpErr := func(status int) error { return &proxyclient.Error{Method: "POST", Path: "/v1/x", StatusCode: status} }
	transport := func(written bool, err error) error {
		return &proxyclient.TransportError{Method: "POST", Path: "/v1/x", Err: err, RequestWritten: written}
	}
	tests := []struct {
		name string
		err  error
		want proxyclient.Class
	}{
		{"nil", nil, proxyclient.ClassNone},
		{"429", httpErr(429), proxyclient.ClassRetryable},
		{"503", httpErr(503), proxyclient.ClassRetryable},
		{"500", httpErr(500), proxyclient.ClassAmbiguous},
		{"502", httpErr(502), proxyclient.ClassAmbiguous},
		{"504", httpErr(504), proxyclient.ClassAmbiguous},
		{"501", httpErr(501), proxyclient.ClassPermanent},
		{"505", httpErr(505), proxyclient.ClassAmbiguous},
		{"599", httpErr(599), proxyclient.ClassAmbiguous},
		{"400", httpErr(400), proxyclient.ClassPermanent},
		{"401", httpErr(401), proxyclient.ClassPermanent},
		{"403", httpErr(403), proxyclient.ClassPermanent},
		{"404", httpErr(404), proxyclient.ClassPermanent},
		{"409", httpErr(409), proxyclient.ClassPermanent},
		{"301", httpErr(301), proxyclient.ClassPermanent},
		{"307", httpErr(307), proxyclient.ClassPermanent},
		{"wrapped 429", fmt.Errorf("send: %w", httpErr(429)), proxyclient.ClassRetryable},
		{"refused, not written", transport(false, syscall.ECONNREFUSED), proxyclient.ClassRetryable},
		{"DNS, not written", transport(false, &net.DNSError{Err: "no such host", Name: "proxy.twilio.com", IsNotFound: true}), proxyclient.ClassRetryable},
		{"canceled before write", transport(false, context.Canceled), proxyclient.ClassRetryable},
		{"deadline before write", transport(false, context.DeadlineExceeded), proxyclient.ClassRetryable},
		{"timeout after write", transport(true, context.DeadlineExceeded), proxyclient.ClassAmbiguous},
		{"reset after write", transport(true, syscall.ECONNRESET), proxyclient.ClassAmbiguous},
		{"EOF after write", transport(true, io.EOF), proxyclient.ClassAmbiguous},
		{"unknown authority", transport(false, &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), proxyclient.ClassPermanent},
		{"hostname mismatch", transport(false, x509.HostnameError{Host: "x"}), proxyclient.ClassPermanent},
		{"not TLS", transport(false, tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}), proxyclient.ClassPermanent},
		{"handshake alert", transport(false, tls.AlertError(40)), proxyclient.ClassPermanent},
		{"url parse", transport(false, &url.Error{Op: "parse", URL: "(redacted)", Err: errors.New("invalid control character in URL")}), proxyclient.ClassPermanent},
		{"unsupported scheme", transport(false, errors.New(`unsupported protocol scheme "ftp"`)), proxyclient.ClassPermanent},
		{"TLS error after write still ambiguous", transport(true, tls.AlertError(40)), proxyclient.ClassAmbiguous},
		{"decode after 2xx", &proxyclient.DecodeError{Method: "POST", Path: "/v1/x", StatusCode: 201, Err: io.ErrUnexpectedEOF}, proxyclient.ClassAmbiguous},
		{"validation", &proxyclient.ValidationError{Field: "ServiceSID", Rule: "must match"}, proxyclient.ClassPermanent},
		{"unsafe next page", fmt.Errorf("x: %w", proxyclient.ErrUnsafeNextPage), proxyclient.ClassPermanent},
		{"bare canceled", context.Canceled, proxyclient.ClassRetryable},
		{"wrapped deadline", fmt.Errorf("limiter: %w", context.DeadlineExceeded), proxyclient.ClassRetryable},
		{"unknown", errors.New("something odd"), proxyclient.ClassAmbiguous},
		{"unknown EOF", io.EOF, proxyclient.ClassAmbiguous},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := proxyclient.Classify(tt.err); got != tt.want {
				t.Errorf("Classify(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestClassString(t *testing.T) {
	t.Parallel()
	for c, want := range map[proxyclient.Class]string{
		proxyclient.ClassNone: "none", proxyclient.ClassRetryable: "retryable",
		proxyclient.ClassPermanent: "permanent", proxyclient.ClassAmbiguous: "ambiguous", 9: "Class(9)",
	} {
		if c.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(c), c.String(), want)
		}
	}
}

// closedURL returns the URL of a loopback port nothing listens on any more.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

// TestClassifyTransportFaults produces real transport failures on loopback and checks
// RequestWritten and the class end to end.
func TestClassifyTransportFaults(t *testing.T) {
	t.Parallel()

	type fault struct {
		name        string
		setup       func(t *testing.T) (c *proxyclient.Client, ctx context.Context)
		wantWritten bool
		wantClass   proxyclient.Class
		wantIs      error
	}
	faults := []fault{
		{
			name: "listener closed: connection refused",
			setup: func(t *testing.T) (*proxyclient.Client, context.Context) {
				return newClient(t, closedURL(t), nil), context.Background()
			},
			wantWritten: false, wantClass: proxyclient.ClassRetryable, wantIs: syscall.ECONNREFUSED,
		},
		{
			name: "DNS failure while dialing",
			setup: func(t *testing.T) (*proxyclient.Client, context.Context) {
				tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
					return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no such host", Name: "proxy.twilio.com", IsNotFound: true}}
				}}
				t.Cleanup(tr.CloseIdleConnections)
				return newClient(t, "http://proxy.invalid", func(c *proxyclient.Config) { c.HTTPClient = &http.Client{Transport: tr} }), context.Background()
			},
			wantWritten: false, wantClass: proxyclient.ClassRetryable,
		},
		{
			name: "context canceled before the call",
			setup: func(t *testing.T) (*proxyclient.Client, context.Context) {
				srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					t.Error("request reached the server")
				}))
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return newClient(t, srv.URL, nil), ctx
			},
			wantWritten: false, wantClass: proxyclient.ClassRetryable, wantIs: context.Canceled,
		},
		{
			name: "TLS certificate not trusted",
			setup: func(t *testing.T) (*proxyclient.Client, context.Context) {
				srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					t.Error("request reached the server")
				}))
				// The failed handshake is expected; keep it out of the test log.
				srv.Config.ErrorLog = log.New(io.Discard, "", 0)
				srv.StartTLS()
				t.Cleanup(srv.Close)
				return newClient(t, srv.URL, nil), context.Background()
			},
			wantWritten: false, wantClass: proxyclient.ClassPermanent,
		},
		{
			name: "server hijacks and closes after reading the request",
			setup: func(t *testing.T) (*proxyclient.Client, context.Context) {
				srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					_, _ = io.ReadAll(r.Body)
					conn, _, err := http.NewResponseController(w).Hijack()
					if err != nil {
						t.Error(err)
						return
					}
					_ = conn.Close()
				}))
				return newClient(t, srv.URL, nil), context.Background()
			},
			wantWritten: true, wantClass: proxyclient.ClassAmbiguous,
		},
		{
			name: "server hangs past HTTPTimeout",
			setup: func(t *testing.T) (*proxyclient.Client, context.Context) {
				release := make(chan struct{})
				srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					_, _ = io.ReadAll(r.Body)
					select {
					case <-r.Context().Done():
					case <-release:
					}
				}))
				t.Cleanup(func() { close(release) }) // runs before srv.Close (LIFO)
				return newClient(t, srv.URL, func(c *proxyclient.Config) { c.HTTPTimeout = 100 * time.Millisecond }), context.Background()
			},
			wantWritten: true, wantClass: proxyclient.ClassAmbiguous, wantIs: context.DeadlineExceeded,
		},
		{
			name: "caller cancels after the server got the request",
			setup: func(t *testing.T) (*proxyclient.Client, context.Context) {
				ctx, cancel := context.WithCancel(context.Background())
				t.Cleanup(cancel)
				srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					_, _ = io.ReadAll(r.Body)
					cancel()
					<-r.Context().Done()
				}))
				return newClient(t, srv.URL, nil), ctx
			},
			wantWritten: true, wantClass: proxyclient.ClassAmbiguous, wantIs: context.Canceled,
		},
	}

	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			c, ctx := f.setup(t)
			mi, err := c.CreateMessageInteraction(ctx, createParams())
			if mi != nil {
				t.Fatalf("got interaction %+v", mi)
			}
			var te *proxyclient.TransportError
			if !errors.As(err, &te) {
				t.Fatalf("err = %T %v, want *TransportError", err, err)
			}
			if te.RequestWritten != f.wantWritten {
				t.Errorf("RequestWritten = %v, want %v (err %v)", te.RequestWritten, f.wantWritten, err)
			}
			if got := proxyclient.Classify(err); got != f.wantClass {
				t.Errorf("Classify = %v, want %v (err %v)", got, f.wantClass, err)
			}
			if f.wantIs != nil && !errors.Is(err, f.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, f.wantIs)
			}
			if te.Method != http.MethodPost || te.Path == "" {
				t.Errorf("Method/Path = %q %q", te.Method, te.Path)
			}
		})
	}
}

// TestClassifySuccessWithBadBody: the interaction was created, so a body we cannot read
// must not look like "not sent".
func TestClassifySuccessWithBadBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"garbage JSON", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, `<html>created?</html>`)
		}},
		{"wrong field type", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, `{"sid": 42}`)
		}},
		{"empty 204", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		}},
		{"body cut short", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(interactionJSON)))
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, interactionJSON[:40])
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, tt.handler)
			c := newClient(t, srv.URL, nil)
			_, err := c.CreateMessageInteraction(context.Background(), createParams())
			var de *proxyclient.DecodeError
			if !errors.As(err, &de) || de.StatusCode < 200 || de.StatusCode > 299 {
				t.Fatalf("err = %T %v, want *DecodeError with a 2xx status", err, err)
			}
			if got := proxyclient.Classify(err); got != proxyclient.ClassAmbiguous {
				t.Errorf("Classify = %v, want ambiguous", got)
			}
		})
	}
}
