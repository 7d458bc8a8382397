package proxyclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/proxyq/proxyq/proxyclient"
)

const (
	testSM      = "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	messagePath = basePath + "/2010-04-01/Accounts/" + testAccount + "/Messages/" + testSM + ".json"
)

// messageJSON follows the example of Twilio's Messaging API description (api_v2010):
// RFC 1123 dates, error_code an integer, and fields the client must ignore (body, numbers).
const messageJSON = `{
  "account_sid": "AC0123456789abcdef0123456789abcdef",
  "api_version": "2010-04-01",
  "body": "secret body text",
  "date_created": "Mon, 16 Aug 2010 03:45:01 +0000",
  "date_sent": "Mon, 16 Aug 2010 03:45:03 +0000",
  "date_updated": "Mon, 16 Aug 2010 03:45:05 +0000",
  "direction": "outbound-api",
  "error_code": 30003,
  "error_message": "Unreachable destination handset",
  "from": "+14155552345",
  "messaging_service_sid": null,
  "num_media": "0",
  "num_segments": "1",
  "price": null,
  "price_unit": "USD",
  "sid": "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "status": "undelivered",
  "subresource_uris": {"media": "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages/SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Media.json"},
  "to": "+14155552345",
  "uri": "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages/SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.json"
}`

func TestFetchMessage(t *testing.T) {
	t.Parallel()
	var gotPath, gotMethod, gotUA, gotAuth string
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotMethod, gotUA = r.URL.EscapedPath(), r.Method, r.UserAgent()
		gotAuth = strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, messageJSON)
	}))
	for _, auth := range []string{"account", "api key"} {
		c := newClient(t, srv.URL, func(cfg *proxyclient.Config) {
			if auth == "api key" {
				cfg.APIKey, cfg.APISecret = testAPIKey, testAPISecret
			}
		})
		m, err := c.FetchMessage(context.Background(), testAccount, testSM)
		if err != nil {
			t.Fatalf("%s: FetchMessage: %v", auth, err)
		}
		if gotMethod != http.MethodGet || gotPath != messagePath {
			t.Errorf("%s: request %s %s, want GET %s", auth, gotMethod, gotPath, messagePath)
		}
		if want := "proxyq/" + proxyclient.Version + " proxyclient-test"; gotUA != want {
			t.Errorf("%s: User-Agent = %q, want %q", auth, gotUA, want)
		}
		wantAuth := basicAuth(testAccount, testToken)
		if auth == "api key" {
			wantAuth = basicAuth(testAPIKey, testAPISecret)
		}
		if gotAuth != wantAuth {
			t.Errorf("%s: Authorization = %q, want Basic %q", auth, gotAuth, wantAuth)
		}
		want := proxyclient.Message{
			SID: testSM, AccountSID: testAccount, Status: "undelivered",
			ErrorCode: 30003, ErrorMessage: "Unreachable destination handset",
			DateCreated: time.Date(2010, 8, 16, 3, 45, 1, 0, time.UTC),
			DateSent:    time.Date(2010, 8, 16, 3, 45, 3, 0, time.UTC),
			DateUpdated: time.Date(2010, 8, 16, 3, 45, 5, 0, time.UTC),
		}
		if *m != want {
			t.Errorf("%s: got %+v\nwant %+v", auth, *m, want)
		}
	}
}

func TestMessageDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, json string
		want       proxyclient.Message
		wantErr    bool
	}{
		{"null error code and message, queued", `{"sid":"SMx","status":"queued","error_code":null,"error_message":null,"date_created":"Tue, 01 Dec 2026 09:00:00 +0000","date_updated":null,"date_sent":null}`,
			proxyclient.Message{SID: "SMx", Status: "queued", DateCreated: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}, false},
		{"absent error code", `{"status":"delivered"}`, proxyclient.Message{Status: "delivered"}, false},
		{"error code as string", `{"status":"failed","error_code":"30007"}`, proxyclient.Message{Status: "failed", ErrorCode: 30007}, false},
		{"empty string error code", `{"status":"sent","error_code":""}`, proxyclient.Message{Status: "sent"}, false},
		{"other time zone becomes UTC", `{"date_updated":"Mon, 16 Aug 2010 05:45:01 +0200"}`,
			proxyclient.Message{DateUpdated: time.Date(2010, 8, 16, 3, 45, 1, 0, time.UTC)}, false},
		{"RFC 3339 date too", `{"date_updated":"2010-08-16T03:45:01Z"}`,
			proxyclient.Message{DateUpdated: time.Date(2010, 8, 16, 3, 45, 1, 0, time.UTC)}, false},
		{"unreadable date is zero", `{"date_updated":"yesterday"}`, proxyclient.Message{}, false},
		{"error message sanitised", `{"error_message":"line one\nline\ttwo"}`, proxyclient.Message{ErrorMessage: "line one line two"}, false},
		{"fractional error code", `{"error_code":30003.5}`, proxyclient.Message{}, true},
		{"word error code", `{"error_code":"unreachable"}`, proxyclient.Message{}, true},
		{"object error code", `{"error_code":{}}`, proxyclient.Message{}, true},
		{"negative error code", `{"error_code":-1}`, proxyclient.Message{}, true},
	}
	for _, tt := range tests {
		var m proxyclient.Message
		err := m.UnmarshalJSON([]byte(tt.json))
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: err = %v, want error %v", tt.name, err, tt.wantErr)
			continue
		}
		if err == nil && m != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.name, m, tt.want)
		}
	}
}

func TestFetchMessageErrors(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		switch {
		case strings.Contains(r.URL.Path, "SMbbbb"):
			w.Header().Set("Twilio-Request-Id", "RQ123")
			twilioError(w, http.StatusNotFound, 20404, "The requested resource was not found")
		case strings.Contains(r.URL.Path, "SMcccc"):
			w.Header().Set("Retry-After", "7")
			twilioError(w, http.StatusTooManyRequests, 20429, "Too Many Requests")
		case strings.Contains(r.URL.Path, "SMdddd"):
			w.WriteHeader(http.StatusBadGateway)
			_, _ = io.WriteString(w, "<html><body><h1>502 Bad Gateway</h1></body></html>")
		case strings.Contains(r.URL.Path, "SMeeee"):
			_, _ = io.WriteString(w, `{"sid":`)
		case strings.Contains(r.URL.Path, "SMffff"):
			_, _ = io.WriteString(w, `{"error_code":"x"}`)
		case strings.HasSuffix(r.URL.Path, "/Messages/MM"+strings.Repeat("0", 32)+".json"):
			_, _ = io.WriteString(w, `{"sid":"MM00000000000000000000000000000000","status":"delivered"}`)
		default:
			t.Errorf("unexpected request %s", r.URL.Path)
		}
	}))
	c := newClient(t, srv.URL, nil)
	ctx := context.Background()
	sid := func(c byte) string { return "SM" + strings.Repeat(string(c), 32) }

	_, err := c.FetchMessage(ctx, testAccount, sid('b'))
	var he *proxyclient.Error
	if !errors.As(err, &he) || he.StatusCode != 404 || he.Code != 20404 || he.RequestID != "RQ123" || he.Method != "GET" ||
		he.Path != basePath+"/2010-04-01/Accounts/"+testAccount+"/Messages/"+sid('b')+".json" {
		t.Fatalf("404: err = %#v", err)
	}
	if got := proxyclient.ClassifyRead(err); got != proxyclient.ClassPermanent {
		t.Errorf("404 ClassifyRead = %v, want permanent", got)
	}

	_, err = c.FetchMessage(ctx, testAccount, sid('c'))
	if d, ok := proxyclient.RetryAfter(err); !ok || d != 7*time.Second || proxyclient.ClassifyRead(err) != proxyclient.ClassRetryable {
		t.Errorf("429: err = %v, RetryAfter %v %v, class %v", err, d, ok, proxyclient.ClassifyRead(err))
	}

	_, err = c.FetchMessage(ctx, testAccount, sid('d'))
	if !errors.As(err, &he) || he.StatusCode != 502 || he.Message != "502 Bad Gateway" {
		t.Errorf("502: err = %#v", err)
	}
	// Classify would call a 502 ambiguous; a read is safe to retry.
	if proxyclient.Classify(err) != proxyclient.ClassAmbiguous || proxyclient.ClassifyRead(err) != proxyclient.ClassRetryable {
		t.Errorf("502: Classify %v, ClassifyRead %v", proxyclient.Classify(err), proxyclient.ClassifyRead(err))
	}

	var de *proxyclient.DecodeError
	for _, s := range []string{sid('e'), sid('f')} {
		_, err = c.FetchMessage(ctx, testAccount, s)
		if !errors.As(err, &de) || proxyclient.ClassifyRead(err) != proxyclient.ClassPermanent {
			t.Errorf("bad body %s: err = %v, class %v", s[:6], err, proxyclient.ClassifyRead(err))
		}
		if strings.Contains(err.Error(), "error_code") && strings.Contains(err.Error(), `"x"`) {
			t.Errorf("error quotes the body: %v", err)
		}
	}

	before := calls.Load()
	for _, tt := range []struct{ ac, sm, want string }{
		{"AC123", testSM, "proxyclient: AccountSID must match ^AC[0-9a-fA-F]{32}$"},
		{"SK" + testAccount[2:], testSM, "proxyclient: AccountSID must match ^AC[0-9a-fA-F]{32}$"},
		{testAccount, "KI" + testSM[2:], "proxyclient: MessageSID must match ^(SM|MM)[0-9a-fA-F]{32}$"},
		{testAccount, "SM../../x" + testSM[11:], "proxyclient: MessageSID must match ^(SM|MM)[0-9a-fA-F]{32}$"},
		{testAccount, "", "proxyclient: MessageSID must match ^(SM|MM)[0-9a-fA-F]{32}$"},
	} {
		_, err := c.FetchMessage(ctx, tt.ac, tt.sm)
		var ve *proxyclient.ValidationError
		if !errors.As(err, &ve) || err.Error() != tt.want {
			t.Errorf("FetchMessage(%q, %q) = %v, want %q", tt.ac, tt.sm, err, tt.want)
		}
	}
	if calls.Load() != before {
		t.Errorf("invalid SIDs reached the server %d times", calls.Load()-before)
	}
	// MM… (media messages) are messages too.
	if m, err := c.FetchMessage(ctx, testAccount, "MM"+strings.Repeat("0", 32)); err != nil || m.Status != "delivered" {
		t.Errorf("MM SID: %+v, %v", m, err)
	}
}

func TestMessagingEndpoint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		edge, region, baseURL, msgURL string
		want                          string
	}{
		{"", "", "", "", "https://api.twilio.com"},
		{"dublin", "ie1", "", "", "https://api.dublin.ie1.twilio.com"},
		{"sydney", "", "", "", "https://api.sydney.us1.twilio.com"},
		{"", "au1", "", "", "https://api.au1.twilio.com"},
		{"Tokyo", "JP1", "", "", "https://api.tokyo.jp1.twilio.com"},
		// The sandbox serves both APIs: an overridden Proxy base URL is used for messages too.
		{"dublin", "ie1", "http://127.0.0.1:4010/twilio/", "", "http://127.0.0.1:4010/twilio"},
		{"", "", "http://127.0.0.1:4010/twilio", "https://msg.example.com/m/", "https://msg.example.com/m"},
		{"dublin", "ie1", "", "https://msg.example.com", "https://msg.example.com"},
	}
	for _, tt := range tests {
		cfg := proxyclient.Config{AccountSID: testAccount, AuthToken: testToken, Edge: tt.edge, Region: tt.region, BaseURL: tt.baseURL, MessagingBaseURL: tt.msgURL}
		if got := cfg.MessagingEndpoint(); got != tt.want {
			t.Errorf("%+v: MessagingEndpoint = %q, want %q", tt, got, tt.want)
		}
		var gotURL string
		cfg.HTTPClient = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			gotURL = r.URL.String()
			return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(messageJSON)), Request: r}, nil
		})}
		c, err := proxyclient.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if c.MessagingEndpoint() != tt.want {
			t.Errorf("Client.MessagingEndpoint = %q, want %q", c.MessagingEndpoint(), tt.want)
		}
		if _, err := c.FetchMessage(context.Background(), testAccount, testSM); err != nil {
			t.Fatal(err)
		}
		if want := tt.want + "/2010-04-01/Accounts/" + testAccount + "/Messages/" + testSM + ".json"; gotURL != want {
			t.Errorf("request URL = %q, want %q", gotURL, want)
		}
	}
	for _, bad := range []struct{ url, want string }{
		{"/relative", "proxyclient: MessagingBaseURL must be an absolute http or https URL"},
		{"https://u:p@api.twilio.com", "proxyclient: MessagingBaseURL must not contain user info (credentials go in AccountSID/AuthToken or APIKey/APISecret)"},
		{"https://api.twilio.com?x=1", "proxyclient: MessagingBaseURL must not contain a query or fragment"},
	} {
		_, err := proxyclient.New(proxyclient.Config{AccountSID: testAccount, AuthToken: testToken, MessagingBaseURL: bad.url})
		if err == nil || err.Error() != bad.want {
			t.Errorf("MessagingBaseURL %q: err = %v, want %q", bad.url, err, bad.want)
		}
	}
}

func TestClassifyRead(t *testing.T) {
	t.Parallel()
	httpErr := func(status int) error { return &proxyclient.Error{Method: "GET", Path: "/x", StatusCode: status} }
	transport := func(written bool, err error) error {
		return &proxyclient.TransportError{Method: "GET", Path: "/x", Err: err, RequestWritten: written}
	}
	decode := func(err error) error {
		return &proxyclient.DecodeError{Method: "GET", Path: "/x", StatusCode: 200, Err: err}
	}
	tests := []struct {
		name string
		err  error
		want proxyclient.Class
	}{
		{"nil", nil, proxyclient.ClassNone},
		{"429", httpErr(429), proxyclient.ClassRetryable},
		{"500", httpErr(500), proxyclient.ClassRetryable},
		{"502", httpErr(502), proxyclient.ClassRetryable},
		{"503", httpErr(503), proxyclient.ClassRetryable},
		{"504", httpErr(504), proxyclient.ClassRetryable},
		{"501", httpErr(501), proxyclient.ClassPermanent},
		{"401", httpErr(401), proxyclient.ClassPermanent},
		{"404", httpErr(404), proxyclient.ClassPermanent},
		{"302", httpErr(302), proxyclient.ClassPermanent},
		{"refused", transport(false, syscall.ECONNREFUSED), proxyclient.ClassRetryable},
		{"timeout after write", transport(true, context.DeadlineExceeded), proxyclient.ClassRetryable},
		{"reset after write", transport(true, syscall.ECONNRESET), proxyclient.ClassRetryable},
		{"DNS", transport(false, &net.DNSError{Err: "no such host", IsNotFound: true}), proxyclient.ClassRetryable},
		{"body read cut", decode(io.ErrUnexpectedEOF), proxyclient.ClassRetryable},
		{"body not JSON", decode(json.Unmarshal([]byte("<html>"), new(any))), proxyclient.ClassPermanent},
		{"validation", &proxyclient.ValidationError{Field: "MessageSID", Rule: "x"}, proxyclient.ClassPermanent},
		{"unsafe next page", fmt.Errorf("x: %w", proxyclient.ErrUnsafeNextPage), proxyclient.ClassPermanent},
		{"canceled", context.Canceled, proxyclient.ClassRetryable},
		{"unknown", errors.New("something"), proxyclient.ClassRetryable},
	}
	for _, tt := range tests {
		if got := proxyclient.ClassifyRead(tt.err); got != tt.want {
			t.Errorf("%s: ClassifyRead = %v, want %v", tt.name, got, tt.want)
		}
	}
}
