package proxyclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// messagingAPIVersion is the path segment of Twilio's Messaging REST API.
const messagingAPIVersion = "2010-04-01"

// Message is the part of Twilio's Messaging REST API Message resource (the SMS/MMS behind
// a Proxy interaction's outbound_resource_sid) that tells what happened to it. The body,
// numbers and prices are deliberately not decoded: proxyq never needs them and must not
// hold message text it could leak.
type Message struct {
	SID        string // SM… (MM… for media)
	AccountSID string // AC…
	// Status is kept as an opaque string: queued, sending, sent, delivered, undelivered,
	// failed, accepted, scheduled, read, canceled, … Twilio adds values over time.
	Status string
	// ErrorCode is Twilio's error code for undelivered/failed messages (30003 unreachable
	// handset, 30005 unknown destination, 30006 landline, 30007 carrier filtering, …);
	// 0 when error_code is null.
	ErrorCode int
	// ErrorMessage is Twilio's text for ErrorCode, sanitised to one line; "" when null.
	ErrorMessage string
	// DateCreated, DateUpdated and DateSent are UTC; the zero time when null or
	// unreadable. Twilio writes them in RFC 1123 form ("Mon, 16 Aug 2010 03:45:01 +0000").
	DateCreated, DateUpdated, DateSent time.Time
}

// UnmarshalJSON decodes Twilio's Message JSON. error_code may be null, a number or (as
// some older API answers had it) a string of digits; anything else is an error, since a
// delivery error that cannot be read must not look like "no error". Dates are read
// leniently like MessageInteraction's (RFC 1123, else RFC 3339).
func (m *Message) UnmarshalJSON(b []byte) error {
	var w struct {
		SID          string          `json:"sid"`
		AccountSID   string          `json:"account_sid"`
		Status       *string         `json:"status"`
		ErrorCode    json.RawMessage `json:"error_code"`
		ErrorMessage *string         `json:"error_message"`
		DateCreated  *string         `json:"date_created"`
		DateUpdated  *string         `json:"date_updated"`
		DateSent     *string         `json:"date_sent"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	code, err := parseErrorCode(w.ErrorCode)
	if err != nil {
		return err
	}
	*m = Message{
		SID:         w.SID,
		AccountSID:  w.AccountSID,
		ErrorCode:   code,
		DateCreated: parseTwilioTime(w.DateCreated),
		DateUpdated: parseTwilioTime(w.DateUpdated),
		DateSent:    parseTwilioTime(w.DateSent),
	}
	if w.Status != nil {
		m.Status = *w.Status
	}
	if w.ErrorMessage != nil {
		m.ErrorMessage = sanitize(*w.ErrorMessage, 512)
	}
	return nil
}

func parseErrorCode(raw json.RawMessage) (int, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	s := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, err
		}
		if s == "" {
			return 0, nil
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: error_code is not a non-negative integer", errBadContent)
	}
	return n, nil
}

// FetchMessage reads the Message resource of Twilio's Messaging REST API
// (GET {MessagingEndpoint}/2010-04-01/Accounts/{AC}/Messages/{SM}.json): its delivery
// status and, for undelivered or failed messages, error_code and error_message. The
// account is the one that owns the message (a Proxy callback's interactionAccountSid);
// the client's credentials must be allowed to read it. The request is bounded by
// HTTPTimeout and authenticated like the Proxy calls.
//
// Errors: *ValidationError (bad SID; nothing was sent), *Error (404 with Twilio code
// 20404 when the message does not exist in that account), *TransportError, *DecodeError.
// A read has no side effect: classify its errors with ClassifyRead, not Classify.
func (c *Client) FetchMessage(ctx context.Context, accountSID, messageSID string) (*Message, error) {
	if !ValidSID("AC", accountSID) {
		return nil, invalid("AccountSID", "must match ^AC[0-9a-fA-F]{32}$")
	}
	if !ValidSID("SM", messageSID) && !ValidSID("MM", messageSID) {
		return nil, invalid("MessageSID", "must match ^(SM|MM)[0-9a-fA-F]{32}$")
	}
	u := joinURL(c.msgBase, messagingAPIVersion, "Accounts", accountSID, "Messages", messageSID+".json")
	var m Message
	if err := c.do(ctx, http.MethodGet, u, nil, &m); err != nil {
		return nil, err
	}
	return &m, nil
}
