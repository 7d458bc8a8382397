package proxytest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// The JSON shapes below follow Twilio's OpenAPI description of Proxy v1 (fields in its
// order). They are deliberately private and separate from proxyclient's: the fake states
// the wire format on its own, so a mistake in the client cannot hide behind a shared struct.

// interactionJSON is both the MessageInteraction resource and, with ParticipantSID nil and
// the session-level URL, the Interaction resource (which has no participant_sid).
type interactionJSON struct {
	SID                    string  `json:"sid"`
	SessionSID             string  `json:"session_sid"`
	ServiceSID             string  `json:"service_sid"`
	AccountSID             string  `json:"account_sid"`
	Data                   string  `json:"data"`
	Type                   string  `json:"type"`
	ParticipantSID         *string `json:"participant_sid,omitempty"`
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

type listJSON struct {
	Interactions []interactionJSON `json:"interactions"`
	Meta         metaJSON          `json:"meta"`
}

type metaJSON struct {
	FirstPageURL    string  `json:"first_page_url"`
	Key             string  `json:"key"`
	NextPageURL     *string `json:"next_page_url"`
	Page            int     `json:"page"`
	PageSize        int     `json:"page_size"`
	PreviousPageURL *string `json:"previous_page_url"`
	URL             string  `json:"url"`
}

// errorJSON is Twilio's error body. Detail appears on some Twilio answers (401s); clients
// must not need it.
type errorJSON struct {
	Code     int    `json:"code"`
	Message  string `json:"message"`
	MoreInfo string `json:"more_info"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
}

// dataJSON is the object inside the resource's "data" string.
type dataJSON struct {
	Body      string   `json:"body"`
	MediaURLs []string `json:"media_urls,omitempty"`
}

// Twilio error codes the Fake answers with.
const (
	codeInvalidParameter = 20001 // a query or form parameter out of range (PageSize, PageToken…)
	codeAuthenticate     = 20003
	codeMethodNotAllowed = 20004
	codeNotFound         = 20404
	codeTooManyRequests  = 20429
	codeInternal         = 20500
	codeUnavailable      = 20503
	codeBodyRequired     = 21602
	codeSessionClosed    = 80607
)

// twilioTime is the format of Twilio's date_created/date_updated: UTC, second precision.
const twilioTime = "2006-01-02T15:04:05Z"

// newSID returns prefix + 32 lowercase hex digits from crypto/rand, so SIDs never repeat
// across Fakes or runs (a worker's ledger may be keyed by them).
func newSID(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return prefix + hex.EncodeToString(b[:])
}

// derivedAccountSID is the account_sid reported for an API-key user: fixed per key, so
// every interaction created with one key names the same account.
func derivedAccountSID(apiKey string) string {
	sum := sha256.Sum256([]byte("proxytest account of " + apiKey))
	return "AC" + hex.EncodeToString(sum[:16])
}

func isSID(s, prefix string) bool {
	if len(s) != 34 || s[:2] != prefix {
		return false
	}
	for i := 2; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// marshal encodes v like Twilio does: no HTML escaping of <, > and & in strings.
func marshal(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only our own fixed structs are encoded: failing here is a bug in this package.
		panic("proxytest: encoding JSON: " + err.Error())
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b := marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b) // the client may be gone; nothing to do about it
}

func writeError(w http.ResponseWriter, status, code int, message string) {
	writeJSON(w, status, errorJSON{
		Code:     code,
		Message:  message,
		MoreInfo: "https://www.twilio.com/docs/errors/" + strconv.Itoa(code),
		Status:   status,
	})
}

// writeGatewayHTML answers like a load balancer in front of the API: an HTML page, not JSON.
func writeGatewayHTML(w http.ResponseWriter, status int) {
	title := strconv.Itoa(status) + " " + http.StatusText(status)
	if status == http.StatusGatewayTimeout {
		title = "504 Gateway Time-out"
	}
	body := "<html>\r\n<head><title>" + title + "</title></head>\r\n<body>\r\n<center><h1>" +
		title + "</h1></center>\r\n</body>\r\n</html>\r\n"
	w.Header().Set("Content-Type", "text/html")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func formatTime(t time.Time) string { return t.UTC().Format(twilioTime) }
