package bench

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
)

// Scenario 9: ordered lanes (issue 11), proxyq only (the peer has no lanes).
//
//   - Hand-off: a few lanes of many messages each, API latency 0, workers mostly idle, each
//     lane's head scheduled 5s ahead so that its followers are all waiting when it goes (a
//     follower still in the queue's backlog when its turn comes is not "otherwise ready": it
//     waits for the backlog like any message). For every
//     message but a lane's first: from its predecessor's outcome being recorded (the outcome's
//     recorded_at, taken just before the ledger write: the earliest "recorded" moment, so the
//     figure errs long) to the fake receiving its POST. p50 and p99; target p99 ≤ 50ms.
//   - Throughput: 1,000 lanes × 10 messages, enqueued beforehand round by round (message r of
//     every lane, then r+1: how traffic arrives over time), API latency 50ms, concurrency 200;
//     and the same messages without ordering keys. tasks/s from Start to the last completion,
//     best of the runs, and the ratio ordered/unordered.

type laneSizes struct {
	handoffLanes, handoffLen int
	lanes, laneLen           int
	latency                  time.Duration
	concurrency              int
}

func (b *bencher) laneSizes() laneSizes {
	if b.cfg.Quick {
		return laneSizes{handoffLanes: 4, handoffLen: 6, lanes: 50, laneLen: 4, latency: 20 * time.Millisecond, concurrency: 50}
	}
	return laneSizes{handoffLanes: 20, handoffLen: 26, lanes: 1000, laneLen: 10, latency: 50 * time.Millisecond, concurrency: 200}
}

func lanePayload(run string, lane, i int, ordered bool) tasks.Payload {
	p := tasks.Payload{
		ServiceSID:     serviceSID,
		SessionSID:     sessionSID,
		ParticipantSID: fmt.Sprintf("KP%032x", 0x1a9e0000+lane),
		Body:           fmt.Sprintf("bench %s lane %d #%d", run, lane, i),
	}
	if ordered {
		p.OrderingKey = p.ParticipantSID
	}
	return p
}

// enqueueLanes enqueues lanes × per messages round by round, in batches of 500. With
// headDelay, each lane's first message is scheduled that far ahead.
func enqueueLanes(ctx context.Context, e *tasks.Enqueuer, run string, lanes, per int, ordered bool, headDelay time.Duration) error {
	var batch []tasks.Message
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := e.EnqueueBatch(ctx, batch)
		batch = batch[:0]
		return err
	}
	for i := range per {
		for l := range lanes {
			m := tasks.Message{Payload: lanePayload(run, l, i, ordered)}
			if i == 0 && headDelay > 0 {
				m.Options = []tasks.Option{tasks.ProcessIn(headDelay)}
			}
			batch = append(batch, m)
			if len(batch) == 500 {
				if err := flush(); err != nil {
					return fmt.Errorf("enqueue: %w", err)
				}
			}
		}
	}
	if err := flush(); err != nil {
		return fmt.Errorf("enqueue: %w", err)
	}
	return nil
}

// laneRun enqueues, runs proxyq until every message completed, and returns its rate.
func (b *bencher) laneRun(ctx context.Context, fake *fakeAPI, run string, lanes, per, concurrency int, ordered bool, headDelay time.Duration) (float64, error) {
	if err := b.redis.flush(ctx); err != nil {
		return 0, err
	}
	fake.reset()
	enq := tasks.NewEnqueuer(b.redis.opt)
	defer enq.Close()
	if err := enqueueLanes(ctx, enq, run, lanes, per, ordered, headDelay); err != nil {
		return 0, err
	}
	w, err := newProxyq(b.redis.opt, fake.URL, proxyqOptions{Concurrency: concurrency})
	if err != nil {
		return 0, err
	}
	rdb := b.redis.client()
	defer rdb.Close()
	n := lanes * per
	began := time.Now()
	if err := w.Start(); err != nil {
		return 0, err
	}
	doneAt, _, _, err := waitCompleted(ctx, rdb, n, time.Duration(n)*20*time.Millisecond+2*time.Minute)
	w.Shutdown()
	if err != nil {
		return 0, fmt.Errorf("%s: %w: %w", run, errIncomplete, err)
	}
	return float64(n) / doneAt.Sub(began).Seconds(), nil
}

// handoffs measures, for every message but each lane's first, predecessor recorded → POST.
func (b *bencher) handoffs(ctx context.Context, fake *fakeAPI, z laneSizes) ([]time.Duration, error) {
	run := "s9-handoff"
	// Heads scheduled 5s ahead: by then every follower has been picked up once and waits in
	// the retry set, so each hand-off is to a message that is otherwise ready.
	if _, err := b.laneRun(ctx, fake, run, z.handoffLanes, z.handoffLen, 50, true, 5*time.Second); err != nil {
		return nil, err
	}
	insp := asynq.NewInspector(b.redis.opt)
	defer insp.Close()
	recorded := map[string]time.Time{}
	for page := 1; ; page++ {
		infos, err := insp.ListCompletedTasks(queueName, asynq.PageSize(1000), asynq.Page(page))
		if err != nil {
			return nil, err
		}
		for _, info := range infos {
			p, perr := tasks.Decode(info.Payload)
			o, oerr := tasks.ParseOutcome(info.Result)
			if perr == nil && oerr == nil && o != nil {
				recorded[p.Body] = o.RecordedAt
			}
		}
		if len(infos) < 1000 {
			break
		}
	}
	var out []time.Duration
	for l := range z.handoffLanes {
		for i := 1; i < z.handoffLen; i++ {
			prev, okPrev := recorded[lanePayload(run, l, i-1, true).Body]
			next, okNext := fake.arrival(lanePayload(run, l, i, true).Body)
			if !okPrev || !okNext {
				return nil, fmt.Errorf("hand-off: lane %d message %d: outcome or arrival missing", l, i)
			}
			out = append(out, next.Sub(prev))
		}
	}
	slices.Sort(out)
	return out, nil
}

func (b *bencher) scenario9(ctx context.Context) ([]Row, error) {
	z := b.laneSizes()
	fake, err := startFake(proxytest.Config{})
	if err != nil {
		return nil, err
	}
	hs, err := b.handoffs(ctx, fake, z)
	fake.close()
	if err != nil {
		return nil, err
	}
	pct := func(q float64) float64 {
		return float64(hs[min(len(hs)-1, int(q*float64(len(hs))))].Microseconds()) / 1000
	}
	measure := fmt.Sprintf("lane hand-off, predecessor recorded → next POST at the API (%d lanes × %d waiting behind scheduled heads, latency 0, concurrency 50)", z.handoffLanes, z.handoffLen)
	p50, p99 := pct(0.50), pct(0.99)
	b.logf("scenario 9: hand-off p50 %.1fms p99 %.1fms (%d hand-offs)", p50, p99, len(hs))
	rows := []Row{
		{Scenario: 9, Measure: measure + " p50", Unit: "ms", Proxyq: p50, Peer: nan, Ratio: nan},
		{Scenario: 9, Measure: measure + " p99", Unit: "ms", Proxyq: p99, Peer: nan, Ratio: nan, Target: "p99 ≤ 50ms", Met: met(p99 <= 50)},
	}

	fake, err = startFake(proxytest.Config{Latency: z.latency})
	if err != nil {
		return rows, err
	}
	defer fake.close()
	var ordered, unordered float64
	for range b.z.repeats {
		o, err := b.laneRun(ctx, fake, "s9-ordered", z.lanes, z.laneLen, z.concurrency, true, 0)
		if err != nil {
			return rows, err
		}
		u, err := b.laneRun(ctx, fake, "s9-unordered", z.lanes, z.laneLen, z.concurrency, false, 0)
		if err != nil {
			return rows, err
		}
		b.logf("scenario 9: ordered %.0f tasks/s, unordered %.0f tasks/s", o, u)
		ordered, unordered = max(ordered, o), max(unordered, u)
	}
	rows = append(rows, Row{Scenario: 9, Unit: "tasks/s", Proxyq: ordered, Peer: nan, Ratio: ordered / unordered,
		Measure: fmt.Sprintf("throughput, %d lanes × %d ordered (ratio: ÷ the same messages unordered, %.0f/s), latency %v, concurrency %d, best of %d",
			z.lanes, z.laneLen, unordered, z.latency, z.concurrency, b.z.repeats)})
	return rows, nil
}
