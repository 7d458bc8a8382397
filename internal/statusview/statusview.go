package statusview

import (
	"context"
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

// LedgerPosts reads the number of requests made for a message from the worker's send ledger,
// or -1 when it cannot.
func LedgerPosts(ctx context.Context, opt asynq.RedisConnOpt, st *tasks.Status) int {
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

// ReadLane adds the message's place in its ordering lane, best effort (a message without a
// key has none).
func ReadLane(ctx context.Context, opt asynq.RedisConnOpt, st *tasks.Status) {
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

// Rows adds rows to the view: row(name, value) skips an empty value; ts formats a time ("" for
// none). The delivery status rows come in through one (DeliveryRows).
type Rows func(row func(name, value string), ts func(*time.Time) string, o *tasks.Outcome)

// Write writes the human view of st to w, one "Name: value" line per known fact. posts is the
// number of requests made to Twilio, or -1 when unknown; delivery adds the delivery status
// rows after "Sent at" (nil: none).
func Write(w io.Writer, st *tasks.Status, posts int, delivery Rows) error {
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
	row("API", apiName(st))
	row("State", st.State)
	row("Outcome", o.State)
	attempts := "-"
	if posts >= 0 {
		attempts = strconv.Itoa(posts)
	}
	row("Attempts", attempts+" (requests to Twilio)")
	row("Retried", fmt.Sprintf("%d of %d failed attempts allowed", st.Retried, st.MaxRetry))
	row("Interaction SID", o.InteractionSID)
	row("Message SID", o.MessageSID)
	row("Outbound status", o.OutboundStatus)
	row("Outbound SID", o.OutboundResourceSID)
	row("Sent at", ts(o.SentAt))
	if delivery != nil {
		delivery(row, ts, o)
	}
	if o.State == tasks.OutcomeSent {
		how := "yes (found by listing the participant's interactions)"
		if o.MessageSID != "" {
			how = "yes (found by proxyq's stamp among the conversation's messages)"
		}
		row("Reconciled", map[bool]string{true: how, false: "no"}[o.Reconciled])
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
	row("Conversation", st.Message.ConversationSID)
	row("Chat service", st.Message.ChatServiceSID)
	return tw.Flush()
}

// apiName names the Twilio API a message goes to, as people read it.
func apiName(st *tasks.Status) string {
	api := st.API
	if api == "" && st.Outcome != nil {
		api = st.Outcome.API
	}
	switch api {
	case tasks.APIConversations:
		return "Conversations"
	case "proxy":
		return "Proxy"
	}
	return api
}
