package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/internal/statusview"
	"github.com/proxyq/proxyq/tasks"
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
	statusview.ReadLane(ctx, redisOpt, st)
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
		posts = statusview.LedgerPosts(ctx, redisOpt, st)
	}
	return statusview.Write(m.Stdout, st, posts, statusview.DeliveryRows)
}
