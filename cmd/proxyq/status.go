package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/worker"
)

const statusDoc = `
Prints what became of one message: its queue state (pending, scheduled, active, retry,
completed, archived), the requests made to Twilio, asynq's count of failed attempts, the
interaction SID and outbound status once sent, and the last error.

--json prints the same view as the HTTP API's status endpoint (keys: id, queue, state, retried,
max_retry, last_error, last_failed_at, next_process_at, completed_at, message, outcome, and
lane for a message with an ordering key: its place and what it waits for).

Exit codes: 0 found; 1 Redis failed; 2 bad usage; 3 no message with that task ID.`

func init() {
	register(&command{name: "status", summary: "show what became of a message", run: runStatus})
}

func runStatus(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSetDoc("status", "status TASK_ID [--json]", statusDoc)
	asJSON := fs.Bool("json", false, "print the status as one JSON object")
	ids, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(ids) == 0:
		return usagef("missing TASK_ID (the ID printed by enqueue)")
	case len(ids) > 1:
		return usagef("one TASK_ID at a time, got %d", len(ids))
	case ids[0] == "":
		return usagef("TASK_ID must not be empty")
	}
	id := ids[0]

	redisOpt, err := m.redisFromEnv()
	if err != nil {
		return err
	}
	if err := m.pingRedis(ctx, redisOpt); err != nil {
		return err
	}
	insp := asynq.NewInspector(redisOpt)
	defer insp.Close()
	st, err := tasks.Lookup(ctx, insp, id)
	if errors.Is(err, tasks.ErrNotFound) {
		return notFoundError{fmt.Errorf("no message with task ID %q", id)}
	}
	if err != nil {
		return err
	}
	m.readLane(ctx, redisOpt, st)
	if *asJSON {
		enc := json.NewEncoder(m.Stdout)
		enc.SetEscapeHTML(false)
		return enc.Encode(st)
	}
	posts := -1
	if st.Outcome != nil {
		posts = st.Outcome.Attempts
	} else if st.Message.ParticipantSID != "" {
		// No outcome yet (waiting, retrying after a 503…): the send ledger knows how many
		// requests were made. Best effort: without it the line says "-".
		posts = m.ledgerPosts(ctx, redisOpt, st)
	}
	return printStatus(m.Stdout, st, posts)
}

// ledgerPosts reads the number of requests made for a message from the worker's send ledger,
// or -1 when it cannot.
func (m *Main) ledgerPosts(ctx context.Context, opt asynq.RedisConnOpt, st *tasks.Status) int {
	rdb, ok := opt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return -1
	}
	defer rdb.Close()
	entry, err := worker.NewLedger(rdb, 0).Read(ctx, st.Queue, st.ID)
	if err != nil {
		return -1
	}
	return entry.Posts
}

// readLane adds the message's place in its ordering lane, best effort (a message without a
// key has none).
func (m *Main) readLane(ctx context.Context, opt asynq.RedisConnOpt, st *tasks.Status) {
	if st.Message.OrderingKey == "" {
		return
	}
	rdb, ok := opt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return
	}
	defer rdb.Close()
	_ = tasks.ReadLane(ctx, rdb, st)
}

// printStatus writes the human view of st. posts is the number of requests made to Twilio, or
// -1 when unknown.
func printStatus(w io.Writer, st *tasks.Status, posts int) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(name, value string) {
		if value != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", name, value)
		}
	}
	ts := func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	}
	o := st.Outcome
	if o == nil {
		o = &tasks.Outcome{}
	}
	row("Task ID", st.ID)
	row("Queue", st.Queue)
	row("State", st.State)
	row("Outcome", o.State)
	attempts := "-"
	if posts >= 0 {
		attempts = strconv.Itoa(posts)
	}
	row("Attempts", attempts+" (requests to Twilio)")
	row("Retried", fmt.Sprintf("%d of %d failed attempts allowed", st.Retried, st.MaxRetry))
	row("Interaction SID", o.InteractionSID)
	row("Outbound status", o.OutboundStatus)
	row("Outbound SID", o.OutboundResourceSID)
	row("Sent at", ts(o.SentAt))
	deliveryRows(row, ts, o)
	if o.State == tasks.OutcomeSent {
		row("Reconciled", map[bool]string{true: "yes (found by listing the participant's interactions)", false: "no"}[o.Reconciled])
	}
	if o.ErrorCode != 0 {
		row("Twilio error", fmt.Sprintf("%d (HTTP %d)", o.ErrorCode, o.HTTPStatus))
	}
	row("Outcome error", o.Error)
	row("Last error", st.LastError)
	row("Last failed at", ts(st.LastFailedAt))
	row("Next attempt", ts(st.NextProcessAt))
	row("Completed at", ts(st.CompletedAt))
	row("Send before", ts(st.Message.SendBefore))
	row("Ordering key", st.Message.OrderingKey)
	if l := st.Lane; l != nil {
		switch {
		case l.Position == 1:
			row("Lane", fmt.Sprintf("head of %d (its turn)", l.Length))
		case l.Position > 1:
			row("Lane", fmt.Sprintf("position %d of %d (%d ahead; head %s is %s)", l.Position, l.Length, l.Ahead, l.Head, l.HeadState))
		default:
			row("Lane", "not in its lane (ended)")
		}
		row("Waiting for", l.WaitingFor)
	}
	row("Participant", st.Message.ParticipantSID)
	row("Session", st.Message.SessionSID)
	row("Service", st.Message.ServiceSID)
	return tw.Flush()
}
