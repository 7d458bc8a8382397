package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/proxyq/proxyq/internal/enqueuecli"
	"github.com/proxyq/proxyq/internal/envconfig"
	"github.com/proxyq/proxyq/internal/otelx"
	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/tasks/jsonl"
)

const enqueueDoc = `
Enqueues messages for the workers and prints one task ID per message, in input order.

One message from flags:
  proxyq enqueue --service KS… --session KC… --participant KP… --body "Your driver is here"

One Twilio Conversations message (the Proxy-only flags --service, --session, --participant and
--media-url cannot be combined with it; --chat-service names a Conversation Service IS…):
  proxyq enqueue --conversation CH… --author support --body "Your driver is here"
    [--chat-service IS…] [--media-sid ME…] [--content-sid HX… --content-variables JSON]
    [--attributes JSON] [--no-webhooks]

Many messages as JSON lines (--file PATH, or --file - for stdin), one object per line with the
payload keys (service_sid, session_sid, participant_sid, body, media_url, send_before,
account_sid, ordering_key) and
optionally idempotency_key, send_at (RFC 3339) and queue:
  {"service_sid":"KS…","session_sid":"KC…","participant_sid":"KP…","body":"hi","idempotency_key":"order-42"}
A line with conversation_sid is a Conversations message (keys conversation_sid, service_sid,
author, body, media_sid, content_sid, content_variables, attributes, webhook_enabled,
send_before, account_sid, ordering_key, and the same optional keys):
  {"conversation_sid":"CH…","author":"support","body":"hi","idempotency_key":"order-43"}
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

func runEnqueue(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSetDoc("enqueue", "enqueue (--service KS… --session KC… --participant KP… --body TEXT | --conversation CH… --body TEXT | --file PATH|-) [flags]", enqueueDoc)
	var f enqueuecli.Flags
	var asJSON bool
	fs.StringVar(&f.Service, "service", "", "Proxy Service SID (KS…)")
	fs.StringVar(&f.Session, "session", "", "Proxy Session SID (KC…)")
	fs.StringVar(&f.Participant, "participant", "", "Proxy Participant SID (KP…), the recipient")
	fs.StringVar(&f.Body, "body", "", "message text, at most 1600 characters")
	fs.Var((*repeated)(&f.Media), "media-url", "absolute http(s) media URL (repeatable, at most 10)")
	fs.StringVar(&f.Key, "idempotency-key", "", "caller's key for the message; becomes the task ID")
	fs.StringVar(&f.OrderingKey, "ordering-key", "", "lane key: messages with the same key (and queue) are sent in enqueue order, one at a time")
	fs.StringVar(&f.At, "at", "", "send no earlier than this RFC 3339 time, e.g. 2025-01-02T15:04:05Z")
	fs.DurationVar(&f.In, "in", 0, "send no earlier than this long from now, e.g. 10m")
	fs.StringVar(&f.Queue, "queue", "", `queue name (default "default"); with --file, for lines without "queue"`)
	fs.DurationVar(&f.SendWithin, "send-within", 0, "deadline after the send time; unsent by then, the message expires (default: the worker's PROXYQ_SEND_WITHIN)")
	fs.StringVar(&f.Account, "account", "", "Twilio account (AC…) to send with; default: the worker's TWILIO_ACCOUNT_SID")
	fs.StringVar(&f.ConversationSID, "conversation", "", "Conversations: the Conversation SID (CH…); sends through Twilio Conversations instead of Proxy")
	fs.StringVar(&f.ChatService, "chat-service", "", "Conversations: the Conversation Service SID (IS…); default: the account's default Service")
	fs.StringVar(&f.Author, "author", "", `Conversations: the message's author (Twilio's default "system")`)
	fs.StringVar(&f.MediaSID, "media-sid", "", "Conversations: a Media SID (ME…) uploaded to Twilio's Media Content Service")
	fs.StringVar(&f.ContentSID, "content-sid", "", "Conversations: a Content template SID (HX…)")
	fs.StringVar(&f.ContentVariables, "content-variables", "", `Conversations: JSON object filling the template, e.g. '{"1":"Ada"}'`)
	fs.StringVar(&f.Attributes, "attributes", "", `Conversations: JSON object kept on the message (the key "proxyq" is proxyq's)`)
	fs.BoolVar(&f.NoWebhooks, "no-webhooks", false, "Conversations: X-Twilio-Webhook-Enabled=false (the Service's webhooks do not fire)")
	fs.StringVar(&f.File, "file", "", `read messages as JSON lines from PATH, or "-" for stdin`)
	fs.BoolVar(&asJSON, "json", false, `print {"id","queue","duplicate"} per message instead of the bare ID`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (messages come from flags or --file)", fs.Arg(0))
	}
	f.Set = map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { f.Set[fl.Name] = true })
	if err := f.Check(); err != nil {
		return usageError{err}
	}

	envOpts, err := m.enqueueOptionsFromEnv()
	if err != nil {
		return err
	}
	base := f.Options(envOpts)
	redisOpt, err := m.redisFromEnv()
	if err != nil {
		return err
	}
	tr, err := m.startTracing(ctx, "enqueue", func(err error) { fmt.Fprintf(m.Stderr, "proxyq enqueue: %v\n", err) })
	if err != nil {
		return err
	}
	defer tr.stop()
	ctx, span := otelx.CommandSpan(ctx, m.Getenv, "proxyq enqueue") // TRACEPARENT, when set, is its parent
	defer span.End()
	enqOpts, err := m.enqueuerOptionsFromEnv()
	if err != nil {
		return err
	}
	enq := tasks.NewEnqueuer(redisOpt, enqOpts...)
	defer enq.Close()

	// Validate every message before Redis is touched: bad input exits 2 with nothing enqueued,
	// whether or not Redis is up.
	var items []enqueuecli.Item
	var problems []jsonl.Problem
	switch {
	case f.FromFile():
		if items, problems, err = m.readMessageFile(enq, f.File, base); err != nil {
			return err
		}
	case f.Conversation():
		var c enqueuecli.ConversationMessage
		if c, problems, err = f.ConversationMessage(enq, base); err != nil {
			return usageError{err}
		}
		items = []enqueuecli.Item{{Conv: &c}}
	default:
		var msg tasks.Message
		if msg, problems, err = f.Message(enq, base); err != nil {
			return usageError{err}
		}
		items = []enqueuecli.Item{{Proxy: &msg}}
	}
	known, _, err := envconfig.KnownAccount(m.Getenv)
	if err != nil {
		return usageError{err}
	}
	msgs, lines := enqueuecli.ProxyMessages(items)
	problems = append(problems, enqueuecli.CheckConversationAccounts(items, known)...)
	if problems = enqueuecli.Validate(enq, msgs, lines, problems, known); len(problems) > 0 {
		return asUsage(enqueuecli.Report(m.Stderr, problems, f.FromFile()))
	}
	if len(items) == 0 {
		return nil // an empty file or stdin: nothing to do
	}

	if err := m.pingRedis(ctx, redisOpt); err != nil {
		return err
	}
	if len(msgs) < len(items) { // Conversations messages: one at a time, in input order
		results, err := enqueuecli.EnqueueItems(ctx, enq, items)
		if err != nil {
			return enqueuecli.Partial(err, results, len(items))
		}
		return enqueuecli.PrintResults(m.Stdout, results, asJSON)
	}
	results, err := enq.EnqueueBatch(ctx, msgs)
	if err != nil {
		var batchErr *tasks.BatchError
		if errors.As(err, &batchErr) && batchErr.Index < len(lines) {
			// CheckBatch passed, so this is a rule only the batch checks.
			return asUsage(enqueuecli.Report(m.Stderr, jsonl.BatchProblems(err, lines), f.FromFile()))
		}
		return enqueuecli.Partial(err, results, len(msgs))
	}
	return enqueuecli.PrintResults(m.Stdout, results, asJSON)
}

// readMessageFile reads the JSON lines of path ("-": stdin): Proxy messages with package
// jsonl, lines with conversation_sid as Conversations messages (enqueuecli.ReadFile).
func (m *Main) readMessageFile(enq *tasks.Enqueuer, path string, base []tasks.Option) ([]enqueuecli.Item, []jsonl.Problem, error) {
	var r io.Reader = m.Stdin
	if path != "-" {
		file, err := os.Open(path)
		if err != nil {
			return nil, nil, usageError{fmt.Errorf("--file: %w", err)}
		}
		defer file.Close()
		r = file
	}
	items, problems, err := enqueuecli.ReadFile(r, enq, base)
	if err != nil {
		return nil, nil, fmt.Errorf("read --file: %w", err)
	}
	return items, problems, nil
}
