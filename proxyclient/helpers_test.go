package proxyclient_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/proxyq/proxyq/proxyclient"
)

// Test credentials and SIDs. SIDs follow Twilio's shapes (two-letter prefix and 32 hex
// digits); the example resource below is copied from Twilio's Proxy v1 OpenAPI
// description, because tests must not read anything outside the project.
const (
	testAccount   = "AC0123456789abcdef0123456789abcdef"
	testToken     = "tok3n-s3cr3t-0123456789abcdef0123"
	testAPIKey    = "SK0123456789abcdef0123456789abcdef"
	testAPISecret = "ap1-s3cr3t-fedcba9876543210fedcba"
	testKS        = "KSaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	testKC        = "KCaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	testKP        = "KPaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	testKI        = "KIaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

	// basePath is where the fake API is mounted: a non-empty prefix makes any code
	// that builds absolute paths (dropping the prefix) fail loudly.
	basePath = "/twilio"

	participantPath  = basePath + "/v1/Services/" + testKS + "/Sessions/" + testKC + "/Participants/" + testKP
	interactionsPath = participantPath + "/MessageInteractions"
)

// interactionJSON is the OpenAPI "create" example: note the nulls and the data string.
const interactionJSON = `{
  "service_sid": "KSaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "data": "{\"body\":\"some message\"}",
  "date_created": "2015-07-30T20:00:00Z",
  "date_updated": "2015-07-30T20:00:01Z",
  "participant_sid": "KPaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "inbound_participant_sid": null,
  "inbound_resource_sid": null,
  "inbound_resource_status": null,
  "inbound_resource_type": null,
  "inbound_resource_url": null,
  "outbound_participant_sid": "KPaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "outbound_resource_sid": "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "outbound_resource_status": "sent",
  "outbound_resource_type": "Message",
  "outbound_resource_url": null,
  "sid": "KIaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "type": "message",
  "url": "https://proxy.twilio.com/v1/Services/KSaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Sessions/KCaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Participants/KPaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/MessageInteractions/KIaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "account_sid": "AC0123456789abcdef0123456789abcdef",
  "session_sid": "KCaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
}`

// newServer starts a loopback server with h mounted under basePath. Requests outside
// the base path fail the test.
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

// newClient returns a client for srvURL+basePath with Account SID auth; mod may adjust
// the config.
func newClient(t *testing.T, srvURL string, mod func(*proxyclient.Config)) *proxyclient.Client {
	t.Helper()
	cfg := proxyclient.Config{
		AccountSID: testAccount,
		AuthToken:  testToken,
		BaseURL:    srvURL + basePath,
		UserAgent:  "proxyclient-test",
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := proxyclient.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// twilioError writes a Twilio-shaped JSON error document.
func twilioError(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"code":      code,
		"message":   msg,
		"more_info": "https://www.twilio.com/docs/errors/" + strconv.Itoa(code),
		"status":    status,
	})
}

func createParams() proxyclient.CreateParams {
	return proxyclient.CreateParams{ServiceSID: testKS, SessionSID: testKC, ParticipantSID: testKP, Body: "hello"}
}

// secretsIn reports which of the test secrets (or their Basic-auth encodings) s leaks.
func secretsIn(s string, extra ...string) []string {
	var leaked []string
	for _, sec := range append([]string{testToken, testAPISecret, basicAuth(testAccount, testToken), basicAuth(testAPIKey, testAPISecret)}, extra...) {
		if strings.Contains(s, sec) {
			leaked = append(leaked, sec)
		}
	}
	return leaked
}

func basicAuth(user, pass string) string {
	r, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	r.SetBasicAuth(user, pass)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}
