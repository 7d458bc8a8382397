package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/proxyq/proxyq/tasks"
)

const enqueueDoc = `
Enqueues messages for the workers and prints one task ID per message, in input order.

One message from flags:
  proxyq enqueue --service KS… --session KC… --participant KP… --body "Your driver is here"

Many messages as JSON lines (--file PATH, or --file - for stdin), one object per line with the
payload keys (service_sid, session_sid, participant_sid, body, media_url, send_before,
account_sid, ordering_key) and
optionally idempotency_key, send_at (RFC 3339) and queue:
  {"service_sid":"KS…","session_sid":"KC…","participant_sid":"KP…","body":"hi","idempotency_key":"order-42"}
Blank lines are skipped. --queue and --send-within apply to every line that does not say
otherwise; the other message flags cannot be combined with --file.

Every message is validated before anything is enqueued: if any is invalid, each problem is
printed as "line N: field: rule" on stderr, nothing is enqueued, and the exit code is 2.

--ordering-key K (ordering_key in JSON lines) puts messages in a lane: messages of one queue
with the same key are created at Twilio in the order they were enqueued, one at a time (a file's
lines in file order). Keys are 1-128 characters of A-Z a-z 0-9 . _ : - (e.g. the participant SID).

An idempotency key becomes the task ID and names one message whatever the queue. Enqueuing a
key that is already in use, on any queue, enqueues nothing new, prints the existing ID
("duplicate": true with --json, and the queue that holds it) and exits 0. The same key on
several lines of one --file is one message when the lines are the same message (same SIDs,
body, media URLs, send_before, queue and pending send_at): the later lines print the same ID
as duplicates. With different messages it is a problem naming both lines, and nothing is
enqueued.

PROXYQ_MAX_RETRY (default 25) and PROXYQ_RETENTION (default 72h) set how many failed attempts a
message gets and how long its outcome stays readable.

Exit codes: 0 enqueued (or duplicate); 1 Redis failed; 2 invalid input or configuration,
nothing enqueued.`

func init() {
	register(&command{name: "enqueue", summary: "enqueue messages from flags or JSON lines", run: runEnqueue})
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// messageFlags are the flags that describe one message; they cannot be combined with --file.
var messageFlags = []string{"service", "session", "participant", "body", "media-url", "idempotency-key", "at", "in", "ordering-key", "account"}

// flagOfField names the flag behind a payload field in flag mode.
var flagOfField = map[string]string{
	"service_sid": "--service", "session_sid": "--session", "participant_sid": "--participant",
	"body": "--body", "media_url": "--media-url", "idempotency_key": "--idempotency-key",
	"queue": "--queue", "send_before": "--send-within", "ordering_key": "--ordering-key",
	"account_sid": "--account",
}

type enqueueFlags struct {
	service, session, participant, body string
	account                             string
	media                               stringList
	key, at, queue, file                string
	orderingKey                         string
	in, sendWithin                      time.Duration
	json                                bool
	set                                 map[string]bool
}

// problem is one invalid field of one message. line is 0 in flag mode.
type problem struct {
	line  int
	field string
	rule  string
}

func (p problem) String() string {
	if p.line == 0 {
		name := p.field
		if f, ok := flagOfField[p.field]; ok {
			name = f
		} else if strings.HasPrefix(p.field, "media_url[") {
			name = "--media-url " + strings.TrimPrefix(p.field, "media_url")
		}
		return name + ": " + p.rule
	}
	return fmt.Sprintf("line %d: %s: %s", p.line, p.field, p.rule)
}

func runEnqueue(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSetDoc("enqueue", "enqueue (--service KS… --session KC… --participant KP… --body TEXT | --file PATH|-) [flags]", enqueueDoc)
	var f enqueueFlags
	fs.StringVar(&f.service, "service", "", "Proxy Service SID (KS…)")
	fs.StringVar(&f.session, "session", "", "Proxy Session SID (KC…)")
	fs.StringVar(&f.participant, "participant", "", "Proxy Participant SID (KP…), the recipient")
	fs.StringVar(&f.body, "body", "", "message text, at most 1600 characters")
	fs.Var(&f.media, "media-url", "absolute http(s) media URL (repeatable, at most 10)")
	fs.StringVar(&f.key, "idempotency-key", "", "caller's key for the message; becomes the task ID")
	fs.StringVar(&f.orderingKey, "ordering-key", "", "lane key: messages with the same key (and queue) are sent in enqueue order, one at a time")
	fs.StringVar(&f.at, "at", "", "send no earlier than this RFC 3339 time, e.g. 2025-01-02T15:04:05Z")
	fs.DurationVar(&f.in, "in", 0, "send no earlier than this long from now, e.g. 10m")
	fs.StringVar(&f.queue, "queue", "", `queue name (default "default"); with --file, for lines without "queue"`)
	fs.DurationVar(&f.sendWithin, "send-within", 0, "deadline after the send time; unsent by then, the message expires (default: the worker's PROXYQ_SEND_WITHIN)")
	fs.StringVar(&f.account, "account", "", "Twilio account (AC…) to send with; default: the worker's TWILIO_ACCOUNT_SID")
	fs.StringVar(&f.file, "file", "", `read messages as JSON lines from PATH, or "-" for stdin`)
	fs.BoolVar(&f.json, "json", false, `print {"id","queue","duplicate"} per message instead of the bare ID`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (messages come from flags or --file)", fs.Arg(0))
	}
	f.set = map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })

	var given []string
	for _, name := range messageFlags {
		if f.set[name] {
			given = append(given, "--"+name)
		}
	}
	switch {
	case f.set["file"] && len(given) > 0:
		return usagef("--file cannot be combined with %s: put message fields in the JSON lines", strings.Join(given, ", "))
	case f.set["file"] && f.file == "":
		return usagef(`--file needs a path, or "-" for stdin`)
	case !f.set["file"] && len(given) == 0:
		return usagef("no message: give --service, --session, --participant and --body (or --media-url), or --file (see --help)")
	case f.in < 0 || f.sendWithin < 0:
		return usagef("--in and --send-within must not be negative")
	case f.set["queue"] && strings.TrimSpace(f.queue) == "":
		return usagef("--queue must not be empty")
	}

	base, err := m.enqueueOptionsFromEnv()
	if err != nil {
		return err
	}
	base = append(base, tasks.Via("cli"))
	if f.set["queue"] {
		base = append(base, tasks.Queue(f.queue))
	}
	if f.sendWithin > 0 {
		base = append(base, tasks.SendWithin(f.sendWithin))
	}
	redisOpt, err := m.redisFromEnv()
	if err != nil {
		return err
	}
	tr, err := m.startTracing(ctx, "enqueue", func(err error) { fmt.Fprintf(m.Stderr, "proxyq enqueue: %v\n", err) })
	if err != nil {
		return err
	}
	defer tr.stop()
	ctx, span := m.commandSpan(ctx, "enqueue") // TRACEPARENT, when set, is its parent
	defer span.End()
	enqOpts, err := m.enqueuerOptionsFromEnv()
	if err != nil {
		return err
	}
	enq := tasks.NewEnqueuer(redisOpt, enqOpts...)
	defer enq.Close()

	// Validate every message before Redis is touched: bad input exits 2 with nothing enqueued,
	// whether or not Redis is up.
	var msgs []tasks.Message
	var lines []int // input line of each message (0 in flag mode)
	var problems []problem
	if f.set["file"] {
		msgs, lines, problems, err = m.readMessageLines(enq, f.file, base)
		if err != nil {
			return err
		}
	} else {
		var msg tasks.Message
		msg, problems, err = messageFromFlags(enq, f, base)
		if err != nil {
			return err
		}
		msgs, lines = []tasks.Message{msg}, []int{0}
	}
	known, _, err := m.knownAccount()
	if err != nil {
		return err
	}
	problems = append(problems, unknownAccountProblems(known, msgs, lines)...)
	if len(problems) == 0 {
		problems = batchProblems(enq.CheckBatch(msgs), lines)
	}
	if len(problems) > 0 {
		return reportProblems(m, problems, f.set["file"])
	}
	if len(msgs) == 0 {
		return nil // an empty file or stdin: nothing to do
	}

	if err := m.pingRedis(ctx, redisOpt); err != nil {
		return err
	}
	results, err := enq.EnqueueBatch(ctx, msgs)
	if err != nil {
		var batchErr *tasks.BatchError
		if errors.As(err, &batchErr) && batchErr.Index < len(lines) {
			// CheckBatch passed, so this is a rule only the batch checks.
			return reportProblems(m, batchProblems(err, lines), f.set["file"])
		}
		done := 0
		for _, r := range results {
			if r.TaskID != "" {
				done++
			}
		}
		return fmt.Errorf("%w (%d of %d messages were enqueued; running the same input again is safe for messages with an idempotency key)", err, done, len(msgs))
	}
	return printResults(m.Stdout, results, f.json)
}

func reportProblems(m *Main, problems []problem, fromFile bool) error {
	const maxShown = 1000 // a binary file fed by mistake must not flood the terminal
	for i, p := range problems {
		if i == maxShown {
			fmt.Fprintf(m.Stderr, "… and %d more problems\n", len(problems)-maxShown)
			break
		}
		fmt.Fprintln(m.Stderr, p.String())
	}
	if !fromFile {
		return usagef("invalid message; nothing was enqueued")
	}
	bad := map[int]bool{}
	for _, p := range problems {
		bad[p.line] = true
	}
	return usagef("%d invalid line(s); nothing was enqueued", len(bad))
}

func printResults(w io.Writer, results []tasks.Result, asJSON bool) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for _, r := range results {
		if asJSON {
			if err := enc.Encode(struct {
				ID        string `json:"id"`
				Queue     string `json:"queue"`
				Duplicate bool   `json:"duplicate"`
			}{r.TaskID, r.Queue, r.Duplicate}); err != nil {
				return err
			}
		} else {
			fmt.Fprintln(bw, r.TaskID)
		}
	}
	return bw.Flush()
}

// messageFromFlags builds the one message of flag mode. Invalid values are problems; err is
// for usage errors that are not about a field.
func messageFromFlags(enq *tasks.Enqueuer, f enqueueFlags, base []tasks.Option) (tasks.Message, []problem, error) {
	opts := append([]tasks.Option(nil), base...)
	switch {
	case f.set["at"] && f.set["in"]:
		return tasks.Message{}, nil, usagef("--at and --in cannot be combined: give one send time")
	case f.set["at"]:
		at, err := time.Parse(time.RFC3339, strings.TrimSpace(f.at))
		if err != nil {
			return tasks.Message{}, nil, usagef("--at=%q: want an RFC 3339 time such as 2025-01-02T15:04:05Z", f.at)
		}
		opts = append(opts, tasks.ProcessAt(at))
	case f.in > 0:
		opts = append(opts, tasks.ProcessIn(f.in))
	}
	if f.set["idempotency-key"] {
		opts = append(opts, tasks.IdempotencyKey(f.key))
	}
	p := tasks.Payload{ServiceSID: f.service, SessionSID: f.session, ParticipantSID: f.participant,
		Body: f.body, MediaURLs: f.media, AccountSID: f.account}
	if f.set["ordering-key"] {
		if err := tasks.ValidateOrderingKey(f.orderingKey); err != nil {
			return tasks.Message{}, problemsOf(0, err), nil
		}
		p.OrderingKey = f.orderingKey
	}
	if _, _, err := enq.Prepare(p, opts...); err != nil {
		return tasks.Message{}, problemsOf(0, err), nil
	}
	return tasks.Message{Payload: p, Options: opts}, nil, nil
}

// problemsOf turns a validation error from tasks into problems for one line.
func problemsOf(line int, err error) []problem {
	var many tasks.ValidationErrors
	var one *tasks.ValidationError
	switch {
	case errors.As(err, &many):
		out := make([]problem, len(many))
		for i, v := range many {
			out[i] = problem{line, v.Field, v.Rule}
		}
		return out
	case errors.As(err, &one):
		return []problem{{line, one.Field, one.Rule}}
	case errors.Is(err, tasks.ErrPayloadTooLarge):
		return []problem{{line, "payload", fmt.Sprintf("must be at most %d bytes of JSON", tasks.MaxPayloadBytes)}}
	default:
		return []problem{{line, "payload", err.Error()}}
	}
}

// readMessageLines reads and validates every JSON line of path ("-": stdin). It returns the
// messages with their line numbers, or the problems of every bad line; err is for a file that
// cannot be read.
func (m *Main) readMessageLines(enq *tasks.Enqueuer, path string, base []tasks.Option) ([]tasks.Message, []int, []problem, error) {
	var r io.Reader = m.Stdin
	if path != "-" {
		file, err := os.Open(path)
		if err != nil {
			return nil, nil, nil, usageError{fmt.Errorf("--file: %w", err)}
		}
		defer file.Close()
		r = file
	}
	lr := newLineReader(r, tasks.MaxPayloadBytes)
	var msgs []tasks.Message
	var lines []int
	var problems []problem
	for n := 1; ; n++ {
		line, tooLong, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, nil, fmt.Errorf("read --file: %w", err)
		}
		if n == 1 {
			line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf")) // a UTF-8 byte order mark
		}
		if tooLong {
			problems = append(problems, problem{n, "payload", fmt.Sprintf("line is longer than %d bytes", tasks.MaxPayloadBytes)})
			continue
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		// A key on several lines is judged by the batch (tasks.Enqueuer.CheckBatch): the same
		// message is one message, a different one a problem naming both lines.
		msg, _, probs := parseMessageLine(enq, n, line, base)
		if len(probs) > 0 {
			problems = append(problems, probs...)
			continue
		}
		msgs = append(msgs, msg)
		lines = append(lines, n)
	}
	return msgs, lines, problems, nil
}

// lineExtraKeys are the keys a JSON line may carry besides the payload's.
var lineExtraKeys = map[string]bool{"idempotency_key": true, "send_at": true, "queue": true}

// parseMessageLine splits one JSON line into the payload (validated by tasks.Decode, with its
// exact-key rules) and the enqueue options, and prepares the message. It returns the problems
// of the line, if any.
func parseMessageLine(enq *tasks.Enqueuer, n int, line []byte, base []tasks.Option) (tasks.Message, string, []problem) {
	bad := func(field, rule string) (tasks.Message, string, []problem) {
		return tasks.Message{}, "", []problem{{n, field, rule}}
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
		if !lineExtraKeys[key] {
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
		return tasks.Message{}, "", problemsOf(n, err)
	}
	opts := append([]tasks.Option(nil), base...)
	if q, ok := extras["queue"]; ok {
		opts = append(opts, tasks.Queue(q))
	}
	if at, ok := extras["send_at"]; ok {
		t, err := time.Parse(time.RFC3339, at)
		if err != nil {
			return bad("send_at", "must be an RFC 3339 time such as 2025-01-02T15:04:05Z")
		}
		opts = append(opts, tasks.ProcessAt(t))
	}
	key, hasKey := extras["idempotency_key"]
	if hasKey {
		opts = append(opts, tasks.IdempotencyKey(key))
	}
	if _, _, err := enq.Prepare(p, opts...); err != nil {
		return tasks.Message{}, "", problemsOf(n, err)
	}
	return tasks.Message{Payload: p, Options: opts}, key, nil
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
