package enqueuecli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/tasks/jsonl"
)

// ConversationFlags describe a Conversations message; --conversation chooses that API. They
// cannot be combined with the Proxy-only flags (ProxyOnlyFlags) nor with --file.
var ConversationFlags = []string{"conversation", "chat-service", "author", "media-sid", "content-sid", "content-variables", "attributes", "no-webhooks"}

// ProxyOnlyFlags describe only a Proxy message.
var ProxyOnlyFlags = []string{"service", "session", "participant", "media-url"}

// flagOfConversationField names the flag behind a Conversations payload field in flag mode.
var flagOfConversationField = map[string]string{
	"conversation_sid": "--conversation", "service_sid": "--chat-service", "author": "--author",
	"body": "--body", "media_sid": "--media-sid", "content_sid": "--content-sid",
	"content_variables": "--content-variables", "attributes": "--attributes", "webhook_enabled": "--no-webhooks",
	"idempotency_key": "--idempotency-key", "queue": "--queue", "send_before": "--send-within",
	"ordering_key": "--ordering-key", "account_sid": "--account",
}

// Conversation reports whether the flags describe a Conversations message.
func (f Flags) Conversation() bool {
	for _, name := range ConversationFlags {
		if f.Set[name] {
			return true
		}
	}
	return false
}

// checkAPI refuses flags of both APIs, and Conversations flags without --conversation.
func (f Flags) checkAPI() error {
	if !f.Conversation() {
		return nil
	}
	var proxy []string
	for _, name := range ProxyOnlyFlags {
		if f.Set[name] {
			proxy = append(proxy, "--"+name)
		}
	}
	switch {
	case len(proxy) > 0:
		return fmt.Errorf("%s cannot be combined with Conversations flags (--conversation …): a message goes to one API; for a Conversation Service give --chat-service IS…, for media --media-sid ME…", strings.Join(proxy, ", "))
	case !f.Set["conversation"]:
		return errors.New("--conversation CH… is required with --chat-service, --author, --media-sid, --content-sid, --content-variables, --attributes and --no-webhooks")
	}
	return nil
}

// ConversationMessage is one Conversations message with its enqueue options.
type ConversationMessage struct {
	Payload tasks.ConversationPayload
	Options []tasks.Option
}

// ConversationMessage builds the one Conversations message of flag mode. Invalid values are
// problems (Line 0) whose Field is the flag; err is a usage error not about one field.
func (f Flags) ConversationMessage(enq *tasks.Enqueuer, base []tasks.Option) (ConversationMessage, []jsonl.Problem, error) {
	opts, err := f.timeOptions(base)
	if err != nil {
		return ConversationMessage{}, nil, err
	}
	p := tasks.ConversationPayload{ConversationSID: f.ConversationSID, ServiceSID: f.ChatService, Author: f.Author,
		Body: f.Body, MediaSID: f.MediaSID, ContentSID: f.ContentSID, AccountSID: f.Account, OrderingKey: f.OrderingKey}
	var problems []jsonl.Problem
	for _, raw := range []struct {
		flag, value string
		dst         *json.RawMessage
	}{{"--content-variables", f.ContentVariables, &p.ContentVariables}, {"--attributes", f.Attributes, &p.Attributes}} {
		if !f.Set[strings.TrimPrefix(raw.flag, "--")] {
			continue
		}
		if !json.Valid([]byte(raw.value)) {
			problems = append(problems, jsonl.Problem{Field: raw.flag, Rule: `must be a JSON object, e.g. '{"1":"Ada"}'`})
			continue
		}
		*raw.dst = json.RawMessage(raw.value)
	}
	if f.NoWebhooks {
		off := false
		p.WebhookEnabled = &off
	}
	// Every other field is checked too (a malformed JSON flag was left out), so one run names
	// every problem.
	if _, _, err := enq.PrepareConversation(p, opts...); err != nil {
		problems = append(problems, jsonl.ProblemsOf(0, err)...)
	}
	for i := range problems {
		if flag, ok := flagOfConversationField[problems[i].Field]; ok {
			problems[i].Field = flag
		}
	}
	if len(problems) > 0 {
		return ConversationMessage{}, problems, nil
	}
	return ConversationMessage{Payload: p, Options: opts}, nil, nil
}

// Item is one message of the input: a Proxy message or a Conversations message, with its
// input line (0 in flag mode).
type Item struct {
	Line  int
	Proxy *tasks.Message
	Conv  *ConversationMessage
	key   string // the line's idempotency key, for the file's repeated-key rule
	text  []byte // the line, for the same rule
}

// ReadFile reads JSON lines as jsonl.Read does, with one more kind of line: a line with the
// key conversation_sid is a Conversations message, decoded by tasks.DecodeConversation (with
// the same extra keys idempotency_key, send_at and queue). Every problem names its line.
func ReadFile(r io.Reader, enq *tasks.Enqueuer, base []tasks.Option) ([]Item, []jsonl.Problem, error) {
	br := bufio.NewReader(r)
	var items []Item
	var problems []jsonl.Problem
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(line) == 0 && errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if n == 1 {
			line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf"))
		}
		switch {
		case len(line) > tasks.MaxPayloadBytes:
			problems = append(problems, jsonl.Problem{Line: n, Field: "payload", Rule: fmt.Sprintf("line is longer than %d bytes", tasks.MaxPayloadBytes)})
		case len(bytes.TrimSpace(line)) == 0:
		case isConversationLine(line):
			c, key, probs := parseConversationLine(enq, n, line, base)
			problems = append(problems, probs...)
			if len(probs) == 0 {
				items = append(items, Item{Line: n, Conv: &c, key: key, text: append([]byte(nil), line...)})
			}
		default:
			msg, key, probs := jsonl.ParseLine(enq, n, line, base)
			problems = append(problems, probs...)
			if len(probs) == 0 {
				items = append(items, Item{Line: n, Proxy: &msg, key: key, text: append([]byte(nil), line...)})
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	return items, append(problems, keyProblems(items)...), nil
}

// isConversationLine reports whether a line is a JSON object with the key conversation_sid.
// A line that is not a JSON object is left to jsonl, which names the problem.
func isConversationLine(line []byte) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(line, &m) != nil {
		return false
	}
	_, ok := m["conversation_sid"]
	return ok
}

// parseConversationLine is jsonl.ParseLine for a Conversations message.
func parseConversationLine(enq *tasks.Enqueuer, n int, line []byte, base []tasks.Option) (ConversationMessage, string, []jsonl.Problem) {
	bad := func(field, rule string) (ConversationMessage, string, []jsonl.Problem) {
		return ConversationMessage{}, "", []jsonl.Problem{{Line: n, Field: field, Rule: rule}}
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(line, &fields); err != nil {
		return bad("payload", "is not valid JSON: "+err.Error())
	}
	extras := map[string]string{}
	for key := range jsonl.ExtraKeys {
		raw, ok := fields[key]
		if !ok {
			continue
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return bad(key, "must be a JSON string")
		}
		extras[key] = s
		delete(fields, key)
	}
	// The payload keeps the line's keys and order rules: DecodeConversation refuses unknown and
	// repeated keys, so the line is re-read without the extra keys.
	payload, err := withoutKeys(line, jsonl.ExtraKeys)
	if err != nil {
		return bad("payload", "is not valid JSON: "+err.Error())
	}
	p, err := tasks.DecodeConversation(payload)
	if err != nil {
		return ConversationMessage{}, "", jsonl.ProblemsOf(n, err)
	}
	opts, key, problems := jsonl.ExtraOptions(n, base, extras)
	if problems != nil {
		return ConversationMessage{}, "", problems
	}
	if _, _, err := enq.PrepareConversation(p, opts...); err != nil {
		return ConversationMessage{}, "", jsonl.ProblemsOf(n, err)
	}
	return ConversationMessage{Payload: p, Options: opts}, key, nil
}

// withoutKeys re-encodes a JSON object's members in order, leaving out drop's keys (repeated
// keys are kept, for DecodeConversation to refuse).
func withoutKeys(line []byte, drop map[string]bool) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	var out bytes.Buffer
	out.WriteByte('{')
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, err
		}
		if drop[key] {
			continue
		}
		if out.Len() > 1 {
			out.WriteByte(',')
		}
		k, _ := json.Marshal(key)
		out.Write(k)
		out.WriteByte(':')
		out.Write(value)
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("must be a single JSON object per line")
	}
	out.WriteByte('}')
	return out.Bytes(), nil
}

// keyProblems applies the file's repeated-key rule to Conversations lines (Proxy lines among
// themselves are judged by tasks.Enqueuer.CheckBatch): a key on a Conversations line may repeat
// only on identical lines, which are then one message.
func keyProblems(items []Item) []jsonl.Problem {
	first := map[string]Item{}
	var out []jsonl.Problem
	for _, it := range items {
		if it.key == "" {
			continue
		}
		prev, seen := first[it.key]
		if !seen {
			first[it.key] = it
			continue
		}
		if (prev.Conv != nil || it.Conv != nil) && !bytes.Equal(bytes.TrimSpace(prev.text), bytes.TrimSpace(it.text)) {
			out = append(out, jsonl.Problem{Line: it.Line, Field: "idempotency_key", Rule: fmt.Sprintf(
				"repeats the key of line %d with a different message; one key names one message", prev.Line)})
		}
	}
	return out
}

// ProxyMessages returns the Proxy messages of items with their lines, for the batch checks.
func ProxyMessages(items []Item) ([]tasks.Message, []int) {
	var msgs []tasks.Message
	var lines []int
	for _, it := range items {
		if it.Proxy != nil {
			msgs = append(msgs, *it.Proxy)
			lines = append(lines, it.Line)
		}
	}
	return msgs, lines
}

// CheckConversationAccounts is Validate's account rule for the Conversations items.
func CheckConversationAccounts(items []Item, known func(string) bool) []jsonl.Problem {
	var out []jsonl.Problem
	for _, it := range items {
		if known != nil && it.Conv != nil && !known(it.Conv.Payload.AccountSID) {
			out = append(out, jsonl.Problem{Line: it.Line, Field: "account_sid", Rule: "has no credentials in PROXYQ_ACCOUNTS_FILE (nor is it TWILIO_ACCOUNT_SID): a worker would archive it"})
		}
	}
	return out
}

// EnqueueItems enqueues items in input order: each run of Proxy messages in one EnqueueBatch,
// each Conversations message with EnqueueConversation, so that lanes (ordering_key) get the
// file's order whichever API a line is for. results are in input order; on error, the ones
// enqueued so far have a TaskID.
func EnqueueItems(ctx context.Context, enq *tasks.Enqueuer, items []Item) ([]tasks.Result, error) {
	results := make([]tasks.Result, len(items))
	for i := 0; i < len(items); {
		if c := items[i].Conv; c != nil {
			res, err := enq.EnqueueConversation(ctx, c.Payload, c.Options...)
			if err != nil {
				return results, err
			}
			results[i] = res
			i++
			continue
		}
		j := i
		var batch []tasks.Message
		for ; j < len(items) && items[j].Proxy != nil; j++ {
			batch = append(batch, *items[j].Proxy)
		}
		res, err := enq.EnqueueBatch(ctx, batch)
		copy(results[i:], res)
		if err != nil {
			return results, err
		}
		i = j
	}
	return results, nil
}
