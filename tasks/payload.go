package tasks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	fastjson "github.com/segmentio/encoding/json"

	"github.com/proxyq/proxyq/internal/sid"
)

// TypeSendInteraction is the asynq task type of one outbound Proxy message.
const TypeSendInteraction = "proxy:send_interaction"

// Validation bounds. Twilio publishes none for Proxy; these are Programmable Messaging's.
const (
	MaxBodyChars    = 1600     // characters (Unicode code points) in Body
	MaxMediaURLs    = 10       // entries in MediaURLs
	MaxMediaURLLen  = 2048     // bytes in one media URL
	MaxPayloadBytes = 32 << 10 // bytes of encoded payload JSON
)

// Payload is one message for one Proxy participant: the JSON body of a
// proxy:send_interaction task. Body, MediaURLs or both must be given.
type Payload struct {
	ServiceSID     string   `json:"service_sid"`         // KS…
	SessionSID     string   `json:"session_sid"`         // KC…
	ParticipantSID string   `json:"participant_sid"`     // KP…, the recipient
	Body           string   `json:"body,omitempty"`      // at most MaxBodyChars characters
	MediaURLs      []string `json:"media_url,omitempty"` // absolute http(s) URLs, at most MaxMediaURLs
	// SendBefore is the latest time the message may be sent; a message not sent by then is
	// archived as expired rather than sent late. Zero means the worker's default applies
	// (PROXYQ_SEND_WITHIN after the worker first sees the message).
	SendBefore *time.Time `json:"send_before,omitempty"`
	// OrderingKey puts the message in a lane (see lane.go): messages of one queue sharing the
	// key are created at Twilio in enqueue order, one at a time. Empty: unordered.
	OrderingKey string `json:"ordering_key,omitempty"`
	// AccountSID names the Twilio account (AC…) to send with, e.g. a customer's subaccount;
	// the worker needs its credentials (PROXYQ_ACCOUNTS_FILE). Empty means the worker's
	// default account (TWILIO_*).
	AccountSID string `json:"account_sid,omitempty"`
}

// ValidationError is one rule one field broke. Field is the JSON key (with an index for list
// entries, e.g. "media_url[2]").
type ValidationError struct {
	Field string `json:"field"`
	Rule  string `json:"rule"`
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Rule }

// ValidationErrors is every rule a payload broke, in field order. It is the error type returned
// by Validate and Decode for invalid payloads; use errors.As to get the field-level detail.
type ValidationErrors []*ValidationError

func (es ValidationErrors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return "invalid payload: " + strings.Join(msgs, "; ")
}

// Unwrap lets errors.As find a *ValidationError (the first) in a ValidationErrors, so callers
// that only check for *ValidationError treat every validation failure alike.
func (es ValidationErrors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// Validate checks p against the payload rules. It returns nil or a ValidationErrors naming each
// field and the rule it broke.
func (p Payload) Validate() error {
	var errs ValidationErrors
	add := func(field, rule string, args ...any) {
		errs = append(errs, &ValidationError{Field: field, Rule: fmt.Sprintf(rule, args...)})
	}
	checkSID := func(field, value, prefix string) {
		switch {
		case value == "":
			add(field, "is required")
		case !sid.Valid(prefix, value):
			add(field, "must match %s", sid.Rule(prefix))
		}
	}
	checkSID("service_sid", p.ServiceSID, "KS")
	checkSID("session_sid", p.SessionSID, "KC")
	checkSID("participant_sid", p.ParticipantSID, "KP")
	if p.AccountSID != "" && !sid.Valid("AC", p.AccountSID) {
		add("account_sid", "must match %s", sid.Rule("AC"))
	}

	switch {
	case !utf8.ValidString(p.Body):
		add("body", "must be valid UTF-8")
	case utf8.RuneCountInString(p.Body) > MaxBodyChars:
		add("body", "must be at most %d characters, got %d", MaxBodyChars, utf8.RuneCountInString(p.Body))
	case strings.TrimSpace(p.Body) == "" && len(p.MediaURLs) == 0:
		add("body", "is required when media_url is empty (give a body, a media URL or both)")
	}
	if len(p.MediaURLs) > MaxMediaURLs {
		add("media_url", "must have at most %d entries, got %d", MaxMediaURLs, len(p.MediaURLs))
	}
	for i, u := range p.MediaURLs {
		if rule := mediaURLProblem(u); rule != "" {
			add(fmt.Sprintf("media_url[%d]", i), "%s", rule)
		}
	}
	if p.SendBefore != nil && p.SendBefore.IsZero() {
		add("send_before", "must be an RFC 3339 time")
	}
	if p.OrderingKey != "" {
		if err := ValidateOrderingKey(p.OrderingKey); err != nil {
			errs = append(errs, err.(*ValidationError))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

func mediaURLProblem(raw string) string {
	if len(raw) > MaxMediaURLLen {
		return fmt.Sprintf("must be at most %d bytes long", MaxMediaURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "must be an absolute http or https URL"
	}
	if u.User != nil {
		return "must not carry credentials"
	}
	return ""
}

// ErrPayloadTooLarge is returned by Decode for payloads over MaxPayloadBytes.
var ErrPayloadTooLarge = fmt.Errorf("payload is larger than %d bytes", MaxPayloadBytes)

// Decode parses and validates a task payload. Keys are matched exactly (encoding/json alone
// would accept "Body" for "body"); unknown keys, repeated keys, trailing data and payloads over
// MaxPayloadBytes are rejected, so every producer and the worker read the same bytes the same
// way. It returns ErrPayloadTooLarge, a ValidationErrors, or a *ValidationError for JSON that
// does not parse (Field "payload", or the offending key).
func Decode(data []byte) (Payload, error) {
	if len(data) > MaxPayloadBytes {
		return Payload{}, ErrPayloadTooLarge
	}
	if err := checkKeys(data); err != nil {
		return Payload{}, err
	}
	var w wirePayload
	// checkKeys has refused unknown and repeated keys, and Unmarshal refuses trailing data, so
	// the valid payload (every worker run) takes the fast path: segmentio's decoder, which reads
	// JSON as encoding/json does (FuzzDecodeAsEncodingJSON) in about a third of the time. The
	// standard decoder below only names the problem of an invalid one precisely.
	if err := fastjson.Unmarshal(data, &w); err != nil {
		w = wirePayload{}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&w); err != nil {
			return Payload{}, jsonProblem(err)
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return Payload{}, &ValidationError{Field: "payload", Rule: "must be a single JSON object"}
		}
		return Payload{}, jsonProblem(err)
	}
	p := Payload{ServiceSID: w.ServiceSID, SessionSID: w.SessionSID, ParticipantSID: w.ParticipantSID,
		Body: w.Body, MediaURLs: w.MediaURLs, AccountSID: w.AccountSID}
	if w.OrderingKey != nil {
		if *w.OrderingKey == "" {
			return Payload{}, &ValidationError{Field: "ordering_key", Rule: "must not be empty (leave the key out for an unordered message)"}
		}
		p.OrderingKey = *w.OrderingKey
	}
	if len(w.SendBefore) > 0 && string(w.SendBefore) != "null" {
		var t time.Time
		if err := t.UnmarshalJSON(w.SendBefore); err != nil {
			return Payload{}, &ValidationError{Field: "send_before", Rule: "must be an RFC 3339 time"}
		}
		p.SendBefore = &t
	}
	if err := p.Validate(); err != nil {
		return Payload{}, err
	}
	return p, nil
}

// wirePayload is Payload as Decode reads it. send_before stays raw because time.Time's own
// UnmarshalJSON error for a non-string names no field; keys must stay those of Payload.
type wirePayload struct {
	ServiceSID     string          `json:"service_sid"`
	SessionSID     string          `json:"session_sid"`
	ParticipantSID string          `json:"participant_sid"`
	Body           string          `json:"body"`
	MediaURLs      []string        `json:"media_url"`
	SendBefore     json.RawMessage `json:"send_before"`
	OrderingKey    *string         `json:"ordering_key"`
	AccountSID     string          `json:"account_sid"`
}

// payloadKeys are Payload's JSON keys, read from its tags so they cannot drift.
var payloadKeys = func() map[string]bool {
	keys := make(map[string]bool)
	t := reflect.TypeFor[Payload]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		keys[name] = true
	}
	return keys
}()

// checkKeys walks the top-level object's keys. encoding/json matches keys case-insensitively
// and lets a repeated key overwrite the first; a producer-side validator in another language
// may take the first value instead, so both are refused here. Syntax errors are left for the
// decoder to report.
func checkKeys(data []byte) error {
	i := skipSpace(data, 0)
	if i >= len(data) {
		return nil // empty: Decode reports it
	}
	if data[i] != '{' {
		return &ValidationError{Field: "payload", Rule: "must be a JSON object"}
	}
	// One pass over the bytes (every worker run decodes its payload, so this is on the hot
	// path): the object's own keys are the strings at depth 1 followed by a colon. Malformed
	// JSON is left to Decode, which reports it precisely.
	var seen [16]string
	n, depth := 0, 0
	for i < len(data) {
		switch c := data[i]; c {
		case '"':
			end := stringEnd(data, i)
			if end < 0 {
				return nil
			}
			if depth == 1 {
				if j := skipSpace(data, end+1); j < len(data) && data[j] == ':' {
					key := string(data[i+1 : end])
					// Escapes and invalid UTF-8 are read as encoding/json reads them.
					if (strings.IndexByte(key, '\\') >= 0 || !utf8.ValidString(key)) && json.Unmarshal(data[i:end+1], &key) != nil {
						return nil
					}
					if !payloadKeys[key] {
						return &ValidationError{Field: key, Rule: "is not a known key"}
					}
					if slices.Contains(seen[:n], key) {
						return &ValidationError{Field: key, Rule: "must appear only once"}
					}
					if n < len(seen) {
						seen[n] = key
						n++
					}
				}
			}
			i = end + 1
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth == 0 {
				return nil // the object's end: anything after it is Decode's to refuse
			}
		}
		i++
	}
	return nil
}

// stringEnd returns the index of the quote closing the JSON string opening at data[i], or -1.
func stringEnd(data []byte, i int) int {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j
		}
	}
	return -1
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// jsonProblem turns encoding/json's errors into field-level validation errors.
func jsonProblem(err error) *ValidationError {
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field != "":
		// A wrong element type inside media_url is reported against the list: Field holds
		// no index.
		if typeErr.Field == "media_url" || strings.HasPrefix(typeErr.Field, "media_url.") {
			return &ValidationError{Field: "media_url", Rule: "must be a JSON array of strings"}
		}
		return &ValidationError{Field: typeErr.Field, Rule: "must be a JSON string"}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.TrimPrefix(err.Error(), "json: unknown field ")
		if f, uerr := strconv.Unquote(field); uerr == nil {
			field = f
		}
		return &ValidationError{Field: field, Rule: "is not a known key"}
	default:
		return &ValidationError{Field: "payload", Rule: "must be a JSON object: " + err.Error()}
	}
}

// Encode returns the payload's JSON after validating it. It returns a ValidationErrors, or
// ErrPayloadTooLarge when the encoded JSON exceeds MaxPayloadBytes.
func (p Payload) Encode() ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	data, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	if len(data) > MaxPayloadBytes {
		return nil, ErrPayloadTooLarge
	}
	return data, nil
}
