package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/proxyq/proxyq/tasks"
)

// Request keys the API adds to the tasks payload schema.
const (
	keySendAt         = "send_at"
	keyQueue          = "queue"
	keyIdempotencyKey = "idempotency_key" // batch entries only; single POSTs use the header
	keyMessages       = "messages"

	headerIdempotencyKey = "Idempotency-Key"
)

// message is one decoded, validated request for one message.
type message struct {
	Payload tasks.Payload
	// SendAt is when to send, nil for "now". A past time also means now.
	SendAt *time.Time
	// Queue is the asynq queue, already checked against Config.Queues.
	Queue string
	// Key is the idempotency key, "" for none.
	Key string
	// Via is the origin's "through what" (the request's token name): see via.
	Via tasks.Option
}

// options returns the tasks.Enqueuer options for m, after base (Config.EnqueueOptions).
func (m message) options(now time.Time, base ...tasks.Option) []tasks.Option {
	opts := append(make([]tasks.Option, 0, len(base)+3), base...)
	opts = append(opts, tasks.Queue(m.Queue), tasks.Via("http"))
	if m.Via != nil {
		opts = append(opts, m.Via)
	}
	if m.SendAt != nil && m.SendAt.After(now) {
		opts = append(opts, tasks.ProcessAt(*m.SendAt))
	}
	if m.Key != "" {
		opts = append(opts, tasks.IdempotencyKey(m.Key))
	}
	return opts
}

// intent is m as the tasks "same message" rule sees it.
func (m message) intent() tasks.Intent {
	in := tasks.Intent{Payload: m.Payload, Queue: m.Queue}
	if m.SendAt != nil {
		in.SendAt = *m.SendAt
	}
	return in
}

// decoder turns request bodies into messages. It is pure (no I/O), so it is fuzzed directly.
type decoder struct {
	queues    map[string]bool
	queueList string // for error messages
	maxBatch  int
	now       func() time.Time
	known     func(accountSID string) bool // nil: every account_sid is accepted
}

func newDecoder(queues []string, maxBatch int, now func() time.Time) *decoder {
	d := &decoder{queues: make(map[string]bool, len(queues)), maxBatch: maxBatch, now: now}
	for _, q := range queues {
		d.queues[q] = true
	}
	sorted := append([]string(nil), queues...)
	sort.Strings(sorted)
	d.queueList = strings.Join(sorted, ", ")
	return d
}

// single decodes the body of POST /v1/message-interactions. It returns either a valid
// message or a problem (400 for a body that is not one JSON object, 422 for broken rules).
func (d *decoder) single(body []byte) (message, *Problem) {
	obj, err := parseObject(body)
	if err != nil {
		return message{}, newProblem(http.StatusBadRequest, ProblemMalformed, "the request body must be one JSON object: "+err.Error())
	}
	m, errs := d.fields(obj, "", false, d.now())
	if len(errs) > 0 {
		return message{}, validationProblem("the message breaks the payload rules; nothing was enqueued", errs)
	}
	return m, nil
}

// batch decodes the body of POST /v1/message-interactions:batch: every entry is checked and
// every broken rule reported, so one 422 lists all of them.
func (d *decoder) batch(body []byte) ([]message, *Problem) {
	obj, err := parseObject(body)
	if err != nil {
		return nil, newProblem(http.StatusBadRequest, ProblemMalformed, "the request body must be one JSON object: "+err.Error())
	}
	var errs []FieldError
	for _, k := range sortedKeys(obj) {
		if k != keyMessages {
			errs = append(errs, FieldError{Field: fieldName(k), Rule: "is not a known key (the batch body is {\"messages\": [...]})"})
		}
	}
	raw, ok := obj[keyMessages]
	var entries []json.RawMessage
	switch {
	case !ok || isNull(raw):
		errs = append(errs, FieldError{Field: keyMessages, Rule: "is required"})
	case json.Unmarshal(raw, &entries) != nil:
		errs = append(errs, FieldError{Field: keyMessages, Rule: "must be an array of message objects"})
	case len(entries) == 0:
		errs = append(errs, FieldError{Field: keyMessages, Rule: "must have at least 1 entry"})
	case len(entries) > d.maxBatch:
		errs = append(errs, FieldError{Field: keyMessages, Rule: fmt.Sprintf("must have at most %d entries, got %d", d.maxBatch, len(entries))})
		entries = nil // too many to be worth checking one by one
	}
	now := d.now()
	msgs := make([]message, 0, len(entries))
	keyAt := make(map[string]int, len(entries)) // first entry with each key
	firstWith := make(map[string]message, len(entries))
	for i, e := range entries {
		prefix := keyMessages + "[" + strconv.Itoa(i) + "]"
		entry, err := parseObject(e)
		if err != nil {
			errs = append(errs, FieldError{Field: prefix, Rule: "must be a JSON object"})
			continue
		}
		m, merrs := d.fields(entry, prefix+".", true, now)
		errs = append(errs, merrs...)
		if m.Key != "" {
			// A key repeated with the same message is that message again (the handler answers
			// the repeat as a duplicate); with a different message it is refused.
			if first, dup := keyAt[m.Key]; !dup {
				keyAt[m.Key], firstWith[m.Key] = i, m
			} else {
				for _, f := range tasks.Differences(firstWith[m.Key].intent(), m.intent(), now) {
					errs = append(errs, FieldError{Field: prefix + "." + f,
						Rule: fmt.Sprintf("differs from messages[%d], which has the same idempotency_key (one key, one message)", first)})
				}
			}
		}
		msgs = append(msgs, m)
	}
	if len(errs) > 0 {
		return nil, validationProblem("the batch breaks the rules below; nothing was enqueued", errs)
	}
	return msgs, nil
}

// fields checks one message object. The API's own keys (send_at, queue, and in a batch
// idempotency_key) are taken out; the rest must be exactly a tasks payload and goes through
// tasks.Decode, so unknown keys, types and every payload rule are judged by the same code as
// any other producer's.
func (d *decoder) fields(obj map[string]json.RawMessage, prefix string, batchItem bool, now time.Time) (message, []FieldError) {
	m := message{Queue: tasks.DefaultQueue}
	var errs []FieldError
	bad := func(field, rule string) { errs = append(errs, FieldError{Field: prefix + field, Rule: rule}) }

	if raw, ok := obj[keySendAt]; ok {
		delete(obj, keySendAt)
		if !isNull(raw) {
			var s string
			t, err := time.Time{}, json.Unmarshal(raw, &s)
			if err == nil {
				t, err = time.Parse(time.RFC3339, s)
			}
			if err != nil {
				bad(keySendAt, "must be an RFC 3339 time string, e.g. 2030-01-02T15:04:05Z")
			} else {
				m.SendAt = &t
			}
		}
	}
	if raw, ok := obj[keyQueue]; ok {
		delete(obj, keyQueue)
		if !isNull(raw) {
			var q string
			if err := json.Unmarshal(raw, &q); err != nil || !d.queues[q] {
				bad(keyQueue, "must be one of: "+d.queueList)
			} else {
				m.Queue = q
			}
		}
	}
	if raw, ok := obj[keyIdempotencyKey]; ok {
		delete(obj, keyIdempotencyKey)
		switch {
		case !batchItem:
			bad(keyIdempotencyKey, "is not a known key: send the key in the Idempotency-Key header")
		case isNull(raw):
		default:
			var k string
			if err := json.Unmarshal(raw, &k); err != nil {
				bad(keyIdempotencyKey, "must be a string")
			} else if rule := keyProblem(k); rule != "" {
				bad(keyIdempotencyKey, rule)
			} else {
				m.Key = k
			}
		}
	}

	rest, err := json.Marshal(obj)
	if err != nil {
		// RawMessages from a successful parse always re-marshal; keep the promise anyway.
		bad("payload", "must be a JSON object")
		return message{}, errs
	}
	p, err := tasks.Decode(rest)
	if err != nil {
		fe := fieldErrors(err, prefix)
		if fe == nil {
			fe = []FieldError{{Field: prefix + "payload", Rule: "is invalid"}}
		}
		errs = append(fe, errs...)
	} else {
		m.Payload = p
		if d.known != nil && !d.known(p.AccountSID) {
			bad("account_sid", "has no credentials in the workers' accounts file (PROXYQ_ACCOUNTS_FILE)")
		}
		// Mirror tasks.Enqueuer.Prepare so the 422 lists this with the other rules instead
		// of the enqueue failing later, and judge against real time rather than a past
		// send_at: a deadline already gone would only archive the message as expired.
		if p.SendBefore != nil {
			sched := now
			if m.SendAt != nil && m.SendAt.After(now) {
				sched = *m.SendAt
			}
			if !p.SendBefore.After(sched) {
				bad("send_before", "must be after send_at (or after now when send_at is absent or past)")
			}
		}
	}
	if len(errs) > 0 {
		return message{}, errs
	}
	return m, nil
}

// keyProblem returns the rule an idempotency key breaks, or "". On top of the tasks rules,
// "." and ".." are refused: as the last segment of /v1/message-interactions/{id} they would be
// resolved away by every URL library, so the message could never be looked up.
func keyProblem(key string) string {
	if err := tasks.ValidateIdempotencyKey(key); err != nil {
		var ve *tasks.ValidationError
		if errors.As(err, &ve) {
			return ve.Rule
		}
		return err.Error()
	}
	if key == "." || key == ".." {
		return "must not be . or .."
	}
	return ""
}

// idempotencyKeyHeader returns the Idempotency-Key header ("" when absent) or a 422.
func idempotencyKeyHeader(r *http.Request) (string, *Problem) {
	vals := r.Header.Values(headerIdempotencyKey)
	switch len(vals) {
	case 0:
		return "", nil
	case 1:
		if rule := keyProblem(vals[0]); rule != "" {
			return "", validationProblem("the Idempotency-Key header is invalid; nothing was enqueued",
				[]FieldError{{Field: headerIdempotencyKey, Rule: rule}})
		}
		return vals[0], nil
	default:
		return "", validationProblem("the Idempotency-Key header is invalid; nothing was enqueued",
			[]FieldError{{Field: headerIdempotencyKey, Rule: "must be given once"}})
	}
}

// parseObject parses data as exactly one JSON object. Duplicate keys keep the last value,
// as encoding/json does for structs.
func parseObject(data []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var obj map[string]json.RawMessage
	if err := dec.Decode(&obj); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the body is empty")
		}
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return nil, fmt.Errorf("got a JSON %s", typeErr.Value)
		}
		return nil, err
	}
	if obj == nil {
		return nil, errors.New("got JSON null")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("there is data after the object")
	}
	return obj, nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func sortedKeys(obj map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// readBody checks the content type and reads the body through the size limit. It returns
// 415 for anything but application/json (UTF-8, no content coding), 413 over the limit.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *Problem) {
	if p := checkContentType(r); p != nil {
		w.Header().Set("Accept-Post", "application/json")
		return nil, p
	}
	tooLarge := newProblem(http.StatusRequestEntityTooLarge, ProblemTooLarge,
		fmt.Sprintf("the request body must be at most %d bytes", limit))
	if r.ContentLength > limit {
		return nil, tooLarge
	}
	data, err := io.ReadAll(http.MaxBytesReader(unwrapWriter(w), r.Body, limit))
	if err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return nil, tooLarge
		}
		return nil, newProblem(http.StatusBadRequest, ProblemMalformed, "the request body could not be read")
	}
	return data, nil
}

func checkContentType(r *http.Request) *Problem {
	unsupported := func(detail string) *Problem {
		return newProblem(http.StatusUnsupportedMediaType, ProblemUnsupportedMedia, detail)
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return unsupported("Content-Encoding is not supported; send the JSON uncompressed")
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return unsupported("Content-Type must be application/json")
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return unsupported("Content-Type must be application/json")
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return unsupported("the only charset accepted is utf-8")
	}
	return nil
}

// unwrapWriter returns the server's own ResponseWriter under our wrappers, so that
// http.MaxBytesReader can tell the server to close the connection after an oversized body
// instead of reading the rest of it.
func unwrapWriter(w http.ResponseWriter) http.ResponseWriter {
	for {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w
		}
		w = u.Unwrap()
	}
}
