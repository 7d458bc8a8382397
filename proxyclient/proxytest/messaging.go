package proxytest

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The Messaging REST API route: GET /2010-04-01/Accounts/{AC}/Messages/{SM}.json, the Message
// behind an interaction's outbound_resource_sid, with its delivery status and error code.

// messagingTime is the format of the Messaging API's dates (RFC 1123 with a numeric zone),
// e.g. "Mon, 16 Aug 2010 03:45:01 +0000".
const messagingTime = "Mon, 02 Jan 2006 15:04:05 -0700"

// messageJSON is Twilio's Message resource (api_v2010), fields in its order. Prices are
// null: the Fake charges nothing.
type messageJSON struct {
	AccountSID          string            `json:"account_sid"`
	APIVersion          string            `json:"api_version"`
	Body                string            `json:"body"`
	DateCreated         string            `json:"date_created"`
	DateSent            *string           `json:"date_sent"`
	DateUpdated         string            `json:"date_updated"`
	Direction           string            `json:"direction"`
	ErrorCode           *int              `json:"error_code"`
	ErrorMessage        *string           `json:"error_message"`
	From                string            `json:"from"`
	MessagingServiceSID *string           `json:"messaging_service_sid"`
	NumMedia            string            `json:"num_media"`
	NumSegments         string            `json:"num_segments"`
	Price               *string           `json:"price"`
	PriceUnit           string            `json:"price_unit"`
	SID                 string            `json:"sid"`
	Status              string            `json:"status"`
	SubresourceURIs     map[string]string `json:"subresource_uris"`
	To                  string            `json:"to"`
	URI                 string            `json:"uri"`
}

// FailMessageFetches makes the next n Message fetches (the Messaging route) answer status
// instead: 429 (code 20429, Retry-After: 1), 500 (20500), 503 (20503), or 502/504 with a load
// balancer's HTML body. A fetch has no side effect, so these only test the reader's retries.
// Authentication, unknown routes and the concurrency limit are checked first and do not
// consume them. It returns an error for another status.
func (f *Fake) FailMessageFetches(status, n int) error {
	switch status {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
	default:
		return fmt.Errorf("proxytest: FailMessageFetches: status must be 429, 500, 502, 503 or 504, got %d", status)
	}
	f.cb.mu.Lock()
	defer f.cb.mu.Unlock()
	for i := 0; i < n; i++ {
		f.cb.fetchFaults = append(f.cb.fetchFaults, status)
	}
	return nil
}

// parseMessageRoute matches /2010-04-01/Accounts/{AC}/Messages/{SM|MM}.json.
func parseMessageRoute(path string) (accountSID, messageSID string, ok bool) {
	s := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(s) != 5 || s[0] != "2010-04-01" || s[1] != "Accounts" || s[3] != "Messages" ||
		!strings.HasSuffix(s[4], ".json") {
		return "", "", false
	}
	sid := strings.TrimSuffix(s[4], ".json")
	if !isSID(s[2], "AC") || !(isSID(sid, "SM") || isSID(sid, "MM")) {
		return "", "", false
	}
	return s[2], sid, true
}

// serveMessage answers the Message fetch. It is a read like the interaction reads: same
// authentication, latency and concurrency limit, no create faults. A message of another
// account, or one the Fake did not create, is 404 code 20404.
func (f *Fake) serveMessage(x *exchange, acct account, accountSID, messageSID string) {
	if x.r.Method != http.MethodGet && x.r.Method != http.MethodHead {
		x.w.Header().Set("Allow", "GET")
		writeError(x.w, http.StatusMethodNotAllowed, codeMethodNotAllowed, "Method not allowed")
		return
	}
	f.cb.mu.Lock()
	f.cb.stats.MessageFetches++
	m := f.cb.msgs[messageSID]
	var fault int
	if len(f.cb.fetchFaults) > 0 {
		fault, f.cb.fetchFaults = f.cb.fetchFaults[0], f.cb.fetchFaults[1:]
		f.cb.stats.MessageFetchFaults++
	}
	f.cb.mu.Unlock()
	if fault != 0 {
		x.fault = "message-fetch-" + strconv.Itoa(fault)
		switch fault {
		case http.StatusTooManyRequests:
			x.w.Header().Set("Retry-After", "1")
			writeError(x.w, fault, codeTooManyRequests, "Too Many Requests")
		case http.StatusInternalServerError:
			internalError(x.w)
		case http.StatusServiceUnavailable:
			unavailable(x.w)
		default: // 502, 504: a load balancer's HTML page
			writeGatewayHTML(x.w, fault)
		}
		return
	}
	if m == nil || m.sm != messageSID || m.accountSID != accountSID || acct.sid != accountSID {
		notFound(x.w, x.r.URL.Path)
		return
	}
	st := m.state(time.Now())
	uri := "/2010-04-01/Accounts/" + m.accountSID + "/Messages/" + m.sm
	out := messageJSON{
		AccountSID:      m.accountSID,
		APIVersion:      "2010-04-01",
		Body:            m.body,
		DateCreated:     st.DateCreated.UTC().Format(messagingTime),
		DateUpdated:     st.DateUpdated.UTC().Format(messagingTime),
		Direction:       "outbound-api",
		From:            "+15005550006",
		NumMedia:        "0",
		NumSegments:     "1",
		PriceUnit:       "USD",
		SID:             m.sm,
		Status:          st.Status,
		SubresourceURIs: map[string]string{"media": uri + "/Media.json", "feedback": uri + "/Feedback.json"},
		To:              "+15005550009",
		URI:             uri + ".json",
	}
	// date_sent is set once the carrier took the message ("sent" is in the history).
	for i, s := range st.History {
		if s == StatusSent {
			d := st.DateCreated.Add(time.Duration(i) * m.delay).UTC().Format(messagingTime)
			out.DateSent = &d
		}
	}
	if st.ErrorCode != 0 {
		code, msg := st.ErrorCode, st.ErrorMessage
		out.ErrorCode, out.ErrorMessage = &code, &msg
	}
	writeJSON(x.w, http.StatusOK, out)
}
