package proxyclient_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/proxyq/proxyq/proxyclient"
)

const html502 = `<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>nginx</center>
</body>
</html>
`

// TestErrorResponses drives real-looking Twilio (and gateway) error answers through a
// create and checks both the decoded *Error and its class: the classification must
// survive realistic bodies, not only synthetic errors.
func TestErrorResponses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		header      http.Header
		want        proxyclient.Error // Method and Path are checked separately
		wantClass   proxyclient.Class
		wantRetry   time.Duration // RetryAfter when the code implies a wait and no header came
	}{
		{
			name: "20404 not found", status: 404, contentType: "application/json",
			body:   `{"code": 20404, "message": "The requested resource /Services/` + testKS + `/Sessions/` + testKC + `/Participants/` + testKP + `/MessageInteractions was not found", "more_info": "https://www.twilio.com/docs/errors/20404", "status": 404}`,
			header: http.Header{"Twilio-Request-Id": {"RQ0123456789abcdef0123456789abcdef"}},
			want: proxyclient.Error{StatusCode: 404, Code: 20404,
				Message:  "The requested resource /Services/" + testKS + "/Sessions/" + testKC + "/Participants/" + testKP + "/MessageInteractions was not found",
				MoreInfo: "https://www.twilio.com/docs/errors/20404", RequestID: "RQ0123456789abcdef0123456789abcdef"},
			wantClass: proxyclient.ClassPermanent,
		},
		{
			name: "20429 too many requests", status: 429, contentType: "application/json",
			body:      `{"code": 20429, "message": "Too Many Requests", "more_info": "https://www.twilio.com/docs/errors/20429", "status": 429}`,
			header:    http.Header{"Retry-After": {"3"}},
			want:      proxyclient.Error{StatusCode: 429, Code: 20429, Message: "Too Many Requests", MoreInfo: "https://www.twilio.com/docs/errors/20429", RetryAfter: 3 * time.Second},
			wantClass: proxyclient.ClassRetryable,
		},
		{
			name: "80607 session closed", status: 400, contentType: "application/json",
			body:      `{"code": 80607, "message": "Session is closed", "more_info": "https://www.twilio.com/docs/errors/80607", "status": 400}`,
			want:      proxyclient.Error{StatusCode: 400, Code: 80607, Message: "Session is closed", MoreInfo: "https://www.twilio.com/docs/errors/80607"},
			wantClass: proxyclient.ClassPermanent,
		},
		{
			name: "21602 body required with details", status: 400, contentType: "application/json",
			body:      `{"code": 21602, "message": "Message body is required.", "more_info": "https://www.twilio.com/docs/errors/21602", "status": 400, "details": {"field": "Body"}}`,
			want:      proxyclient.Error{StatusCode: 400, Code: 21602, Message: "Message body is required.", MoreInfo: "https://www.twilio.com/docs/errors/21602", Details: []byte(`{"field": "Body"}`)},
			wantClass: proxyclient.ClassPermanent,
		},
		{
			name: "20003 authenticate", status: 401, contentType: "application/json",
			body:      `{"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}`,
			want:      proxyclient.Error{StatusCode: 401, Code: 20003, Message: "Authenticate", MoreInfo: "https://www.twilio.com/docs/errors/20003"},
			wantClass: proxyclient.ClassPermanent,
		},
		{
			// Twilio's reference: a duplicate request is still being processed. Retry later
			// (the code's wait, as no Retry-After came), never archive.
			name: "80623 duplicate in progress", status: 409, contentType: "application/json",
			body:      `{"code": 80623, "message": "Duplicate request is being processed", "more_info": "https://www.twilio.com/docs/errors/80623", "status": 409}`,
			want:      proxyclient.Error{StatusCode: 409, Code: 80623, Message: "Duplicate request is being processed", MoreInfo: "https://www.twilio.com/docs/errors/80623"},
			wantClass: proxyclient.ClassRetryable, wantRetry: proxyclient.DuplicateInProgressWait,
		},
		{
			name: "503 with Retry-After", status: 503, contentType: "application/json",
			body:      `{"code": 20503, "message": "Service Unavailable", "more_info": "https://www.twilio.com/docs/errors/20503", "status": 503}`,
			header:    http.Header{"Retry-After": {"120"}},
			want:      proxyclient.Error{StatusCode: 503, Code: 20503, Message: "Service Unavailable", MoreInfo: "https://www.twilio.com/docs/errors/20503", RetryAfter: 2 * time.Minute},
			wantClass: proxyclient.ClassRetryable,
		},
		{
			name: "500 JSON", status: 500, contentType: "application/json",
			body:      `{"code": 20500, "message": "Internal Server Error", "more_info": "https://www.twilio.com/docs/errors/20500", "status": 500}`,
			want:      proxyclient.Error{StatusCode: 500, Code: 20500, Message: "Internal Server Error", MoreInfo: "https://www.twilio.com/docs/errors/20500"},
			wantClass: proxyclient.ClassAmbiguous,
		},
		{
			name: "502 gateway HTML", status: 502, contentType: "text/html", body: html502,
			want:      proxyclient.Error{StatusCode: 502, Message: "502 Bad Gateway 502 Bad Gateway nginx"},
			wantClass: proxyclient.ClassAmbiguous,
		},
		{
			name: "504 empty body", status: 504,
			want:      proxyclient.Error{StatusCode: 504, Message: "Gateway Timeout"},
			wantClass: proxyclient.ClassAmbiguous,
		},
		{
			name: "501 plain text", status: 501, contentType: "text/plain", body: "not implemented\r\n",
			want:      proxyclient.Error{StatusCode: 501, Message: "not implemented"},
			wantClass: proxyclient.ClassPermanent,
		},
		{
			name: "505 other 5xx", status: 505, contentType: "application/json", body: `{"status": 505}`,
			want:      proxyclient.Error{StatusCode: 505, Message: "HTTP Version Not Supported"},
			wantClass: proxyclient.ClassAmbiguous,
		},
		{
			name: "JSON message with control characters", status: 400, contentType: "application/json",
			body:      `{"code": 21602, "message": "line one\nline two\u001b[31m", "status": 400}`,
			want:      proxyclient.Error{StatusCode: 400, Code: 21602, Message: "line one line two [31m"},
			wantClass: proxyclient.ClassPermanent,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.ReadAll(r.Body)
				for k, v := range tt.header {
					w.Header()[k] = v
				}
				if tt.contentType != "" {
					w.Header().Set("Content-Type", tt.contentType)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			c := newClient(t, srv.URL, nil)
			mi, err := c.CreateMessageInteraction(context.Background(), createParams())
			if mi != nil {
				t.Errorf("got an interaction with an error status: %+v", mi)
			}
			var he *proxyclient.Error
			if !errors.As(err, &he) {
				t.Fatalf("err = %T %v, want *Error", err, err)
			}
			want := tt.want
			want.Method, want.Path = http.MethodPost, interactionsPath
			if he.Method != want.Method || he.Path != want.Path || he.StatusCode != want.StatusCode || he.Code != want.Code ||
				he.Message != want.Message || he.MoreInfo != want.MoreInfo || he.RequestID != want.RequestID ||
				he.RetryAfter != want.RetryAfter || string(he.Details) != string(want.Details) {
				t.Errorf("error =\n%#v\nwant\n%#v", *he, want)
			}
			if got := proxyclient.Classify(err); got != tt.wantClass {
				t.Errorf("Classify = %v, want %v", got, tt.wantClass)
			}
			wantRetry := tt.want.RetryAfter
			if tt.wantRetry > 0 {
				wantRetry = tt.wantRetry
			}
			d, ok := proxyclient.RetryAfter(err)
			if ok != (wantRetry > 0) || d != wantRetry {
				t.Errorf("RetryAfter = %v, %v; want %v", d, ok, wantRetry)
			}
			if s := err.Error(); !strings.HasPrefix(s, "proxyclient: POST "+interactionsPath+": HTTP ") || strings.ContainsAny(s, "\n\r") {
				t.Errorf("Error() = %q", s)
			}
		})
	}
}

func TestErrorBodyIsBounded(t *testing.T) {
	t.Parallel()
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		// 1 MiB of a gateway page: the client keeps only a short snippet.
		_, _ = io.WriteString(w, "<html><body>"+strings.Repeat("upstream failure ", 64<<10)+"</body></html>")
	}))
	c := newClient(t, srv.URL, nil)
	_, err := c.CreateMessageInteraction(context.Background(), createParams())
	var he *proxyclient.Error
	if !errors.As(err, &he) || he.StatusCode != 502 {
		t.Fatalf("err = %v, want *Error 502", err)
	}
	if n := utf8.RuneCountInString(he.Message); n > 201 || !strings.HasPrefix(he.Message, "upstream failure") {
		t.Errorf("Message (%d runes) = %.80q…", n, he.Message)
	}
}

func TestRetryAfterForms(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		value  string
		max    time.Duration
		want   time.Duration
		wantOK bool
	}{
		{"delta seconds", "7", 0, 7 * time.Second, true},
		{"delta seconds padded", " 7 ", 0, 7 * time.Second, true},
		{"HTTP-date", "Wed, 01 Jan 2025 00:00:30 GMT", 0, 30 * time.Second, true},
		{"RFC 850 date", "Wednesday, 01-Jan-25 00:01:00 GMT", 0, time.Minute, true},
		{"capped by default 5m", "3600", 0, 5 * time.Minute, true},
		{"capped by config", "60", 10 * time.Second, 10 * time.Second, true},
		{"date capped", "Thu, 02 Jan 2025 00:00:00 GMT", 0, 5 * time.Minute, true},
		{"huge number capped", "99999999999999999999999999", 0, 5 * time.Minute, true},
		{"zero", "0", 0, 0, false},
		{"negative", "-5", 0, 0, false},
		{"fraction", "1.5", 0, 0, false},
		{"garbage", "soon", 0, 0, false},
		{"date in the past", "Tue, 31 Dec 2024 23:59:00 GMT", 0, 0, false},
		{"absent", "", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.value != "" {
					w.Header().Set("Retry-After", tt.value)
				}
				twilioError(w, http.StatusTooManyRequests, 20429, "Too Many Requests")
			}))
			c := newClient(t, srv.URL, func(cfg *proxyclient.Config) { cfg.MaxRetryAfter = tt.max })
			proxyclient.SetNow(c, func() time.Time { return now })
			_, err := c.CreateMessageInteraction(context.Background(), createParams())
			if proxyclient.Classify(err) != proxyclient.ClassRetryable {
				t.Fatalf("err = %v, want retryable", err)
			}
			d, ok := proxyclient.RetryAfter(err)
			if d != tt.want || ok != tt.wantOK {
				t.Errorf("RetryAfter = %v, %v; want %v, %v", d, ok, tt.want, tt.wantOK)
			}
		})
	}
	t.Run("no error", func(t *testing.T) {
		t.Parallel()
		if d, ok := proxyclient.RetryAfter(nil); ok || d != 0 {
			t.Errorf("RetryAfter(nil) = %v, %v", d, ok)
		}
		if d, ok := proxyclient.RetryAfter(errors.New("x")); ok || d != 0 {
			t.Errorf("RetryAfter(other) = %v, %v", d, ok)
		}
	})
}

// TestErrorStringsCarryNoSecrets provokes every error kind with credentials, a base
// path and a PageToken in play, and checks that Error() shows only method and path.
func TestErrorStringsCarryNoSecrets(t *testing.T) {
	t.Parallel()
	const pageToken = "PAGETOKEN-sensitive-0123456789"
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		switch {
		case r.URL.Query().Get("PageToken") != "":
			twilioError(w, http.StatusInternalServerError, 20500, "Internal Server Error")
		case r.URL.Query().Has("PageSize"):
			// First list page points to a second page carrying the token.
			_, _ = io.WriteString(w, `{"interactions":[],"meta":{"next_page_url":"http://`+r.Host+interactionsPath+`?PageSize=1&Page=1&PageToken=`+pageToken+`"}}`)
		case r.Method == http.MethodGet:
			_, _ = io.WriteString(w, `{"sid": 12}`) // decode error
		default:
			w.WriteHeader(http.StatusBadGateway)
			_, _ = io.WriteString(w, html502)
		}
	}))
	for _, mode := range []string{"account", "apikey"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			c := newClient(t, srv.URL, func(cfg *proxyclient.Config) {
				if mode == "apikey" {
					cfg.APIKey, cfg.APISecret = testAPIKey, testAPISecret
				}
			})
			ctx := context.Background()
			var errs []error
			_, err := c.CreateMessageInteraction(ctx, createParams())
			errs = append(errs, err)
			_, err = c.FetchMessageInteraction(ctx, testKS, testKC, testKP, testKI)
			errs = append(errs, err)
			_, err = c.ListMessageInteractions(ctx, testKS, testKC, testKP, proxyclient.ListOptions{PageSize: 1})
			errs = append(errs, err)
			_, err = c.CreateMessageInteraction(ctx, proxyclient.CreateParams{ServiceSID: testToken})
			errs = append(errs, err)

			// Transport error against a closed port.
			dead := newClient(t, closedURL(t), nil)
			_, err = dead.ListMessageInteractions(ctx, testKS, testKC, testKP, proxyclient.ListOptions{PageSize: 1})
			errs = append(errs, err)

			for i, err := range errs {
				if err == nil {
					t.Fatalf("call %d: no error", i)
				}
				s := err.Error()
				if leaked := secretsIn(s, pageToken, "PageToken", "PageSize", "?", "Authorization"); leaked != nil {
					t.Errorf("call %d: %q leaks %q", i, s, leaked)
				}
			}
		})
	}
}

// endless is a response body far larger than any limit (it ends at 32 MiB only so a
// regression fails fast instead of hanging) and counts what was read from it.
type endless struct {
	prefix string
	n      atomic.Int64
}

func (e *endless) Read(p []byte) (int, error) {
	off := e.n.Load()
	if off >= 32<<20 {
		return 0, io.EOF
	}
	for i := range p {
		if j := off + int64(i); j < int64(len(e.prefix)) {
			p[i] = e.prefix[j]
		} else {
			p[i] = 'a'
		}
	}
	e.n.Add(int64(len(p)))
	return len(p), nil
}

func (e *endless) Close() error { return nil }

// TestBodiesAreReadThroughALimit: a server that never ends its body must not make the
// client buffer without bound (64 KiB for errors, 10 MiB for successes, plus a small
// drain for connection reuse).
func TestBodiesAreReadThroughALimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		status  int
		prefix  string
		maxRead int64
	}{
		{"error body", http.StatusBadGateway, "<html>", 64<<10 + 4<<10 + 32<<10},
		{"success body", http.StatusOK, `{"sid":"`, 10<<20 + 4<<10 + 32<<10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := &endless{prefix: tt.prefix}
			c := newClient(t, "http://127.0.0.1:1", func(cfg *proxyclient.Config) {
				cfg.HTTPClient = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
					return &http.Response{StatusCode: tt.status, Header: http.Header{}, Body: body, Request: r}, nil
				})}
			})
			_, err := c.CreateMessageInteraction(context.Background(), createParams())
			if err == nil {
				t.Fatal("want an error")
			}
			if n := body.n.Load(); n > tt.maxRead {
				t.Errorf("read %d bytes, want at most %d", n, tt.maxRead)
			}
			if tt.status == http.StatusOK && proxyclient.Classify(err) != proxyclient.ClassAmbiguous {
				t.Errorf("Classify = %v, want ambiguous for an oversized 2xx", proxyclient.Classify(err))
			}
		})
	}
}
