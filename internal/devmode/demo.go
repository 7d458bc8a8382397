package devmode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/conversations/convtest"
	"github.com/proxyq/proxyq/delivery"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
)

const (
	progressEvery  = 500 * time.Millisecond
	demoSendWithin = 15 * time.Minute
)

// demoMessage is one sample message and why it should end the way it does.
type demoMessage struct {
	msg    tasks.Message              // a Proxy message (conv nil), or msg.Options for conv
	conv   *tasks.ConversationPayload // a Conversations message
	key    string
	body   string
	reason string // "" for messages meant to be sent; else the failure it is meant to hit
}

// Failure says whether the demo's message i (from 0) is meant to fail permanently, and how:
// every 12th from the 6th goes to a participant removed from its session (404, code 20404),
// every 20th from the 10th to a closed session (400, code 80607).
func Failure(i int) string {
	switch {
	case i%12 == 5:
		return "unknown participant"
	case i%20 == 9:
		return "closed session"
	}
	return ""
}

var demoNames = []string{"Sam", "Ada", "Lin", "Omar", "Priya", "Jonas", "Mei", "Kofi", "Lucia"}

// Conversation says whether the demo's message i goes through Twilio Conversations (with a
// Conversations fake): every third message from the 2nd, except those meant to fail (which
// fail the Proxy way).
func Conversation(i int) bool { return i%3 == 1 && Failure(i) == "" }

// demoMessages builds n sample messages with SIDs unique to this run (so runs against a
// persistent REDIS_URL never meet each other's ledgers), and marks the fake accordingly. With
// withConv, the messages Conversation picks go to one conversation of the Conversations fake.
func demoMessages(n int, runID string, fake *proxytest.Fake, withConv bool, base []tasks.Option) []demoMessage {
	conversation := "CH" + runID + strings.Repeat("0", 24)
	const service = "KS00000000000000000000000000000de0"
	session := "KC" + runID + strings.Repeat("0", 24)
	closedSession := "KC" + runID + strings.Repeat("0", 23) + "c"
	fake.CloseSession(closedSession)
	out := make([]demoMessage, n)
	for i := range out {
		p := tasks.Payload{
			ServiceSID:     service,
			SessionSID:     session,
			ParticipantSID: fmt.Sprintf("KP%s%024x", runID, i+1),
			Body: fmt.Sprintf("Demo %d/%d: %s, your driver is %d minutes away", i+1, n,
				demoNames[i%len(demoNames)], 1+i%9),
		}
		if i%4 == 3 {
			p.MediaURLs = []string{fmt.Sprintf("https://media.example.com/demo/map-%03d.png", i+1)}
		}
		reason := Failure(i)
		switch reason {
		case "unknown participant":
			fake.MarkParticipantUnknown(p.ParticipantSID)
		case "closed session":
			p.SessionSID = closedSession
		}
		key := fmt.Sprintf("demo-%s-%03d", runID, i+1)
		opts := append(append([]tasks.Option{}, base...), tasks.IdempotencyKey(key), tasks.SendWithin(demoSendWithin))
		if withConv && Conversation(i) {
			c := &tasks.ConversationPayload{ConversationSID: conversation, Author: "dispatch", Body: p.Body,
				Attributes: []byte(fmt.Sprintf(`{"demo":%d}`, i+1))}
			out[i] = demoMessage{msg: tasks.Message{Options: opts}, conv: c, key: key, body: p.Body}
			continue
		}
		out[i] = demoMessage{msg: tasks.Message{Payload: p, Options: opts}, key: key, body: p.Body, reason: reason}
	}
	return out
}

// demoFaultRates are the fake's random faults during the demo: enough for every kind to show
// up in a batch of 50.
var demoFaultRates = map[proxytest.Fault]float64{
	proxytest.Fault429:            0.10,
	proxytest.Fault503:            0.08,
	proxytest.Fault500AfterCreate: 0.05,
}

// Demo is one demo batch of `proxyq dev --demo N`: sample messages enqueued through the real
// producer, sent by the worker to the fake (which serves faults and status callbacks), and
// their progress and what became of each printed.
type Demo struct {
	N       int                // messages
	Timeout time.Duration      // how long to wait for them to finish (--demo-timeout)
	Redis   asynq.RedisConnOpt // where the worker dequeues
	Options []tasks.Option     // enqueue options every message gets (from PROXYQ_* variables)
	Fake    *proxytest.Fake    // the fake the worker sends to
	// Conv is the Conversations fake the worker sends Conversations messages to; nil: the demo
	// sends Proxy messages only.
	Conv     *convtest.Fake
	BaseURL  string    // the dev server's http://host:port, for callbacks and links
	Out      io.Writer // progress and summary
	Terminal *Terminal // nil when Out is not a terminal: progress is printed line by line
}

// Run enqueues the batch and waits until every message is completed or archived and every sent
// one has a final delivery status, or until ctx ends or Timeout passes; then it prints the
// summary. It returns an error when a message was created twice, did not finish, or ended
// differently than intended (nil when interrupted through ctx).
func (d Demo) Run(ctx context.Context) error {
	n, redisOpt, base, fake, url, out := d.N, d.Redis, d.Options, d.Fake, d.BaseURL, d.Out
	runID := randomHex(4)
	msgs := demoMessages(n, runID, fake, d.Conv != nil, base)
	if err := fake.SetFaultRates(demoFaultRates); err != nil {
		return err
	}
	if d.Conv != nil {
		if err := d.Conv.SetFaultRates(demoFaultRates); err != nil {
			return err
		}
	}
	if err := fake.SetCallbackConfig(demoCallbacks(url)); err != nil {
		return err
	}
	insp := asynq.NewInspector(redisOpt)
	defer insp.Close()
	before := queueCounts(insp)

	enq := tasks.NewEnqueuer(redisOpt)
	defer enq.Close()
	var batch []tasks.Message
	convs := 0
	began := time.Now()
	for i := range msgs {
		if c := msgs[i].conv; c != nil {
			if _, err := enq.EnqueueConversation(ctx, *c, msgs[i].msg.Options...); err != nil {
				return fmt.Errorf("demo: enqueue: %w", err)
			}
			convs++
			continue
		}
		batch = append(batch, msgs[i].msg)
	}
	if _, err := enq.EnqueueBatch(ctx, batch); len(batch) > 0 && err != nil {
		return fmt.Errorf("demo: enqueue: %w", err)
	}
	fmt.Fprintf(out, "Demo: enqueued %d messages (IDs demo-%s-001…), %d of them Twilio Conversations messages. The fakes answer some with 429, 503 and \"500 after create\"; %d go to a removed participant or a closed session.\n",
		n, runID, convs, countFailures(msgs))

	// Progress from queue counts (cheap at any size); the summary then reads every message.
	ticker := time.NewTicker(progressEvery)
	defer ticker.Stop()
	deadline := time.NewTimer(d.Timeout)
	defer deadline.Stop()
	var lastLine string
	var lastPrint time.Time
	stopped := ""
loop:
	for {
		c := queueCounts(insp).minus(before)
		done := c.completed + c.archived
		line := progressLine(c, n, time.Since(began))
		switch {
		case d.Terminal != nil:
			d.Terminal.Progress(line)
		case line != lastLine && (time.Since(lastPrint) >= time.Second || done >= n):
			fmt.Fprintln(out, line)
			lastLine, lastPrint = line, time.Now()
		}
		if done >= n && demoFinished(insp, msgs) {
			break
		}
		select {
		case <-ctx.Done():
			stopped = "interrupted"
			break loop
		case <-deadline.C:
			stopped = fmt.Sprintf("gave up after %v (--demo-timeout)", d.Timeout)
			break loop
		case <-ticker.C:
		}
	}
	if stopped == "" {
		stopped = waitDeliveries(ctx, insp, msgs, deadline.C)
	}
	d.Terminal.Clear()
	s := summarize(insp, msgs, fake, d.Conv, time.Since(began))
	s.print(out, stopped)
	ds := summarizeDeliveries(insp, msgs)
	ds.print(out)
	fmt.Fprintf(out, "\nSee them in the console: %s/?state=completed (and ?state=archived; search any ID, KP… or KC…)\n", url)
	switch {
	case s.duplicates > 0:
		return fmt.Errorf("demo: %d messages were created more than once at the fake: this is a bug, please report it", s.duplicates)
	case stopped == "interrupted":
		return nil
	case s.unfinished > 0:
		return fmt.Errorf("demo: %d of %d messages did not finish (%s)", s.unfinished, n, stopped)
	case s.unexpected > 0:
		return fmt.Errorf("demo: %d messages ended differently than intended (see the summary)", s.unexpected)
	case ds.notFinal > 0:
		return fmt.Errorf("demo: %d sent messages have no final delivery status (%s)", ds.notFinal, stopped)
	}
	return nil
}

func countFailures(msgs []demoMessage) int {
	k := 0
	for _, m := range msgs {
		if m.reason != "" {
			k++
		}
	}
	return k
}

// counts are one queue's task counts by state.
type counts struct{ pending, active, scheduled, retry, archived, completed int }

func queueCounts(insp *asynq.Inspector) counts {
	qi, err := insp.GetQueueInfo(tasks.DefaultQueue)
	if err != nil {
		return counts{} // the queue does not exist yet, or Redis blinked: the next tick tells
	}
	return counts{qi.Pending, qi.Active, qi.Scheduled, qi.Retry, qi.Archived, qi.Completed}
}

// minus subtracts what was finished before the demo began (a REDIS_URL may hold older work).
func (c counts) minus(before counts) counts {
	c.completed = max(c.completed-before.completed, 0)
	c.archived = max(c.archived-before.archived, 0)
	return c
}

func progressLine(c counts, n int, elapsed time.Duration) string {
	done := min(c.completed+c.archived, n)
	const width = 16 // the whole line stays under 80 columns, so \r can redraw it
	filled := done * width / max(n, 1)
	rate := float64(done) / max(elapsed.Seconds(), 0.001)
	return fmt.Sprintf("  [%s%s] %d/%d  sent %d  retrying %d  archived %d  %.1f msgs/s  %s",
		strings.Repeat("#", filled), strings.Repeat(".", width-filled), done, n,
		c.completed, c.retry, c.archived, rate, elapsed.Round(100*time.Millisecond))
}

// demoFinished confirms, message by message, that every demo message is completed or archived.
func demoFinished(insp *asynq.Inspector, msgs []demoMessage) bool {
	for _, m := range msgs {
		info, err := insp.GetTaskInfo(tasks.DefaultQueue, m.key)
		if err != nil || (info.State != asynq.TaskStateCompleted && info.State != asynq.TaskStateArchived) {
			return false
		}
	}
	return true
}

// demoSummary is what became of the demo's messages, read from asynq and the fake.
type demoSummary struct {
	n, sent, reconciled, failed, unfinished, duplicates, unexpected int
	conversations                                                   int // sent through Conversations
	reasons                                                         map[string]int
	faults                                                          map[string]int
	creates                                                         int
	elapsed                                                         time.Duration
}

// twilioReasons words the Twilio error codes the demo provokes.
var twilioReasons = map[int]string{
	20404: "participant not found (removed from its session)",
	80607: "session closed",
}

func summarize(insp *asynq.Inspector, msgs []demoMessage, fake *proxytest.Fake, conv *convtest.Fake, elapsed time.Duration) demoSummary {
	s := demoSummary{n: len(msgs), reasons: map[string]int{}, faults: map[string]int{}, elapsed: elapsed}
	// Bodies are unique to a message: a body created twice in its conversation is a duplicate.
	convCreates := map[string]int{}
	for _, m := range msgs {
		if m.conv != nil && conv != nil {
			for _, cm := range conv.Messages(FakeAccountSID, "", m.conv.ConversationSID) {
				convCreates[cm.Body]++
			}
			break // the demo's Conversations messages share one conversation
		}
	}
	for _, m := range msgs {
		info, err := insp.GetTaskInfo(tasks.DefaultQueue, m.key)
		if err != nil {
			s.unfinished++
			continue
		}
		o, _ := tasks.ParseOutcome(info.Result)
		switch {
		case info.State == asynq.TaskStateCompleted && o != nil && o.State == tasks.OutcomeSent:
			s.sent++
			if m.conv != nil {
				s.conversations++
			}
			if o.Reconciled {
				s.reconciled++
			}
			if m.reason != "" {
				s.unexpected++
			}
		case info.State == asynq.TaskStateArchived:
			s.failed++
			reason := strings.TrimSpace(info.LastErr)
			if o != nil && o.State == tasks.OutcomeFailed {
				reason = fmt.Sprintf("Twilio %d (HTTP %d)", o.ErrorCode, o.HTTPStatus)
				if words := twilioReasons[o.ErrorCode]; words != "" {
					reason += ": " + words
				}
			}
			s.reasons[reason]++
			if m.reason == "" {
				s.unexpected++
			}
		default:
			s.unfinished++
		}
		if m.conv != nil && convCreates[m.body] > 1 || m.conv == nil && fake != nil && fake.CreatesForBody(m.body) > 1 {
			s.duplicates++
		}
	}
	if conv != nil {
		st := conv.Stats()
		s.creates += st.Creates
		for k, v := range st.Faults {
			if v > 0 {
				s.faults[k] += v
			}
		}
	}
	if fake != nil {
		st := fake.Stats()
		s.creates += st.Creates
		for k, v := range st.Faults {
			if v > 0 {
				s.faults[k.String()] += v
			}
		}
		if st.ConcurrencyRejections > 0 {
			s.faults["concurrency-limit 429"] = st.ConcurrencyRejections
		}
	}
	return s
}

func (s demoSummary) print(w io.Writer, stopped string) {
	head := fmt.Sprintf("Demo finished in %v", s.elapsed.Round(100*time.Millisecond))
	if stopped != "" {
		head = "Demo stopped (" + stopped + ") after " + s.elapsed.Round(100*time.Millisecond).String()
	}
	rate := float64(s.sent+s.failed) / max(s.elapsed.Seconds(), 0.001)
	fmt.Fprintf(w, "\n%s: %d messages, %.1f msgs/s\n", head, s.n, rate)
	fmt.Fprintf(w, "  sent        %4d  each created exactly once at the fake", s.sent)
	if s.reconciled > 0 {
		fmt.Fprintf(w, "; %d after a \"500 after create\", found by reconciliation instead of sent twice", s.reconciled)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  proxy       %4d  sent through Twilio Proxy\n", s.sent-s.conversations)
	fmt.Fprintf(w, "  conversations %2d  sent through Twilio Conversations\n", s.conversations)
	fmt.Fprintf(w, "  reconciled  %4d\n", s.reconciled)
	fmt.Fprintf(w, "  failed      %4d  archived, not retried\n", s.failed)
	reasons := make([]string, 0, len(s.reasons))
	for r := range s.reasons {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		fmt.Fprintf(w, "                    %d × %s\n", s.reasons[r], r)
	}
	if s.unfinished > 0 {
		fmt.Fprintf(w, "  unfinished  %4d  still queued or retrying\n", s.unfinished)
	}
	if s.duplicates > 0 {
		fmt.Fprintf(w, "  DUPLICATES  %4d  created more than once at the fake\n", s.duplicates)
	}
	if s.unexpected > 0 {
		fmt.Fprintf(w, "  unexpected  %4d  ended differently than the demo intended\n", s.unexpected)
	}
	if len(s.faults) > 0 {
		kinds := make([]string, 0, len(s.faults))
		for k := range s.faults {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		parts := make([]string, len(kinds))
		for i, k := range kinds {
			parts[i] = fmt.Sprintf("%s ×%d", k, s.faults[k])
		}
		fmt.Fprintf(w, "  faults served by the fake (retried or reconciled): %s\n", strings.Join(parts, ", "))
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// demoCallbacks is the fake's delivery during the demo: most messages delivered, some
// undelivered or failed with an error code, some callbacks repeated or out of order, and the
// first callback of each message sent before the create is answered (so it arrives before the
// send is recorded, and waits as a pending callback).
func demoCallbacks(base string) proxytest.CallbackConfig {
	return proxytest.CallbackConfig{URL: base + delivery.CallbackPath, AuthToken: FakeAuthToken,
		Delay: 150 * time.Millisecond, Undelivered: 0.10, Failed: 0.04, Duplicates: 0.15, OutOfOrder: 0.15, BeforeAnswer: true}
}

// waitDeliveries waits until every sent demo message has a final delivery status. It returns
// "" or why it stopped.
func waitDeliveries(ctx context.Context, insp *asynq.Inspector, msgs []demoMessage, deadline <-chan time.Time) string {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if deliveriesFinal(insp, msgs) {
			return ""
		}
		select {
		case <-ctx.Done():
			return "interrupted"
		case <-deadline:
			return "gave up waiting for delivery statuses (--demo-timeout)"
		case <-tick.C:
		}
	}
}

func deliveriesFinal(insp *asynq.Inspector, msgs []demoMessage) bool {
	for _, m := range msgs {
		info, err := insp.GetTaskInfo(tasks.DefaultQueue, m.key)
		if err != nil {
			return false
		}
		o, _ := tasks.ParseOutcome(info.Result)
		if o != nil && o.State == tasks.OutcomeSent && !o.Final {
			return false
		}
	}
	return true
}

// deliverySummary counts the sent demo messages by final delivery status, with error codes.
type deliverySummary struct {
	delivered, notFinal int
	failures            map[string]int // "undelivered 30003 Unreachable destination handset" → n
	orderOK             bool
}

func summarizeDeliveries(insp *asynq.Inspector, msgs []demoMessage) deliverySummary {
	s := deliverySummary{failures: map[string]int{}, orderOK: true}
	for _, m := range msgs {
		info, err := insp.GetTaskInfo(tasks.DefaultQueue, m.key)
		if err != nil {
			continue
		}
		o, _ := tasks.ParseOutcome(info.Result)
		if o == nil || o.State != tasks.OutcomeSent {
			continue
		}
		switch {
		case !o.Final:
			s.notFinal++
		case o.OutboundStatus == delivery.StatusDelivered:
			s.delivered++
		default:
			key := o.OutboundStatus
			if o.DeliveryErrorCode != 0 {
				key = fmt.Sprintf("%s %d %s", o.OutboundStatus, o.DeliveryErrorCode, o.DeliveryError)
			}
			s.failures[key]++
		}
		if o.Final && (len(o.StatusHistory) == 0 || o.StatusHistory[0].Status != "queued") {
			s.orderOK = false
		}
	}
	return s
}

func (s deliverySummary) print(w io.Writer) {
	undelivered := 0
	for _, n := range s.failures {
		undelivered += n
	}
	fmt.Fprintf(w, "  delivery    %4d delivered, %d undelivered or failed (Twilio's status callbacks, signed, some repeated or out of order)\n",
		s.delivered, undelivered)
	keys := make([]string, 0, len(s.failures))
	for k := range s.failures {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "                    %d × %s\n", s.failures[k], strings.TrimSpace(k))
	}
	if s.notFinal > 0 {
		fmt.Fprintf(w, "  no status   %4d  no final delivery status yet\n", s.notFinal)
	}
}
