package enqueuecli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/tasks/jsonl"
)

// Flags are the flags of `proxyq enqueue` that shape its messages.
type Flags struct {
	Service, Session, Participant, Body, Account string
	Media                                        []string
	Key, At, Queue, File, OrderingKey            string
	In, SendWithin                               time.Duration
	// A Conversations message (--conversation and the ConversationFlags).
	ConversationSID, ChatService, Author, MediaSID, ContentSID, ContentVariables, Attributes string
	NoWebhooks                                                                               bool
	Set                                                                                      map[string]bool // flags given on the command line
}

// MessageFlags are the flags that describe one message; they cannot be combined with --file.
var MessageFlags = append([]string{"service", "session", "participant", "body", "media-url", "idempotency-key", "at", "in", "ordering-key", "account"}, ConversationFlags...)

// flagOfField names the flag behind a payload field in flag mode.
var flagOfField = map[string]string{
	"service_sid": "--service", "session_sid": "--session", "participant_sid": "--participant",
	"body": "--body", "media_url": "--media-url", "idempotency_key": "--idempotency-key",
	"queue": "--queue", "send_before": "--send-within", "ordering_key": "--ordering-key",
	"account_sid": "--account",
}

// FromFile reports whether the messages come from --file.
func (f Flags) FromFile() bool { return f.Set["file"] }

// Check refuses combinations of flags that name no message or two sources of messages. Its
// errors are usage errors.
func (f Flags) Check() error {
	var given []string
	for _, name := range MessageFlags {
		if f.Set[name] {
			given = append(given, "--"+name)
		}
	}
	switch {
	case f.Set["file"] && len(given) > 0:
		return fmt.Errorf("--file cannot be combined with %s: put message fields in the JSON lines", strings.Join(given, ", "))
	case f.Set["file"] && f.File == "":
		return errors.New(`--file needs a path, or "-" for stdin`)
	case !f.Set["file"] && len(given) == 0:
		return errors.New("no message: give --service, --session, --participant and --body (or --media-url); or --conversation CH… with --body (or --media-sid, --content-sid); or --file (see --help)")
	case f.In < 0 || f.SendWithin < 0:
		return errors.New("--in and --send-within must not be negative")
	case f.Set["queue"] && strings.TrimSpace(f.Queue) == "":
		return errors.New("--queue must not be empty")
	}
	return f.checkAPI()
}

// Options are the options every message gets: env (PROXYQ_MAX_RETRY, PROXYQ_RETENTION), then
// --queue and --send-within, which a JSON line may override.
func (f Flags) Options(env []tasks.Option) []tasks.Option {
	base := append(append([]tasks.Option(nil), env...), tasks.Via("cli"))
	if f.Set["queue"] {
		base = append(base, tasks.Queue(f.Queue))
	}
	if f.SendWithin > 0 {
		base = append(base, tasks.SendWithin(f.SendWithin))
	}
	return base
}

// Message builds the one message of flag mode. Invalid values are problems (Line 0); err is a
// usage error that is not about one field.
func (f Flags) Message(enq *tasks.Enqueuer, base []tasks.Option) (tasks.Message, []jsonl.Problem, error) {
	opts, err := f.timeOptions(base)
	if err != nil {
		return tasks.Message{}, nil, err
	}
	p := tasks.Payload{ServiceSID: f.Service, SessionSID: f.Session, ParticipantSID: f.Participant,
		Body: f.Body, MediaURLs: f.Media, AccountSID: f.Account}
	if f.Set["ordering-key"] {
		if err := tasks.ValidateOrderingKey(f.OrderingKey); err != nil {
			return tasks.Message{}, jsonl.ProblemsOf(0, err), nil
		}
		p.OrderingKey = f.OrderingKey
	}
	if _, _, err := enq.Prepare(p, opts...); err != nil {
		return tasks.Message{}, jsonl.ProblemsOf(0, err), nil
	}
	return tasks.Message{Payload: p, Options: opts}, nil, nil
}

// timeOptions are base with the flag-mode options of either API: --at or --in, and
// --idempotency-key.
func (f Flags) timeOptions(base []tasks.Option) ([]tasks.Option, error) {
	opts := append([]tasks.Option(nil), base...)
	switch {
	case f.Set["at"] && f.Set["in"]:
		return nil, errors.New("--at and --in cannot be combined: give one send time")
	case f.Set["at"]:
		at, err := time.Parse(time.RFC3339, strings.TrimSpace(f.At))
		if err != nil {
			return nil, fmt.Errorf("--at=%q: want an RFC 3339 time such as 2025-01-02T15:04:05Z", f.At)
		}
		opts = append(opts, tasks.ProcessAt(at))
	case f.In > 0:
		opts = append(opts, tasks.ProcessIn(f.In))
	}
	if f.Set["idempotency-key"] {
		opts = append(opts, tasks.IdempotencyKey(f.Key))
	}
	return opts, nil
}

// Validate adds to problems (those found reading the messages) the messages whose account
// has no credentials (known nil: not checked) and, when there is no other problem, the rules
// of the batch as a whole (a repeated idempotency key, lanes). lines[i] is msgs[i]'s input
// line (0 in flag mode).
func Validate(enq *tasks.Enqueuer, msgs []tasks.Message, lines []int, problems []jsonl.Problem, known func(string) bool) []jsonl.Problem {
	if known != nil {
		for i, msg := range msgs {
			if !known(msg.Payload.AccountSID) {
				problems = append(problems, jsonl.Problem{Line: lines[i], Field: "account_sid", Rule: "has no credentials in PROXYQ_ACCOUNTS_FILE (nor is it TWILIO_ACCOUNT_SID): a worker would archive it"})
			}
		}
	}
	if len(problems) == 0 {
		problems = jsonl.BatchProblems(enq.CheckBatch(msgs), lines)
	}
	return problems
}

// ProblemText names the flag behind the field in flag mode, the line in file mode.
func ProblemText(p jsonl.Problem) string {
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

// maxShown bounds the problems printed: a binary file fed by mistake must not flood the
// terminal.
const maxShown = 1000

// Report prints the problems to w, one a line, and returns the summary (a usage error).
func Report(w io.Writer, problems []jsonl.Problem, fromFile bool) error {
	for i, p := range problems {
		if i == maxShown {
			fmt.Fprintf(w, "… and %d more problems\n", len(problems)-maxShown)
			break
		}
		fmt.Fprintln(w, ProblemText(p))
	}
	if !fromFile {
		return errors.New("invalid message; nothing was enqueued")
	}
	bad := map[int]bool{}
	for _, p := range problems {
		bad[p.Line] = true
	}
	return fmt.Errorf("%d invalid line(s); nothing was enqueued", len(bad))
}

// Partial explains a failed EnqueueBatch: how many of n messages were enqueued before it.
func Partial(err error, results []tasks.Result, n int) error {
	done := 0
	for _, r := range results {
		if r.TaskID != "" {
			done++
		}
	}
	return fmt.Errorf("%w (%d of %d messages were enqueued; running the same input again is safe for messages with an idempotency key)", err, done, n)
}

// PrintResults prints one task ID a line, in input order, or with asJSON one
// {"id","queue","duplicate"} object a line.
func PrintResults(w io.Writer, results []tasks.Result, asJSON bool) error {
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
