package jsonl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/proxyq/proxyq/tasks"
)

// Problem is one invalid field of one message. Line is the input line, from 1; 0 for a message
// not read from lines (proxyq enqueue's flag mode).
type Problem struct {
	Line  int
	Field string // the JSON key, e.g. "participant_sid" or "media_url[2]"
	Rule  string // the rule it broke
}

// String is "line N: field: rule".
func (p Problem) String() string { return fmt.Sprintf("line %d: %s: %s", p.Line, p.Field, p.Rule) }

// Read reads and validates every JSON line of r, each message prepared by enq with the
// options base first. It returns the messages with their line numbers (from 1), or the
// problems of every bad line; err is for input that cannot be read. Blank lines are skipped,
// and a UTF-8 byte order mark before the first line is ignored.
func Read(r io.Reader, enq *tasks.Enqueuer, base []tasks.Option) ([]tasks.Message, []int, []Problem, error) {
	lr := newLineReader(r, tasks.MaxPayloadBytes)
	var msgs []tasks.Message
	var lines []int
	var problems []Problem
	for n := 1; ; n++ {
		line, tooLong, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, nil, err
		}
		if n == 1 {
			line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf")) // a UTF-8 byte order mark
		}
		if tooLong {
			problems = append(problems, Problem{n, "payload", fmt.Sprintf("line is longer than %d bytes", tasks.MaxPayloadBytes)})
			continue
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		// A key on several lines is judged by the batch (tasks.Enqueuer.CheckBatch): the same
		// message is one message, a different one a problem naming both lines.
		msg, _, probs := ParseLine(enq, n, line, base)
		if len(probs) > 0 {
			problems = append(problems, probs...)
			continue
		}
		msgs = append(msgs, msg)
		lines = append(lines, n)
	}
	return msgs, lines, problems, nil
}

// ExtraKeys are the keys a JSON line may carry besides the payload's: the enqueue options.
var ExtraKeys = map[string]bool{"idempotency_key": true, "send_at": true, "queue": true}

// ParseLine splits JSON line n into the payload (validated by tasks.Decode, with its
// exact-key rules) and the enqueue options (ExtraKeys), and prepares the message with enq. It
// returns the message, its idempotency key ("" if none) and the problems of the line, if any.
func ParseLine(enq *tasks.Enqueuer, n int, line []byte, base []tasks.Option) (tasks.Message, string, []Problem) {
	bad := func(field, rule string) (tasks.Message, string, []Problem) {
		return tasks.Message{}, "", []Problem{{n, field, rule}}
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return bad("payload", "must be a JSON object")
	}
	var payload bytes.Buffer
	payload.WriteByte('{')
	extras := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return bad("payload", "is not valid JSON: "+err.Error())
		}
		key, _ := tok.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return bad("payload", "is not valid JSON: "+err.Error())
		}
		if !ExtraKeys[key] {
			if payload.Len() > 1 {
				payload.WriteByte(',')
			}
			k, _ := json.Marshal(key)
			payload.Write(k)
			payload.WriteByte(':')
			payload.Write(value)
			continue
		}
		if _, dup := extras[key]; dup {
			return bad(key, "must appear only once")
		}
		var s string
		if err := json.Unmarshal(value, &s); err != nil {
			return bad(key, "must be a JSON string")
		}
		extras[key] = s
	}
	if _, err := dec.Token(); err != nil {
		return bad("payload", "is not valid JSON: "+err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return bad("payload", "must be a single JSON object per line")
	}
	payload.WriteByte('}')

	p, err := tasks.Decode(payload.Bytes())
	if err != nil {
		return tasks.Message{}, "", ProblemsOf(n, err)
	}
	opts, key, problems := ExtraOptions(n, base, extras)
	if problems != nil {
		return tasks.Message{}, "", problems
	}
	if _, _, err := enq.Prepare(p, opts...); err != nil {
		return tasks.Message{}, "", ProblemsOf(n, err)
	}
	return tasks.Message{Payload: p, Options: opts}, key, nil
}

// ExtraOptions is base followed by the options line n's extra keys (ExtraKeys: queue, send_at,
// idempotency_key) ask for, and the line's idempotency key ("" when it has none). A send_at
// that is not an RFC 3339 time is the line's problem. Both APIs' lines read their extras here.
func ExtraOptions(n int, base []tasks.Option, extras map[string]string) ([]tasks.Option, string, []Problem) {
	opts := append([]tasks.Option(nil), base...)
	if q, ok := extras["queue"]; ok {
		opts = append(opts, tasks.Queue(q))
	}
	if at, ok := extras["send_at"]; ok {
		t, err := time.Parse(time.RFC3339, at)
		if err != nil {
			return nil, "", []Problem{{n, "send_at", "must be an RFC 3339 time such as 2025-01-02T15:04:05Z"}}
		}
		opts = append(opts, tasks.ProcessAt(t))
	}
	key, hasKey := extras["idempotency_key"]
	if hasKey {
		opts = append(opts, tasks.IdempotencyKey(key))
	}
	return opts, key, nil
}

// lineReader reads lines of at most max bytes (newline excluded) without holding a longer one
// in memory: the rest of an over-long line is skipped and reported.
type lineReader struct {
	r   *bufio.Reader
	max int
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// next returns the next line without its line ending, or tooLong (and no line) when it was
// longer than max. It returns io.EOF after the last line.
func (lr *lineReader) next() (line []byte, tooLong bool, err error) {
	var buf []byte
	read := false
	for {
		chunk, err := lr.r.ReadSlice('\n')
		read = read || len(chunk) > 0
		if !tooLong {
			buf = append(buf, chunk...)
			if len(buf) > lr.max+2 { // room for "\r\n"
				tooLong, buf = true, nil
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if !read {
				return nil, false, io.EOF
			}
		case err != nil:
			return nil, false, err
		}
		break
	}
	if tooLong {
		return nil, true, nil
	}
	buf = bytes.TrimSuffix(buf, []byte("\n"))
	buf = bytes.TrimSuffix(buf, []byte("\r"))
	if len(buf) > lr.max {
		return nil, true, nil
	}
	return buf, false, nil
}

// ProblemsOf turns a validation error from tasks into problems for one line (0: not from a
// file).
func ProblemsOf(line int, err error) []Problem {
	var many tasks.ValidationErrors
	var one *tasks.ValidationError
	switch {
	case errors.As(err, &many):
		out := make([]Problem, len(many))
		for i, v := range many {
			out[i] = Problem{line, v.Field, v.Rule}
		}
		return out
	case errors.As(err, &one):
		return []Problem{{line, one.Field, one.Rule}}
	case errors.Is(err, tasks.ErrPayloadTooLarge):
		return []Problem{{line, "payload", fmt.Sprintf("must be at most %d bytes of JSON", tasks.MaxPayloadBytes)}}
	default:
		return []Problem{{line, "payload", err.Error()}}
	}
}

// BatchProblems turns a batch check error from tasks into problems for the input lines
// (lines[i] is the line of message i; 0 in flag mode). A key repeated with a different
// message names both lines. nil for a nil error.
func BatchProblems(err error, lines []int) []Problem {
	if err == nil {
		return nil
	}
	var all tasks.BatchErrors
	if !errors.As(err, &all) {
		var one *tasks.BatchError
		if !errors.As(err, &one) {
			return []Problem{{0, "payload", err.Error()}}
		}
		all = tasks.BatchErrors{one}
	}
	var out []Problem
	for _, be := range all {
		line := 0
		if be.Index < len(lines) {
			line = lines[be.Index]
		}
		var reuse *tasks.KeyReuseError
		if errors.As(be.Err, &reuse) && reuse.First < len(lines) {
			out = append(out, Problem{line, "idempotency_key", fmt.Sprintf(
				"repeats the key of line %d with a different message (%s); one key names one message",
				lines[reuse.First], tasks.DiffersText(reuse.Fields))})
			continue
		}
		out = append(out, ProblemsOf(line, be.Err)...)
	}
	return out
}
