package tasks

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	fastjson "github.com/segmentio/encoding/json"
)

// Outcome states written by the worker.
const (
	OutcomeSent    = "sent"    // the message exists at Twilio; InteractionSID (Proxy) or MessageSID (Conversations) is set
	OutcomeFailed  = "failed"  // Twilio refused it permanently; ErrorCode and Error say why
	OutcomeExpired = "expired" // not sent by its deadline; nothing was created
	// OutcomeUnknown means the last request may or may not have created the interaction; the
	// worker reconciles before it sends again, so a task in this state must not be cancelled
	// or re-sent by hand.
	OutcomeUnknown = "unknown"
)

// Outcome is the record the worker writes as the asynq task result, read by the asynq
// dashboard, `proxyq status` and the HTTP API, which show it as JSON with these keys. Redis keeps
// it in a compact form (EncodeOutcome, ParseOutcome). New keys may be added; existing ones keep
// their meaning.
type Outcome struct {
	State string `json:"state"` // one of the Outcome* constants
	// API is the Twilio API the message went to: "conversations" (APIConversations) for a
	// conversations:send_message task; empty means Proxy (records written before there were
	// two APIs, and every Proxy record: it keeps them short).
	API                 string     `json:"api,omitempty"`
	InteractionSID      string     `json:"interaction_sid,omitempty"`       // KI…, the Proxy interaction
	MessageSID          string     `json:"message_sid,omitempty"`           // IM…, the Conversations message
	ConversationSID     string     `json:"conversation_sid,omitempty"`      // CH…, the message's conversation (Conversations)
	ChatServiceSID      string     `json:"chat_service_sid,omitempty"`      // IS…, its Conversation Service when not the default
	OutboundStatus      string     `json:"outbound_status,omitempty"`       // e.g. queued, sent, delivered
	OutboundResourceSID string     `json:"outbound_resource_sid,omitempty"` // SM…, the message
	Attempts            int        `json:"attempts"`                        // requests that could have created it (POSTs)
	SentAt              *time.Time `json:"sent_at,omitempty"`               // Twilio's date_created, else when we learned it
	// Reconciled is true when the worker did not see Twilio's answer to its own request but found
	// the interaction afterwards by listing the participant's interactions.
	Reconciled bool      `json:"reconciled,omitempty"`
	ErrorCode  int       `json:"error_code,omitempty"`  // Twilio error code, for failed
	HTTPStatus int       `json:"http_status,omitempty"` // for failed
	Error      string    `json:"error,omitempty"`       // human-readable reason, for failed/expired/unknown
	RecordedAt time.Time `json:"recorded_at"`

	// Delivery: what became of the SMS after Twilio accepted it, from Proxy's status callbacks
	// or a poll (package delivery). OutboundStatus above is then the latest status by rank.
	StatusHistory     []StatusEvent `json:"status_history,omitempty"`      // each status once, in order of arrival, bounded
	DeliveredAt       *time.Time    `json:"delivered_at,omitempty"`        // when delivered was reported
	Final             bool          `json:"final,omitempty"`               // delivered, undelivered or failed: it no longer changes
	DeliveryErrorCode int           `json:"delivery_error_code,omitempty"` // the Message's error_code (30003…), for undelivered/failed
	DeliveryError     string        `json:"delivery_error,omitempty"`      // the Message's error_message

	// AttemptLog is the worker's attempt log of the run that recorded the send, in its own
	// encoding (worker.ParseAttemptLog), for the console. It is stored (key "l") but not part
	// of the record's JSON view.
	AttemptLog string `json:"-"`
}

// APIConversations is Outcome.API for a Conversations message.
const APIConversations = "conversations"

// CreatedSID is the SID of what the message created at Twilio: the Proxy interaction (KI…)
// or the Conversations message (IM…); "" when nothing is recorded.
func (o *Outcome) CreatedSID() string {
	if o == nil {
		return ""
	}
	if o.MessageSID != "" {
		return o.MessageSID
	}
	return o.InteractionSID
}

// StatusEvent is one entry of Outcome.StatusHistory: a status and when proxyq learned it.
type StatusEvent struct {
	Status string    `json:"status"`
	At     time.Time `json:"at"`
}

// storedOutcome is the outcome record as Redis keeps it (asynq's task result): Outcome's
// fields under short keys, times in Unix milliseconds. Every completed message keeps its record
// for the retention period, and under Redis's default hash-max-listpack-value the record's
// length decides the allocation of asynq's whole task hash: the compact form (≈ 150 B for a
// sent message, against ≈ 250 B with the long keys) keeps a message under 1 KB of Redis.
// Everything people read (HTTP API, `proxyq status --json`, the dashboard, Go's Outcome) shows
// the long keys; ParseOutcome reads both forms, so records written before the compact form
// still read.
type storedOutcome struct {
	State               string        `json:"s"`
	API                 string        `json:"ap,omitempty"`
	InteractionSID      string        `json:"ki,omitempty"`
	MessageSID          string        `json:"im,omitempty"`
	ConversationSID     string        `json:"ch,omitempty"`
	ChatServiceSID      string        `json:"is,omitempty"`
	OutboundStatus      string        `json:"os,omitempty"`
	OutboundResourceSID string        `json:"sm,omitempty"`
	Attempts            int           `json:"n"`
	SentAt              int64         `json:"sa,omitempty"`
	Reconciled          bool          `json:"rc,omitempty"`
	ErrorCode           int           `json:"ec,omitempty"`
	HTTPStatus          int           `json:"hs,omitempty"`
	Error               string        `json:"e,omitempty"`
	RecordedAt          int64         `json:"ra"`
	StatusHistory       []storedEvent `json:"h,omitempty"` // read only: written before "hl"
	History             string        `json:"hl,omitempty"`
	DeliveredAt         int64         `json:"da,omitempty"`
	Final               bool          `json:"f,omitempty"`
	DeliveryErrorCode   int           `json:"dc,omitempty"`
	DeliveryError       string        `json:"de,omitempty"`
	AttemptLog          string        `json:"l,omitempty"`
}

type storedEvent struct {
	Status string `json:"s"`
	At     int64  `json:"t"`
}

// knownKeys are the keys of storedOutcome and those of Outcome (the long form): PatchOutcome
// drops them from the record it rewrites and keeps any other key (one a newer version added).
var knownKeys = func() map[string]bool {
	keys := jsonKeys(storedOutcome{})
	maps.Copy(keys, jsonKeys(Outcome{}))
	return keys
}()

// EncodeOutcome returns o as it is stored in Redis: the compact form (see storedOutcome).
// Times are kept to the millisecond. segmentio's encoder (every sent message writes one
// record) writes what encoding/json writes, TestEncodeOutcomeAsEncodingJSON checks.
func EncodeOutcome(o *Outcome) ([]byte, error) {
	s := compact(o)
	return fastjson.Marshal(&s)
}

func compact(o *Outcome) storedOutcome {
	s := storedOutcome{
		State: o.State, API: o.API, InteractionSID: o.InteractionSID, MessageSID: o.MessageSID,
		ConversationSID: o.ConversationSID, ChatServiceSID: o.ChatServiceSID, OutboundStatus: o.OutboundStatus,
		OutboundResourceSID: o.OutboundResourceSID, Attempts: o.Attempts, SentAt: unixMilli(o.SentAt),
		Reconciled: o.Reconciled, ErrorCode: o.ErrorCode, HTTPStatus: o.HTTPStatus, Error: o.Error,
		RecordedAt: o.RecordedAt.UnixMilli(), DeliveredAt: unixMilli(o.DeliveredAt), Final: o.Final,
		DeliveryErrorCode: o.DeliveryErrorCode, DeliveryError: o.DeliveryError, AttemptLog: o.AttemptLog,
	}
	if o.RecordedAt.IsZero() {
		s.RecordedAt = 0
	}
	s.History = encodeHistory(o.StatusHistory, s.RecordedAt)
	if s.DeliveredAt != 0 && s.DeliveredAt == deliveredInHistory(o.OutboundStatus, o.StatusHistory) {
		s.DeliveredAt = 0 // ParseOutcome reads it from the history: 21 bytes less per delivered message
	}
	return s
}

// deliveredInHistory is when a delivered message's history says it was delivered (Unix ms), or
// 0: a delivered record's delivered_at is that time, so the stored record leaves it out when
// they agree ("da" is kept for the rare record whose history has no room for it).
func deliveredInHistory(status string, h []StatusEvent) int64 {
	if status != "delivered" {
		return 0
	}
	for _, e := range h {
		if e.Status == "delivered" {
			return e.At.UnixMilli()
		}
	}
	return 0
}

// The status history as stored ("hl"): `<status>,<ms after recorded_at, base 36>` per entry,
// joined by ";" — "queued,-2s;sent,5k;delivered,1ba" — about half the bytes of the JSON
// array it replaces ("h", [{"s","t"}] with Unix milliseconds), which ParseOutcome still reads.
// A status is opaque text from Twilio: the separators in it are escaped.
var (
	historyEscaper   = strings.NewReplacer("%", "%25", ";", "%3B", ",", "%2C")
	historyUnescaper = strings.NewReplacer("%25", "%", "%3B", ";", "%2C", ",")
)

func encodeHistory(h []StatusEvent, base int64) string {
	if len(h) == 0 {
		return ""
	}
	b := make([]byte, 0, 16*len(h))
	for i, e := range h {
		if i > 0 {
			b = append(b, ';')
		}
		b = append(b, historyEscaper.Replace(e.Status)...)
		b = strconv.AppendInt(append(b, ','), e.At.UnixMilli()-base, 36)
	}
	return string(b)
}

func decodeHistory(v string, base int64) ([]StatusEvent, error) {
	if v == "" {
		return nil, nil
	}
	var h []StatusEvent
	for _, e := range strings.Split(v, ";") {
		i := strings.LastIndexByte(e, ',')
		if i < 0 {
			return nil, fmt.Errorf("outcome record: unreadable status history entry %q", e)
		}
		d, err := strconv.ParseInt(e[i+1:], 36, 64)
		if err != nil {
			return nil, fmt.Errorf("outcome record: unreadable status history entry %q", e)
		}
		h = append(h, StatusEvent{Status: historyUnescaper.Replace(e[:i]), At: time.UnixMilli(base + d).UTC()})
	}
	return h, nil
}

// ParseOutcome decodes a stored outcome record, compact or long; an empty result yields nil, nil.
// Times come back in UTC.
func ParseOutcome(result []byte) (*Outcome, error) {
	if len(result) == 0 {
		return nil, nil
	}
	// segmentio's decoder, as for payloads: every status callback reads a record.
	var s storedOutcome
	if err := fastjson.Unmarshal(result, &s); err != nil {
		return nil, err
	}
	if s.State == "" {
		// The long form, written before the compact one (or by hand).
		var o Outcome
		if err := fastjson.Unmarshal(result, &o); err != nil {
			return nil, err
		}
		return &o, nil
	}
	o := &Outcome{
		State: s.State, API: s.API, InteractionSID: s.InteractionSID, MessageSID: s.MessageSID,
		ConversationSID: s.ConversationSID, ChatServiceSID: s.ChatServiceSID, OutboundStatus: s.OutboundStatus,
		OutboundResourceSID: s.OutboundResourceSID, Attempts: s.Attempts, SentAt: fromMilli(s.SentAt),
		Reconciled: s.Reconciled, ErrorCode: s.ErrorCode, HTTPStatus: s.HTTPStatus, Error: s.Error,
		DeliveredAt: fromMilli(s.DeliveredAt), Final: s.Final,
		DeliveryErrorCode: s.DeliveryErrorCode, DeliveryError: s.DeliveryError, AttemptLog: s.AttemptLog,
	}
	if s.RecordedAt != 0 {
		o.RecordedAt = time.UnixMilli(s.RecordedAt).UTC()
	}
	h, err := decodeHistory(s.History, s.RecordedAt)
	if err != nil {
		return nil, err
	}
	for _, e := range s.StatusHistory {
		// The array form, of a record written before "hl" (or updated by such a process since:
		// then both hold entries, each status kept once, at its earliest).
		if i := slices.IndexFunc(h, func(x StatusEvent) bool { return x.Status == e.Status }); i >= 0 {
			if e.At < h[i].At.UnixMilli() {
				h[i].At = time.UnixMilli(e.At).UTC()
			}
			continue
		}
		h = append(h, StatusEvent{Status: e.Status, At: time.UnixMilli(e.At).UTC()})
	}
	if len(s.StatusHistory) > 0 && s.History != "" {
		slices.SortStableFunc(h, func(a, b StatusEvent) int { return a.At.Compare(b.At) })
	}
	o.StatusHistory = h
	if o.DeliveredAt == nil {
		o.DeliveredAt = fromMilli(deliveredInHistory(o.OutboundStatus, h))
	}
	return o, nil
}

// PatchOutcome returns the stored record with o's fields in the compact form, keeping any key of
// stored that this version does not know, so a record written by a newer worker keeps what it
// added when an older process (a callback, a poll) updates its timeline.
func PatchOutcome(stored []byte, o *Outcome) ([]byte, error) {
	data, err := EncodeOutcome(o)
	if err != nil {
		return nil, err
	}
	known, err := onlyKnownKeys(stored)
	if err != nil {
		return nil, err
	}
	if known {
		return data, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(stored, &fields); err != nil {
		return nil, err
	}
	var extra []string
	for k := range fields {
		if !knownKeys[k] {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)
	out := data[:len(data)-1] // without its closing brace
	for _, k := range extra {
		name, _ := json.Marshal(k)
		out = append(append(append(append(out, ','), name...), ':'), fields[k]...)
	}
	return append(out, '}'), nil
}

// onlyKnownKeys reports whether every top-level key of the JSON object stored is one this
// version writes or reads, the case of every record but one a newer worker wrote. It walks the
// tokens instead of decoding a map: every status callback that moves a record patches it.
func onlyKnownKeys(stored []byte) (bool, error) {
	if !fastjson.Valid(stored) {
		return false, fmt.Errorf("outcome record: not a JSON object: %.40q", stored)
	}
	if string(bytes.TrimSpace(stored)) == "null" {
		return true, nil // no keys, as encoding/json reads null into a map
	}
	t := fastjson.NewTokenizer(stored)
	if !t.Next() || t.Delim != '{' {
		return false, fmt.Errorf("outcome record: not a JSON object: %.40q", stored)
	}
	for t.Next() {
		if t.Depth == 1 && t.IsKey {
			if !knownKeys[string(t.String())] {
				return false, nil
			}
		}
	}
	if t.Err != nil {
		return false, fmt.Errorf("outcome record: %w", t.Err)
	}
	return true, nil
}

func unixMilli(t *time.Time) int64 {
	if t == nil {
		return 0
	}
	return t.UnixMilli()
}

func fromMilli(ms int64) *time.Time {
	if ms == 0 {
		return nil
	}
	t := time.UnixMilli(ms).UTC()
	return &t
}

// jsonKeys lists the JSON keys of a struct's fields.
func jsonKeys(v any) map[string]bool {
	keys := map[string]bool{}
	t := reflect.TypeOf(v)
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		keys[name] = true
	}
	return keys
}
