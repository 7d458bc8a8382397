package conversations

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/proxyq/proxyq/proxyclient"
)

const (
	// maxErrorBody bounds what is read of a non-2xx body (Twilio's JSON is a few hundred bytes).
	maxErrorBody = 64 << 10
	// maxSuccessBody bounds a 2xx body: a 100-message page with 1,600-character bodies and
	// 16 KiB attributes is under 2 MiB.
	maxSuccessBody = 10 << 20
)

// errBodyTooLarge marks a 2xx body over maxSuccessBody: reading it again gives the same.
var errBodyTooLarge = errors.New("response body too large")

// Client calls the Twilio Conversations v1 API. It is safe for concurrent use; create one per
// account and reuse it (it owns a connection pool).
type Client struct {
	cfg           Config
	base          *url.URL
	http          *http.Client
	authorization string
	userAgent     string
	// now is the clock for HTTP-date Retry-After values; tests replace it.
	now func() time.Time
}

// New validates cfg (after WithDefaults) and returns a Client. It returns the
// *proxyclient.ValidationError from Config.Validate.
func New(cfg Config) (*Client, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base, err := url.Parse(cfg.Endpoint())
	if err != nil {
		return nil, invalid("BaseURL", "must be an absolute http or https URL")
	}
	var hc http.Client
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
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

	user, secret := cfg.AccountSID, cfg.AuthToken
	if cfg.APIKey != "" {
		user, secret = cfg.APIKey, cfg.APISecret
	}
	c := &Client{cfg: cfg, base: base, http: &hc, now: time.Now,
		authorization: "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+secret)),
		userAgent:     "proxyq/" + proxyclient.Version,
	}
	if ua := strings.TrimSpace(cfg.UserAgent); ua != "" {
		c.userAgent += " " + ua
	}
	return c, nil
}

// AccountKey identifies the Twilio account for limits shared between workers: the AccountSID
// when set, else the APIKey. It is not a secret.
func (c *Client) AccountKey() string {
	if c.cfg.AccountSID != "" {
		return c.cfg.AccountSID
	}
	return c.cfg.APIKey
}

// Endpoint returns the base URL requests go to (see Config.Endpoint).
func (c *Client) Endpoint() string { return c.base.String() }

// resourceURL appends "/v1" and the escaped segments to the base URL, keeping its path prefix.
func (c *Client) resourceURL(segments ...string) *url.URL {
	var b strings.Builder
	b.WriteString(strings.TrimRight(c.base.EscapedPath(), "/"))
	for _, s := range append([]string{"v1"}, segments...) {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	u := *c.base
	u.RawPath = b.String()
	u.Path, _ = url.PathUnescape(u.RawPath) // cannot fail: every byte came from escaping
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return &u
}

// request is one HTTP exchange: form is nil for a GET; header holds extra request headers.
type request struct {
	method string
	u      *url.URL
	form   url.Values
	header http.Header
}

// do sends one request and decodes a 2xx JSON body into out. It returns *proxyclient.Error,
// *proxyclient.TransportError or *proxyclient.DecodeError: the Proxy client's types, so one
// classification serves both APIs.
func (c *Client) do(ctx context.Context, r request, out any) error {
	path := r.u.EscapedPath()
	if r.u.Scheme != "http" && r.u.Scheme != "https" || r.u.Host == "" {
		// A parse-op *url.Error is what proxyclient.Classify knows as "invalid URL": permanent.
		return &proxyclient.TransportError{Method: r.method, Path: path,
			Err: &url.Error{Op: "parse", URL: "(redacted)", Err: errors.New("need an absolute http or https URL")}}
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.HTTPTimeout)
	defer cancel()

	// WroteRequest is the one reliable signal of "the server may have it".
	var written atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				written.Store(true)
			}
		},
	})
	var body io.Reader
	if r.form != nil {
		body = strings.NewReader(r.form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, r.method, r.u.String(), body)
	if err != nil {
		return &proxyclient.TransportError{Method: r.method, Path: path, Err: &url.Error{Op: "parse", URL: "(redacted)", Err: errors.New("invalid request URL")}}
	}
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	req.Header.Set("Authorization", c.authorization)
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Accept", "application/json")
	if r.form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}

	resp, err := c.http.Do(req)
	if err != nil {
		return &proxyclient.TransportError{Method: r.method, Path: path, Err: unwrapURLError(err), RequestWritten: written.Load()}
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return newError(r.method, path, resp, data, c.now(), c.cfg.MaxRetryAfter)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxSuccessBody+1))
	if err != nil {
		return &proxyclient.DecodeError{Method: r.method, Path: path, StatusCode: resp.StatusCode, Err: unwrapURLError(err)}
	}
	if len(data) > maxSuccessBody {
		return &proxyclient.DecodeError{Method: r.method, Path: path, StatusCode: resp.StatusCode,
			Err: fmt.Errorf("%w: over %d bytes", errBodyTooLarge, maxSuccessBody)}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &proxyclient.DecodeError{Method: r.method, Path: path, StatusCode: resp.StatusCode, Err: err}
	}
	return nil
}

// unwrapURLError drops net/http's *url.Error wrapper, whose text quotes the whole URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// newError builds the *proxyclient.Error for a non-2xx answer from what was read of its body,
// as proxyclient does (Twilio's error JSON is the same on both APIs).
func newError(method, path string, resp *http.Response, body []byte, now time.Time, maxRetryAfter time.Duration) *proxyclient.Error {
	e := &proxyclient.Error{
		Method:     method,
		Path:       path,
		StatusCode: resp.StatusCode,
		RequestID:  sanitize(resp.Header.Get("Twilio-Request-Id"), 128),
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), now, maxRetryAfter),
	}
	var tb struct {
		Code     int             `json:"code"`
		Message  string          `json:"message"`
		MoreInfo string          `json:"more_info"`
		Details  json.RawMessage `json:"details"`
	}
	if json.Unmarshal(body, &tb) == nil {
		e.Code = tb.Code
		e.Message = sanitize(tb.Message, 512)
		e.MoreInfo = sanitize(tb.MoreInfo, 256)
		if len(tb.Details) > 0 && string(tb.Details) != "null" {
			e.Details = tb.Details
		}
	} else {
		e.Message = sanitize(stripTags(string(body)), 200)
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return e
}

// parseRetryAfter reads both forms of Retry-After (RFC 9110 §10.2.3). Garbage, zero and past
// values give 0 ("use your own backoff"); values above max are capped.
func parseRetryAfter(v string, now time.Time, max time.Duration) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if strings.Trim(v, "0123456789") == "" {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs > int64(max/time.Second) {
			return max
		}
		d = time.Duration(secs) * time.Second
	} else {
		t, err := http.ParseTime(v)
		if err != nil {
			return 0
		}
		d = t.Sub(now)
	}
	if d <= 0 {
		return 0
	}
	return min(d, max)
}

func stripTags(s string) string {
	var b strings.Builder
	in := false
	for _, r := range s {
		switch {
		case r == '<':
			in = true
			b.WriteByte(' ')
		case r == '>' && in:
			in = false
		case !in:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// sanitize makes s one line of valid UTF-8 without control characters, at most max runes.
func sanitize(s string, max int) string {
	s = strings.ToValidUTF8(s, "")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) > max {
		s = string([]rune(s)[:max]) + "…"
	}
	return s
}

// nextPageURL resolves a next_page_url and refuses it unless it has the base URL's scheme and
// host, so the Authorization header never travels elsewhere.
func (c *Client) nextPageURL(cur *url.URL, next string) (*url.URL, error) {
	ref, err := url.Parse(next)
	if err != nil {
		return nil, &proxyclient.DecodeError{Method: http.MethodGet, Path: cur.EscapedPath(), StatusCode: http.StatusOK,
			Err: errors.New("meta.next_page_url is not a URL")}
	}
	u := cur.ResolveReference(ref)
	if !strings.EqualFold(u.Scheme, c.base.Scheme) || canonicalHost(u) != canonicalHost(c.base) || u.User != nil {
		return nil, fmt.Errorf("conversations: GET %s: %w", cur.EscapedPath(), proxyclient.ErrUnsafeNextPage)
	}
	u.Fragment, u.RawFragment = "", ""
	return u, nil
}

func canonicalHost(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[strings.ToLower(u.Scheme)]
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}
