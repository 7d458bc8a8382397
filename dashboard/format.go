package dashboard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hibiken/asynqmon"

	"github.com/proxyq/proxyq/tasks"
)

// sidPattern is the shape of every Twilio SID: two capital letters and 32 hex digits. A value
// of that shape identifies a resource and carries no message content, so it is shown.
var sidPattern = regexp.MustCompile(`^[A-Z]{2}[0-9a-fA-F]{32}$`)

// RedactPayload is the default payload view: the task's JSON with every value replaced by a
// description of its size, except values that identify rather than say something — SID-shaped
// strings under keys ending in "_sid", and an RFC 3339 send_before. A proxyq payload therefore
// shows its service, session and participant SIDs and deadline, with
// "body": "[redacted: N chars]" and "media_url": "[redacted: N URLs]". Payloads of other task
// types get the same treatment: the dashboard cannot know what is personal data in them.
// A payload that is not a JSON object is replaced whole.
func RedactPayload(_ string, payload []byte) string {
	fields, err := objectFields(payload)
	if err != nil {
		return fmt.Sprintf("[redacted: %d bytes, not a JSON object]", len(payload))
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range fields {
		if i > 0 {
			b.WriteByte(',')
		}
		key, _ := json.Marshal(f.key)
		b.Write(key)
		b.WriteByte(':')
		b.Write(redactValue(f.key, f.value))
	}
	b.WriteByte('}')
	return indent(b.Bytes())
}

// FullPayload is the payload view with ShowMessageContent: the JSON indented, or asynqmon's
// default rendering when it is not JSON.
func FullPayload(taskType string, payload []byte) string {
	if json.Valid(payload) {
		return indent(payload)
	}
	return asynqmon.DefaultPayloadFormatter.FormatPayload(taskType, payload)
}

type field struct {
	key   string
	value json.RawMessage
}

// objectFields returns the top-level keys of a JSON object in their original order (a map
// would sort them, and the SIDs read best in the order the producer wrote them).
func objectFields(data []byte) ([]field, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("not an object")
	}
	var out []field
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out = append(out, field{key, v})
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, err
	}
	return out, nil
}

// redactValue returns the JSON to show for one top-level value.
func redactValue(key string, v json.RawMessage) []byte {
	var s string
	isString := json.Unmarshal(v, &s) == nil
	switch {
	case isString && strings.HasSuffix(key, "_sid") && sidPattern.MatchString(s):
		return v
	case isString && key == "send_before":
		if _, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return v
		}
	case bytes.Equal(v, []byte("null")), bytes.Equal(v, []byte("true")), bytes.Equal(v, []byte("false")):
		return v
	}
	return quote(describe(key, v))
}

// describe says what was removed, so the view still tells an empty body from a long one.
func describe(key string, v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return fmt.Sprintf("[redacted: %d chars]", utf8.RuneCountInString(s))
	}
	var list []json.RawMessage
	if json.Unmarshal(v, &list) == nil {
		if key == "media_url" {
			if len(list) == 1 {
				return "[redacted: 1 URL]"
			}
			return fmt.Sprintf("[redacted: %d URLs]", len(list))
		}
		return fmt.Sprintf("[redacted: %d items]", len(list))
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(v, &obj) == nil {
		return fmt.Sprintf("[redacted: object with %d keys]", len(obj))
	}
	return "[redacted]"
}

func quote(s string) []byte {
	b, _ := json.Marshal(s)
	return b
}

func indent(data []byte) string {
	var b bytes.Buffer
	if err := json.Indent(&b, data, "", "  "); err != nil {
		return string(data)
	}
	return b.String()
}

// FormatResult shows a proxyq outcome record (tasks.Outcome, kept compact in Redis) as indented
// JSON with its documented keys, led by a "summary" line in words (see Summary), e.g. "sent, 1
// attempt". Results of other task types, or results that are not an outcome record, get
// asynqmon's default rendering.
func FormatResult(taskType string, result []byte) string {
	// asynqmon's task-details view passes an empty task type (asynqmon v0.7.2,
	// conversion_helpers.go), so "" is read as "maybe ours" and the record's state decides.
	if taskType != tasks.TypeSendInteraction && taskType != "" {
		return asynqmon.DefaultResultFormatter.FormatResult(taskType, result)
	}
	o, err := tasks.ParseOutcome(result)
	if err != nil || o == nil || !knownState[o.State] {
		return asynqmon.DefaultResultFormatter.FormatResult(taskType, result)
	}
	record, err := json.Marshal(o)
	if err != nil {
		return asynqmon.DefaultResultFormatter.FormatResult(taskType, result)
	}
	var b bytes.Buffer
	b.WriteString(`{"summary":`)
	b.Write(quote(Summary(o)))
	b.WriteByte(',')
	b.Write(record[1:])
	return indent(b.Bytes())
}

var knownState = map[string]bool{
	tasks.OutcomeSent: true, tasks.OutcomeFailed: true, tasks.OutcomeExpired: true, tasks.OutcomeUnknown: true,
}

// Summary is a short line in words for an outcome record, e.g. "sent, 1 attempt" or
// "failed: Twilio 20404 (HTTP 404), not retried". It is kept short because asynqmon shows
// results in a narrow box; the record's keys below it carry the details.
func Summary(o *tasks.Outcome) string {
	attempts := plural(o.Attempts, "attempt")
	switch o.State {
	case tasks.OutcomeSent:
		if o.Reconciled {
			return "sent (found by reconciliation), " + attempts + deliverySummary(o)
		}
		return "sent, " + attempts + deliverySummary(o)
	case tasks.OutcomeFailed:
		if o.ErrorCode != 0 || o.HTTPStatus != 0 {
			return fmt.Sprintf("failed: Twilio %d (HTTP %d), not retried", o.ErrorCode, o.HTTPStatus)
		}
		return "failed, not retried"
	case tasks.OutcomeExpired:
		return "expired: deadline passed, not sent"
	case tasks.OutcomeUnknown:
		return "unknown: may have been sent; reconciling before any resend"
	}
	return o.State + ", " + attempts
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
