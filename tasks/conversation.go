package tasks

// Conversations messages: the producer contract beside the Proxy one.
//
// A Conversations message is its own task type, TypeSendConversationMessage, with its own
// payload, ConversationPayload, rather than an "api" field in Payload. Why:
//   - the two payloads share no addressing field (a Proxy participant KS/KC/KP against a
//     conversation CH and optional Service IS; even "service_sid" means a KS… in one and an
//     IS… in the other), so one struct would make every field conditional and every
//     validation rule a case split, and a typo'd "api" would silently pick the other API;
//   - the worker dispatches by task type (asynq's ServeMux), and dashboards, metrics and
//     `proxyq status` name the API from the type without decoding anything;
//   - a worker that does not know the type yet leaves the task failing and retried (asynq's
//     "handler not found"), never sends it through the wrong API: deploy workers first.
//
// What is shared is everything that is not addressing: send_before, ordering_key (lanes are per
// queue and key, whichever API), account_sid, the idempotency key (an enqueue option, the asynq
// task ID, reserved across queues for both types), the validation error types and
// MaxPayloadBytes.
//
// Media: Conversations takes media by Media SID (ME…), uploaded first to Twilio's Media
// Content Service, and its description has MediaSid as one value per message. proxyq does not
// upload URLs for the producer: an upload is a second non-idempotent request with its own
// failure modes and a copy of the customer's file passing through the queue, which the
// producer can do once, with its own credentials, before enqueuing. So media_sid takes one
// ME… SID; a URL there, or a media_url key, gets an error that says how to do it.
//
// Attributes: the producer's attributes (a JSON object) are kept and merged with proxyq's
// stamp under the key "proxyq" (conversations.StampAttributes), by which an ambiguous create is
// reconciled exactly. A producer key "proxyq" is refused at enqueue with a clear error rather
// than silently replaced (the worker's merge lets the stamp win anyway).
//
// Enqueue: Enqueuer.EnqueueConversation and PrepareConversation (conversation_enqueue.go) give
// a Conversations message the key reservation, lane places, send_within and tracing of Enqueue,
// over the same internals. EnqueueBatch, IntentOfTask and Differences (the same-message rule)
// still know Proxy payloads only: folding both types into one prepare is phase 2's.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/proxyq/proxyq/internal/sid"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hibiken/asynq"
)

// TypeSendConversationMessage is the asynq task type of one outbound Conversations message.
const TypeSendConversationMessage = "conversations:send_message"

// StampAttributeKey is the attributes key reserved for proxyq's stamp (equal to
// conversations.StampKey; tasks imports no client).
const StampAttributeKey = "proxyq"

// MaxConversationBodyChars is Twilio's limit on a Conversations message body.
const MaxConversationBodyChars = 1600

// ConversationPayload is one message for one conversation: the JSON body of a
// conversations:send_message task. Body, MediaSID or ContentSID must be given.
type ConversationPayload struct {
	ConversationSID string `json:"conversation_sid"`      // CH…
	ServiceSID      string `json:"service_sid,omitempty"` // IS…; empty: the default Conversation Service
	Author          string `json:"author,omitempty"`      // Twilio's default is "system"
	Body            string `json:"body,omitempty"`        // at most MaxConversationBodyChars characters
	MediaSID        string `json:"media_sid,omitempty"`   // ME…, uploaded to Twilio's Media Content Service
	ContentSID      string `json:"content_sid,omitempty"` // HX…, a Content template
	// ContentVariables is a JSON object resolving the template's variables; only with ContentSID.
	ContentVariables json.RawMessage `json:"content_variables,omitempty"`
	// Attributes is the producer's JSON object kept on the message, merged with proxyq's stamp;
	// it must not use the key "proxyq".
	Attributes json.RawMessage `json:"attributes,omitempty"`
	// WebhookEnabled sets X-Twilio-Webhook-Enabled (whether the Service's webhooks fire for
	// this create); nil leaves Twilio's default.
	WebhookEnabled *bool `json:"webhook_enabled,omitempty"`
	// SendBefore, OrderingKey and AccountSID mean what they mean in Payload.
	SendBefore  *time.Time `json:"send_before,omitempty"`
	OrderingKey string     `json:"ordering_key,omitempty"`
	AccountSID  string     `json:"account_sid,omitempty"`
}

// Validate checks p. It returns nil or a ValidationErrors naming each field and its rule.
func (p ConversationPayload) Validate() error {
	var errs ValidationErrors
	add := func(field, rule string, args ...any) {
		errs = append(errs, &ValidationError{Field: field, Rule: fmt.Sprintf(rule, args...)})
	}
	switch {
	case p.ConversationSID == "":
		add("conversation_sid", "is required")
	case !sid.Valid("CH", p.ConversationSID):
		add("conversation_sid", "must match %s", sid.Rule("CH"))
	}
	if p.ServiceSID != "" && !sid.Valid("IS", p.ServiceSID) {
		add("service_sid", "must match %s (a Conversation Service; leave it out for the default one)", sid.Rule("IS"))
	}
	if p.AccountSID != "" && !sid.Valid("AC", p.AccountSID) {
		add("account_sid", "must match %s", sid.Rule("AC"))
	}
	if !utf8.ValidString(p.Author) {
		add("author", "must be valid UTF-8")
	}
	switch {
	case !utf8.ValidString(p.Body):
		add("body", "must be valid UTF-8")
	case utf8.RuneCountInString(p.Body) > MaxConversationBodyChars:
		add("body", "must be at most %d characters, got %d", MaxConversationBodyChars, utf8.RuneCountInString(p.Body))
	case strings.TrimSpace(p.Body) == "" && p.MediaSID == "" && p.ContentSID == "":
		add("body", "is required when media_sid and content_sid are empty (give a body, a Media SID or a Content template)")
	}
	switch {
	case p.MediaSID == "":
	case strings.Contains(p.MediaSID, "://"):
		add("media_sid", "must be a Media SID (ME…), not a URL: Conversations takes media uploaded to Twilio's Media Content Service; upload the file there and pass the ME… SID")
	case !sid.Valid("ME", p.MediaSID):
		add("media_sid", "must match %s", sid.Rule("ME"))
	}
	if p.ContentSID != "" && !sid.Valid("HX", p.ContentSID) {
		add("content_sid", "must match %s", sid.Rule("HX"))
	}
	if len(p.ContentVariables) > 0 {
		switch {
		case p.ContentSID == "":
			add("content_variables", "needs content_sid (the template they fill)")
		case !isJSONObject(p.ContentVariables):
			add("content_variables", "must be a JSON object")
		}
	}
	if len(p.Attributes) > 0 {
		var m map[string]json.RawMessage
		switch {
		case json.Unmarshal(p.Attributes, &m) != nil || m == nil:
			add("attributes", "must be a JSON object")
		case m[StampAttributeKey] != nil:
			add("attributes", "must not use the key %q: proxyq keeps its own stamp there to find the message again", StampAttributeKey)
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

func isJSONObject(raw json.RawMessage) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(raw, &m) == nil && m != nil
}

// conversationKeys are ConversationPayload's JSON keys, with the reason a Proxy-only key is
// refused when a producer mixes the two.
var conversationKeys = map[string]string{
	"conversation_sid": "", "service_sid": "", "author": "", "body": "", "media_sid": "",
	"content_sid": "", "content_variables": "", "attributes": "", "webhook_enabled": "",
	"send_before": "", "ordering_key": "", "account_sid": "",
	"media_url":       "is not a key of a Conversations message: Conversations takes media by Media SID (media_sid, ME…) uploaded to Twilio's Media Content Service",
	"session_sid":     "is a Proxy key: a Conversations message names its conversation_sid (CH…)",
	"participant_sid": "is a Proxy key: a Conversations message goes to every participant of its conversation_sid",
}

// DecodeConversation parses and validates a conversations:send_message payload with the same
// strictness as Decode: keys matched exactly, unknown and repeated keys refused, no trailing
// data, at most MaxPayloadBytes. It returns ErrPayloadTooLarge, a *ValidationError naming the
// key, or Validate's ValidationErrors.
func DecodeConversation(data []byte) (ConversationPayload, error) {
	var p ConversationPayload
	if len(data) > MaxPayloadBytes {
		return p, ErrPayloadTooLarge
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return p, &ValidationError{Field: "payload", Rule: "must be a JSON object"}
	}
	raw := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return p, &ValidationError{Field: "payload", Rule: "must be a JSON object: " + err.Error()}
		}
		key := tok.(string)
		if why, known := conversationKeys[key]; !known || why != "" {
			if why == "" {
				why = "is not a known key"
			}
			return p, &ValidationError{Field: key, Rule: why}
		}
		if _, seen := raw[key]; seen {
			return p, &ValidationError{Field: key, Rule: "must appear only once"}
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return p, &ValidationError{Field: key, Rule: "must be valid JSON: " + err.Error()}
		}
		raw[key] = v
	}
	if _, err := dec.Token(); err != nil {
		return p, &ValidationError{Field: "payload", Rule: "must be a JSON object: " + err.Error()}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return p, &ValidationError{Field: "payload", Rule: "must be a single JSON object"}
	}
	str := func(key string, dst *string) error {
		if v, ok := raw[key]; ok && string(v) != "null" {
			if json.Unmarshal(v, dst) != nil {
				return &ValidationError{Field: key, Rule: "must be a JSON string"}
			}
		}
		return nil
	}
	for key, dst := range map[string]*string{"conversation_sid": &p.ConversationSID, "service_sid": &p.ServiceSID,
		"author": &p.Author, "body": &p.Body, "media_sid": &p.MediaSID, "content_sid": &p.ContentSID, "account_sid": &p.AccountSID} {
		if err := str(key, dst); err != nil {
			return ConversationPayload{}, err
		}
	}
	for key, dst := range map[string]*json.RawMessage{"attributes": &p.Attributes, "content_variables": &p.ContentVariables} {
		if v, ok := raw[key]; ok && string(v) != "null" {
			if !isJSONObject(v) {
				return ConversationPayload{}, &ValidationError{Field: key, Rule: "must be a JSON object"}
			}
			*dst = v
		}
	}
	if v, ok := raw["webhook_enabled"]; ok && string(v) != "null" {
		var b bool
		if json.Unmarshal(v, &b) != nil {
			return ConversationPayload{}, &ValidationError{Field: "webhook_enabled", Rule: "must be true or false"}
		}
		p.WebhookEnabled = &b
	}
	if v, ok := raw["ordering_key"]; ok && string(v) != "null" {
		if err := str("ordering_key", &p.OrderingKey); err != nil {
			return ConversationPayload{}, err
		}
		if p.OrderingKey == "" {
			return ConversationPayload{}, &ValidationError{Field: "ordering_key", Rule: "must not be empty (leave the key out for an unordered message)"}
		}
	}
	if v, ok := raw["send_before"]; ok && string(v) != "null" {
		var t time.Time
		if err := t.UnmarshalJSON(v); err != nil {
			return ConversationPayload{}, &ValidationError{Field: "send_before", Rule: "must be an RFC 3339 time"}
		}
		p.SendBefore = &t
	}
	if err := p.Validate(); err != nil {
		return ConversationPayload{}, err
	}
	return p, nil
}

// Encode returns the payload's JSON after validating it. It returns a ValidationErrors, or
// ErrPayloadTooLarge.
func (p ConversationPayload) Encode() ([]byte, error) {
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

// Task returns the asynq task carrying p (type TypeSendConversationMessage), after Encode.
func (p ConversationPayload) Task() (*asynq.Task, error) {
	data, err := p.Encode()
	if err != nil {
		return nil, err
	}
	return asynq.NewTask(TypeSendConversationMessage, data), nil
}
