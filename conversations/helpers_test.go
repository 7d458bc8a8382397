package conversations_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/proxyq/proxyq/conversations"
	"github.com/proxyq/proxyq/conversations/convtest"
)

// Test credentials and SIDs, in Twilio's shapes.
const (
	testAccount = "AC0123456789abcdef0123456789abcdef"
	testToken   = "tok3n-s3cr3t-0123456789abcdef0123"
	testCH      = "CHaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	testCH2     = "CHbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	testIS      = "ISaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	testIM      = "IMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	testME      = "MEaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	testHX      = "HXaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

	// basePath is where test servers are mounted: a non-empty prefix makes a client that
	// drops the base URL's path fail loudly.
	basePath = "/twilio"
)

// messageJSON is the "create" example of Twilio's Conversations v1 description.
const messageJSON = `{
  "sid": "IMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "account_sid": "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "conversation_sid": "CHaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "body": "Hello",
  "media": null,
  "author": "message author",
  "participant_sid": "MBaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "attributes": "{ \"importance\": \"high\" }",
  "date_created": "2015-12-16T22:18:37Z",
  "date_updated": "2015-12-16T22:18:38Z",
  "index": 0,
  "delivery": {"total": 2, "sent": "all", "delivered": "some", "read": "some", "failed": "none", "undelivered": "none"},
  "content_sid": null,
  "url": "https://conversations.twilio.com/v1/Conversations/CHaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Messages/IMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "links": {"delivery_receipts": "https://conversations.twilio.com/v1/Conversations/CHaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Messages/IMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Receipts"}
}`

// newServer starts a loopback server with h under basePath; requests elsewhere fail the test.
func newServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(basePath+"/", h)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("request outside base path %q: %s %s", basePath, r.Method, r.URL.Path)
		http.NotFound(w, r)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func newClient(t *testing.T, baseURL string, mod func(*conversations.Config)) *conversations.Client {
	t.Helper()
	cfg := conversations.Config{AccountSID: testAccount, AuthToken: testToken, BaseURL: baseURL}
	if mod != nil {
		mod(&cfg)
	}
	c, err := conversations.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// newFake starts a convtest server and a client for it.
func newFake(t *testing.T, cfg convtest.Config) (*convtest.Server, *conversations.Client) {
	t.Helper()
	srv, err := convtest.NewServer(cfg)
	if err != nil {
		t.Fatalf("convtest.NewServer: %v", err)
	}
	t.Cleanup(srv.Close)
	return srv, newClient(t, srv.URL, nil)
}

func ptr[T any](v T) *T { return &v }
