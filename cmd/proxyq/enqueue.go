package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/proxyq/proxyq/internal/envconfig"
	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/tasks/jsonl"
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

// problem is one invalid field of one message. Line is 0 in flag mode.
type problem = jsonl.Problem

// problemText names the flag behind the field in flag mode, the line in file mode.
func problemText(p problem) string {
	if p.Line == 0 {
		name := p.Field
		if f, ok := flagOfField[p.Field]; ok {
			name = f
		} else if strings.HasPrefix(p.Field, "media_url[") {
			name = "--media-url " + strings.TrimPrefix(p.Field, "media_url")
		}
		return name + ": " + p.Rule
	}
	return p.String()
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
		msgs, lines, problems, err = m.readMessageFile(enq, f.file, base)
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
	known, _, err := envconfig.KnownAccount(m.Getenv)
	if err != nil {
		return usageError{err}
	}
	problems = append(problems, unknownAccountProblems(known, msgs, lines)...)
	if len(problems) == 0 {
		problems = jsonl.BatchProblems(enq.CheckBatch(msgs), lines)
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
			return reportProblems(m, jsonl.BatchProblems(err, lines), f.set["file"])
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
		fmt.Fprintln(m.Stderr, problemText(p))
	}
	if !fromFile {
		return usagef("invalid message; nothing was enqueued")
	}
	bad := map[int]bool{}
	for _, p := range problems {
		bad[p.Line] = true
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
			return tasks.Message{}, jsonl.ProblemsOf(0, err), nil
		}
		p.OrderingKey = f.orderingKey
	}
	if _, _, err := enq.Prepare(p, opts...); err != nil {
		return tasks.Message{}, jsonl.ProblemsOf(0, err), nil
	}
	return tasks.Message{Payload: p, Options: opts}, nil, nil
}

// readMessageFile reads the JSON lines of path ("-": stdin) with package jsonl.
func (m *Main) readMessageFile(enq *tasks.Enqueuer, path string, base []tasks.Option) ([]tasks.Message, []int, []problem, error) {
	var r io.Reader = m.Stdin
	if path != "-" {
		file, err := os.Open(path)
		if err != nil {
			return nil, nil, nil, usageError{fmt.Errorf("--file: %w", err)}
		}
		defer file.Close()
		r = file
	}
	msgs, lines, problems, err := jsonl.Read(r, enq, base)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read --file: %w", err)
	}
	return msgs, lines, problems, nil
}
