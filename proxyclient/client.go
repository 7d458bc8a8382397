package proxyclient

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Version is the proxyq version in the User-Agent. Set at build time with
// -ldflags "-X github.com/proxyq/proxyq/proxyclient.Version=…".
var Version = "dev"

const (
	// maxErrorBody bounds what is read of a non-2xx body: Twilio's JSON is a few
	// hundred bytes; anything longer is a gateway page we only keep a snippet of.
	maxErrorBody = 64 << 10
	// maxSuccessBody bounds a 2xx body: a 1000-item list page with 1600-char bodies is
	// about 4 MiB.
	maxSuccessBody = 10 << 20
)

// Client calls the Twilio Proxy v1 API. It is safe for concurrent use and holds no
// per-call state; create one per account and reuse it (it owns a connection pool).
type Client struct {
	cfg       Config
	base      *url.URL
	msgBase   *url.URL // Messaging REST API (FetchMessage)
	http      *http.Client
	user      string
	secret    string
	userAgent string
	// authorization is the Authorization header SetBasicAuth would write for user and
	// secret, encoded once rather than per request.
	authorization string
	// now is the clock for HTTP-date Retry-After values; tests replace it.
	now func() time.Time
}

// New validates cfg (after WithDefaults) and returns a Client. It returns the
// *ValidationError from Config.Validate.
func New(cfg Config) (*Client, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base, err := url.Parse(cfg.Endpoint())
	if err != nil {
		return nil, invalid("BaseURL", "must be an absolute http or https URL")
	}
	msgBase, err := url.Parse(cfg.MessagingEndpoint())
	if err != nil {
		return nil, invalid("MessagingBaseURL", "must be an absolute http or https URL")
	}
	var hc http.Client
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// A worker runs many concurrent sends to one host; the default of 2 idle
		// connections per host would make most of them dial (and TLS-handshake) anew.
		t.MaxIdleConnsPerHost = 100
		if cfg.MaxIdleConnsPerHost > 0 {
			t.MaxIdleConnsPerHost = cfg.MaxIdleConnsPerHost
		}
		t.MaxIdleConns = max(t.MaxIdleConns, t.MaxIdleConnsPerHost)
		hc.Transport = t
	}
	if cfg.WrapTransport != nil {
		rt := hc.Transport
		if rt == nil {
			rt = http.DefaultTransport
		}
		hc.Transport = cfg.WrapTransport(rt)
	}
	// A redirect would resend a POST or carry credentials elsewhere: return the 3xx.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	c := &Client{cfg: cfg, base: base, msgBase: msgBase, http: &hc, now: time.Now}
	if cfg.APIKey != "" {
		c.user, c.secret = cfg.APIKey, cfg.APISecret
	} else {
		c.user, c.secret = cfg.AccountSID, cfg.AuthToken
	}
	c.authorization = "Basic " + base64.StdEncoding.EncodeToString([]byte(c.user+":"+c.secret))
	c.userAgent = "proxyq/" + Version
	if ua := strings.TrimSpace(cfg.UserAgent); ua != "" {
		c.userAgent += " " + ua
	}
	return c, nil
}

// AccountKey identifies the Twilio account for limits shared between workers: the
// AccountSID when set, else the APIKey. It is not a secret.
func (c *Client) AccountKey() string {
	if c.cfg.AccountSID != "" {
		return c.cfg.AccountSID
	}
	return c.cfg.APIKey
}

// Endpoint returns the base URL requests go to (see Config.Endpoint).
func (c *Client) Endpoint() string { return c.base.String() }

// MessagingEndpoint returns the base URL FetchMessage sends requests to (see
// Config.MessagingEndpoint).
func (c *Client) MessagingEndpoint() string { return c.msgBase.String() }

// resourceURL appends "/v1" and the escaped segments to the base URL, keeping its path
// prefix. Segments are escaped even though callers validated them.
func (c *Client) resourceURL(segments ...string) *url.URL {
	return joinURL(c.base, append([]string{"v1"}, segments...)...)
}

// joinURL appends the escaped segments to base's path, keeping its path prefix and
// dropping any query, fragment or userinfo.
func joinURL(base *url.URL, segments ...string) *url.URL {
	var b strings.Builder
	b.WriteString(strings.TrimRight(base.EscapedPath(), "/"))
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	u := *base
	u.RawPath = b.String()
	u.Path, _ = url.PathUnescape(u.RawPath) // cannot fail: every byte came from escaping
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return &u
}

// do sends one request and decodes a 2xx JSON body into out. It returns *Error,
// *TransportError or *DecodeError.
func (c *Client) do(ctx context.Context, method string, u *url.URL, form url.Values, out any) error {
	// u.EscapedPath() names the request in errors only: computed where one is returned.
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return &TransportError{Method: method, Path: u.EscapedPath(), Err: fmt.Errorf("%w: need an absolute http or https URL", errInvalidURL)}
	}

	ctx, cancel := context.WithTimeout(ctx, c.cfg.HTTPTimeout)
	defer cancel()

	// WroteRequest is the only reliable signal of "the server may have it": the
	// transport reports it once the whole request (headers and body) was written.
	// It can fire more than once when the transport retries a request that was not
	// written; once true it stays true.
	var written atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				written.Store(true)
			}
		},
	})

	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return &TransportError{Method: method, Path: u.EscapedPath(), Err: fmt.Errorf("%w: %w", errInvalidURL, unwrapURLError(err))}
	}
	req.Header.Set("Authorization", c.authorization) // req.SetBasicAuth(c.user, c.secret)
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Accept", "application/json")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}

	resp, err := c.http.Do(req)
	if err != nil {
		return &TransportError{Method: method, Path: u.EscapedPath(), Err: unwrapURLError(err), RequestWritten: written.Load()}
	}
	defer func() {
		// Drain a little so the connection can be reused, then close.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		_ = resp.Body.Close()
	}()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// A failed read still leaves the status, which is what classification needs.
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return newError(method, u.EscapedPath(), resp, data, c.now(), c.cfg.MaxRetryAfter)
	}

	data, err := readBody(resp.Body, maxSuccessBody+1, resp.ContentLength)
	if err != nil {
		return &DecodeError{Method: method, Path: u.EscapedPath(), StatusCode: resp.StatusCode, Err: unwrapURLError(err)}
	}
	if len(data) > maxSuccessBody {
		return &DecodeError{Method: method, Path: u.EscapedPath(), StatusCode: resp.StatusCode,
			Err: fmt.Errorf("%w: body exceeds %d bytes", errBadContent, maxSuccessBody)}
	}
	if err := decodeJSON(data, out); err != nil {
		return &DecodeError{Method: method, Path: u.EscapedPath(), StatusCode: resp.StatusCode, Err: err}
	}
	return nil
}

// readBody is io.ReadAll(io.LimitReader(r, limit)), reading into one buffer of the announced
// size (Content-Length; -1 when unknown) instead of growing one from 512 bytes.
func readBody(r io.Reader, limit, size int64) ([]byte, error) {
	lr := &io.LimitedReader{R: r, N: limit}
	if size < 0 || size >= limit {
		return io.ReadAll(lr)
	}
	b := make([]byte, 0, size+1) // +1: the read that finds EOF needs room, or it would grow b
	for {
		n, err := lr.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return b, err
		}
		if len(b) == cap(b) { // longer than announced: grow as io.ReadAll does
			b = append(b, 0)[:len(b)]
		}
	}
}

// bodyDecoder is implemented by answers that decode themselves in one pass: json.Unmarshal of
// a type with an UnmarshalJSON method scans the body once to find the value and again inside
// the method, and this runs once per message sent.
type bodyDecoder interface{ decodeBody(data []byte) error }

func decodeJSON(data []byte, out any) error {
	if d, ok := out.(bodyDecoder); ok {
		return d.decodeBody(data)
	}
	return json.Unmarshal(data, out)
}

// unwrapURLError drops net/http's *url.Error wrapper, whose text quotes the whole URL
// (query string included), keeping its cause. A parse failure keeps the wrapper with
// the URL removed, so Classify can still see it was a URL problem.
func unwrapURLError(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	if ue.Op == "parse" {
		return &url.Error{Op: ue.Op, URL: "(redacted)", Err: ue.Err}
	}
	return ue.Err
}
