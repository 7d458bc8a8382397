package proxytest_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/proxyq/proxyq/proxyclient/proxytest"
)

// The tests speak to the Fake with net/http only and decode with their own structs, so they
// pin the wire format rather than the Fake's implementation.

const (
	acct   = "AC0123456789abcdef0123456789abcdef"
	acct2  = "ACfedcba9876543210fedcba9876543210"
	apiKey = "SK00112233445566778899aabbccddeeff"
	secret = "auth-token"
	ks     = "KS0123456789abcdef0123456789abcdef"
	kc     = "KC0123456789abcdef0123456789abcdef"
	kc2    = "KCaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	kp     = "KP0123456789abcdef0123456789abcdef"
	kp2    = "KPbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

var (
	reKI = regexp.MustCompile(`^KI[0-9a-f]{32}$`)
	reSM = regexp.MustCompile(`^SM[0-9a-f]{32}$`)
	reAC = regexp.MustCompile(`^AC[0-9a-f]{32}$`)
	reRQ = regexp.MustCompile(`^RQ[0-9a-f]{32}$`)
	// Twilio's date format: UTC, second precision.
	reDate = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)
)

func messagesPath(service, session, participant string) string {
	return "/v1/Services/" + service + "/Sessions/" + session + "/Participants/" + participant + "/MessageInteractions"
}

func sessionPath(service, session string) string {
	return "/v1/Services/" + service + "/Sessions/" + session + "/Interactions"
}

// resource is Twilio's MessageInteraction, field for field.
type resource struct {
	SID                    string  `json:"sid"`
	SessionSID             string  `json:"session_sid"`
	ServiceSID             string  `json:"service_sid"`
	AccountSID             string  `json:"account_sid"`
	Data                   string  `json:"data"`
	Type                   string  `json:"type"`
	ParticipantSID         string  `json:"participant_sid"`
	InboundParticipantSID  *string `json:"inbound_participant_sid"`
	InboundResourceSID     *string `json:"inbound_resource_sid"`
	InboundResourceStatus  *string `json:"inbound_resource_status"`
	InboundResourceType    *string `json:"inbound_resource_type"`
	InboundResourceURL     *string `json:"inbound_resource_url"`
	OutboundParticipantSID string  `json:"outbound_participant_sid"`
	OutboundResourceSID    string  `json:"outbound_resource_sid"`
	OutboundResourceStatus string  `json:"outbound_resource_status"`
	OutboundResourceType   string  `json:"outbound_resource_type"`
	OutboundResourceURL    string  `json:"outbound_resource_url"`
	DateCreated            string  `json:"date_created"`
	DateUpdated            string  `json:"date_updated"`
	URL                    string  `json:"url"`
}

type listPage struct {
	Interactions []resource `json:"interactions"`
	Meta         struct {
		FirstPageURL    string  `json:"first_page_url"`
		Key             string  `json:"key"`
		NextPageURL     *string `json:"next_page_url"`
		Page            int     `json:"page"`
		PageSize        int     `json:"page_size"`
		PreviousPageURL *string `json:"previous_page_url"`
		URL             string  `json:"url"`
	} `json:"meta"`
}

type twilioError struct {
	Code     int    `json:"code"`
	Message  string `json:"message"`
	MoreInfo string `json:"more_info"`
	Status   int    `json:"status"`
}

type interactionData struct {
	Body      string   `json:"body"`
	MediaURLs []string `json:"media_urls"`
}

func newServer(t *testing.T, cfg proxytest.Config, opts ...proxytest.ServerOption) *proxytest.Server {
	t.Helper()
	srv := proxytest.NewServer(cfg, opts...)
	t.Cleanup(srv.Close)
	return srv
}

// roundTrip sends one request; user "" sends no Authorization header; a non-nil form makes
// it a form POST.
func roundTrip(ctx context.Context, c *http.Client, method, u, user, pass string, form url.Values) (*http.Response, []byte, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func mustDo(t *testing.T, srv *proxytest.Server, method, u, user string, form url.Values) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, b, err := roundTrip(ctx, srv.Client(), method, u, user, secret, form)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	return resp, b
}

// create posts a message interaction as acct under (ks, kc, participant).
func create(t *testing.T, srv *proxytest.Server, participant string, form url.Values) (*http.Response, []byte) {
	t.Helper()
	return mustDo(t, srv, http.MethodPost, srv.URL+messagesPath(ks, kc, participant), acct, form)
}

func mustCreate(t *testing.T, srv *proxytest.Server, participant, body string) resource {
	t.Helper()
	resp, b := create(t, srv, participant, url.Values{"Body": {body}})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: status %d, body %s", resp.StatusCode, b)
	}
	return decode[resource](t, b)
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decoding %T from %s: %v", v, b, err)
	}
	return v
}

// decodeData decodes the resource's data: a JSON string holding a JSON object.
func decodeData(t *testing.T, r resource) interactionData {
	t.Helper()
	return decode[interactionData](t, []byte(r.Data))
}

// wantError checks a Twilio JSON error answer.
func wantError(t *testing.T, resp *http.Response, b []byte, status, code int) twilioError {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if id := resp.Header.Get("Twilio-Request-Id"); !reRQ.MatchString(id) {
		t.Errorf("Twilio-Request-Id %q, want RQ + 32 hex", id)
	}
	e := decode[twilioError](t, b)
	if e.Code != code || e.Status != status || e.Message == "" {
		t.Errorf("error body %+v, want code %d status %d and a message", e, code, status)
	}
	if want := "https://www.twilio.com/docs/errors/" + strconv.Itoa(code); e.MoreInfo != want {
		t.Errorf("more_info %q, want %q", e.MoreInfo, want)
	}
	return e
}

func itoa(i int) string { return strconv.Itoa(i) }

func newHTTPTestServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts
}

// eventually polls cond for up to 5 s: a bound on a wait, not an assertion about speed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
