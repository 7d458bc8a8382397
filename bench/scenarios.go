package bench

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/worker"
)

const (
	sideProxyq = "proxyq"
	sidePeer   = "peer"
)

var nan = math.NaN()

// throughput enqueues n messages, then starts the side's pool and returns its rate in tasks/s:
// n over the time from Start to the last completion. (A 10%–90% slope would be quantised by the
// latency-sized waves of a run with high latency; over the whole run the start-up of the pool
// is counted, which is part of what a user waits for.) With c.cpu it also returns what each
// metered process spent per message.
func (b *bencher) throughput(ctx context.Context, scenario int, c contender, fake *fakeAPI, n, concurrency int) (float64, cpuUse, error) {
	if err := b.redis.flush(ctx); err != nil {
		return 0, nil, err
	}
	fake.reset()
	side, o, m := c.side, c.o, cmp.Or(c.m, mixNarrow)
	name := side
	if side == sideProxyq && o.DequeueLoops > 0 {
		name = fmt.Sprintf("%s-%dloop", side, o.DequeueLoops)
	}
	if m != mixNarrow {
		name = string(m) + "-" + name
	}
	if err := b.enqueueMix(ctx, m, side, fmt.Sprintf("s%d-%s", scenario, name), n); err != nil {
		return 0, nil, err
	}
	o.Concurrency = concurrency
	r, err := b.newRunner(m, side, cmp.Or(c.api, fake.URL), o)
	if err != nil {
		return 0, nil, err
	}
	rdb := b.redis.client()
	defer rdb.Close()
	stopProfile, err := b.profile(fmt.Sprintf("cpu-%d-%s.pprof", scenario, name))
	if err != nil {
		return 0, nil, err
	}
	cpuBefore := c.cpu.sample()
	began := time.Now()
	if err := r.Start(); err != nil {
		stopProfile()
		return 0, nil, err
	}
	doneAt, _, _, err := waitCompleted(ctx, rdb, n, time.Duration(n)*10*time.Millisecond+time.Minute)
	stopProfile()
	var use cpuUse
	if c.cpu != nil {
		// Counted once the status callbacks of the last messages have arrived too: every
		// message's whole trip.
		use = perMessage(cpuBefore, c.cpu.settled(), n)
	}
	r.Shutdown()
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w: %w", side, errIncomplete, err)
	}
	rate := float64(n) / doneAt.Sub(began).Seconds()
	b.logf("scenario %d: %s %.0f tasks/s (%d messages, concurrency %d)%s", scenario, name, rate, n, concurrency, use)
	return rate, use, nil
}

// compare runs both sides in turn, z.repeats times, and returns each side's best throughput:
// the machine may be shared, and a run slowed by someone else says nothing about the code.
func (b *bencher) compare(ctx context.Context, scenario int, fake *fakeAPI, n, concurrency int, o proxyqOptions) (proxyq, peer float64, err error) {
	best, _, err := b.bestOf(ctx, scenario, fake, n, concurrency, contender{side: sideProxyq, o: o}, contender{side: sidePeer, o: o})
	if err != nil {
		return 0, 0, err
	}
	return best[0], best[1], nil
}

// contender is one pool a comparison runs: a side, proxyq's options for it, the mix it is given
// (default narrow) and the API it sends to (default the comparison's fake).
type contender struct {
	side string
	o    proxyqOptions
	m    mix
	api  string
	cpu  cpuMeter // when set, what each process spends per message is measured
}

// bestOf runs the contenders in turn, z.repeats times, so that a slow spell of the machine hits
// them all, and returns each one's best throughput, in the order given, and for a metered
// contender the CPU of the run that spent least (a busy machine only adds).
func (b *bencher) bestOf(ctx context.Context, scenario int, fake *fakeAPI, n, concurrency int, cs ...contender) ([]float64, []cpuUse, error) {
	best := make([]float64, len(cs))
	least := make([]cpuUse, len(cs))
	for range b.z.repeats {
		for i, c := range cs {
			rate, use, err := b.throughput(ctx, scenario, c, fake, n, concurrency)
			if err != nil {
				return nil, nil, err
			}
			best[i] = max(best[i], rate)
			if use != nil && (least[i] == nil || use.total() < least[i].total()) {
				least[i] = use
			}
		}
	}
	return best, least, nil
}

// profile starts a CPU profile into ProfileDir/name, if profiling was asked for.
func (b *bencher) profile(name string) (stop func(), err error) {
	if b.cfg.ProfileDir == "" {
		return func() {}, nil
	}
	if err := os.MkdirAll(b.cfg.ProfileDir, 0o755); err != nil {
		return nil, err
	}
	return startCPUProfile(filepath.Join(b.cfg.ProfileDir, name))
}

// startCPUProfile profiles this process into the file at path until stop.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }, nil
}

// scenario1: throughput at zero latency, concurrency 50, everything of proxyq switched on
// (limits with values that never bind, so that their Redis calls are paid).
func (b *bencher) scenario1(ctx context.Context) ([]Row, error) {
	fake, err := startFake(proxytest.Config{})
	if err != nil {
		return nil, err
	}
	defer fake.close()
	c := b.z.s1Concurrency
	p, q, err := b.compare(ctx, 1, fake, b.z.s1Messages, c, proxyqOptions{MaxInFlight: b.z.s1MaxInFlight, RateLimit: 1e6})
	if err != nil {
		return nil, err
	}
	r := p / q
	return []Row{{Scenario: 1, Measure: fmt.Sprintf("throughput, 0ms API latency, concurrency %d, best of %d (proxyq: ledger, limits, metrics, records on)", c, b.z.repeats),
		Unit: "tasks/s", Proxyq: p, Peer: q, Ratio: r, Target: "proxyq/peer ≥ 0.9", Met: met(r >= 0.9)}}, nil
}

// scenario2: throughput at 200ms latency with 1000 in flight in one process.
func (b *bencher) scenario2(ctx context.Context) ([]Row, error) {
	fake, err := startFake(proxytest.Config{Latency: s2Latency})
	if err != nil {
		return nil, err
	}
	defer fake.close()
	c := b.z.s2Concurrency
	ideal := float64(c) / s2Latency.Seconds()
	p, q, err := b.compare(ctx, 2, fake, b.z.s2Messages, c, proxyqOptions{})
	if err != nil {
		return nil, err
	}
	measure := fmt.Sprintf("throughput, %v API latency, concurrency %d in one process, best of %d", s2Latency, c, b.z.repeats)
	return []Row{
		{Scenario: 2, Measure: measure, Unit: "tasks/s", Proxyq: p, Peer: q, Ratio: p / q, Target: "", Met: nil},
		{Scenario: 2, Measure: fmt.Sprintf("… as a fraction of ideal (%d/%v = %.0f/s)", c, s2Latency, ideal), Unit: "fraction",
			Proxyq: p / ideal, Peer: q / ideal, Ratio: p / ideal, Target: "proxyq ≥ 0.9 of ideal", Met: met(p/ideal >= 0.9)},
	}, nil
}

// scenario3: pick-up latency at low load, one message every s3Every.
func (b *bencher) scenario3(ctx context.Context) ([]Row, error) {
	fake, err := startFake(proxytest.Config{})
	if err != nil {
		return nil, err
	}
	defer fake.close()
	lat := map[string][]time.Duration{}
	for _, side := range []string{sideProxyq, sidePeer} {
		d, err := b.pickup(ctx, side, fake)
		if err != nil {
			return nil, err
		}
		lat[side] = d
	}
	p50p, p99p := percentile(lat[sideProxyq], 50), percentile(lat[sideProxyq], 99)
	p50q, p99q := percentile(lat[sidePeer], 50), percentile(lat[sidePeer], 99)
	measure := fmt.Sprintf("pick-up latency, enqueue → API, 1 msg / %v (%d msgs; proxyq polls every 20ms, peer asynq default 1s)", b.z.s3Every, b.z.s3Messages)
	return []Row{
		{Scenario: 3, Measure: measure + " p50", Unit: "ms", Proxyq: ms(p50p), Peer: ms(p50q), Ratio: nan},
		{Scenario: 3, Measure: measure + " p99", Unit: "ms", Proxyq: ms(p99p), Peer: ms(p99q), Ratio: nan,
			Target: "proxyq p99 < 50ms", Met: met(p99p < 50*time.Millisecond)},
	}, nil
}

func (b *bencher) pickup(ctx context.Context, side string, fake *fakeAPI) ([]time.Duration, error) {
	if err := b.redis.flush(ctx); err != nil {
		return nil, err
	}
	fake.reset()
	var r runner
	if side == sideProxyq {
		w, err := newProxyq(b.redis.opt, fake.URL, proxyqOptions{Concurrency: 50})
		if err != nil {
			return nil, err
		}
		r = w
	} else {
		r = newPeer(b.redis.opt, fake.URL, 50)
	}
	if err := r.Start(); err != nil {
		return nil, err
	}
	defer r.Shutdown()
	enq := tasks.NewEnqueuer(b.redis.opt)
	defer enq.Close()
	time.Sleep(300 * time.Millisecond) // idle: the pool is polling an empty queue
	run := "s3-" + side
	sent := make([]time.Time, b.z.s3Messages)
	next := time.Now()
	for i := range sent {
		time.Sleep(time.Until(next))
		next = next.Add(b.z.s3Every)
		sent[i] = time.Now()
		if _, err := enq.Enqueue(ctx, payload(run, i)); err != nil {
			return nil, err
		}
	}
	out := make([]time.Duration, 0, len(sent))
	deadline := time.Now().Add(5 * time.Second)
	for i, at := range sent {
		for {
			got, ok := fake.arrival(payload(run, i).Body)
			if ok {
				out = append(out, got.Sub(at))
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("%s: message %d never reached the API: %w", side, i, errIncomplete)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	b.logf("scenario 3: %s p50 %v p99 %v", side, percentile(out, 50), percentile(out, 99))
	return out, nil
}

// percentile is the nearest-rank percentile of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// scenario4: enqueue throughput from one producer. The three ways are run in turn, z.repeats
// times, and each keeps its best run: a run slowed by something else on the machine (a GC, a
// lingering server of the previous scenario) says nothing about the code.
func (b *bencher) scenario4(ctx context.Context) ([]Row, error) {
	n := b.z.s4Messages
	enq := tasks.NewEnqueuer(b.redis.opt)
	defer enq.Close()
	client := asynq.NewClient(b.redis.opt) // the peer enqueues with asynq's client directly
	defer client.Close()

	ways := []struct {
		name string
		run  func(tag string) error
	}{
		{"one at a time", func(tag string) error {
			for i := range n {
				if _, err := enq.Enqueue(ctx, payload(tag, i)); err != nil {
					return err
				}
			}
			return nil
		}},
		{"batched", func(tag string) error {
			for start := 0; start < n; start += b.z.s4Batch {
				msgs := make([]tasks.Message, 0, b.z.s4Batch)
				for i := start; i < min(start+b.z.s4Batch, n); i++ {
					msgs = append(msgs, tasks.Message{Payload: payload(tag, i)})
				}
				if _, err := enq.EnqueueBatch(ctx, msgs); err != nil {
					return err
				}
			}
			return nil
		}},
		{"asynq client", func(tag string) error {
			for i := range n {
				data, err := payload(tag, i).Encode()
				if err != nil {
					return err
				}
				if _, err := client.EnqueueContext(ctx, asynq.NewTask(tasks.TypeSendInteraction, data), asynq.Retention(tasks.DefaultRetention)); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	best := make([]float64, len(ways))
	for rep := range b.z.repeats {
		for i, w := range ways {
			if err := b.redis.flush(ctx); err != nil {
				return nil, err
			}
			began := time.Now()
			if err := w.run(fmt.Sprintf("s4-%d-%d", i, rep)); err != nil {
				return nil, fmt.Errorf("%s: %w", w.name, err)
			}
			best[i] = max(best[i], float64(n)/time.Since(began).Seconds())
		}
	}
	single, batched, raw := best[0], best[1], best[2]
	b.logf("scenario 4: one at a time %.0f/s, batched %.0f/s, asynq client %.0f/s (best of %d)", single, batched, raw, b.z.repeats)
	r := batched / single
	return []Row{
		{Scenario: 4, Measure: fmt.Sprintf("enqueue one at a time, one producer (%d msgs, best of %d; peer: asynq.Client.Enqueue)", n, b.z.repeats), Unit: "msgs/s",
			Proxyq: single, Peer: raw, Ratio: single / raw},
		{Scenario: 4, Measure: fmt.Sprintf("enqueue batched (EnqueueBatch of %d), one producer", b.z.s4Batch), Unit: "msgs/s",
			Proxyq: batched, Peer: nan, Ratio: r, Target: "batched/one-at-a-time ≥ 3", Met: met(r >= 3)},
	}, nil
}

// scenario5: peak RSS per 1,000 in flight, each side in a child process, z.repeats times in
// turn; each side keeps its lowest peak (the peak moves with GC timing from run to run).
func (b *bencher) scenario5(ctx context.Context) ([]Row, error) {
	fake, err := startFake(proxytest.Config{Latency: b.z.s5Latency})
	if err != nil {
		return nil, err
	}
	defer fake.close()
	per := map[string]float64{}
	for rep := range b.z.repeats {
		for _, side := range []string{sideProxyq, sidePeer} {
			mb, err := b.peakRSS(ctx, fake, side, fmt.Sprintf("s5-%s-%d", side, rep))
			if err != nil {
				return nil, err
			}
			if old, ok := per[side]; !ok || mb < old {
				per[side] = mb
			}
		}
	}
	r := per[sideProxyq] / per[sidePeer]
	return []Row{{Scenario: 5, Measure: fmt.Sprintf("peak RSS per 1,000 in flight (concurrency %d, API latency %v, child process, lowest of %d)", b.z.s5Concurrency, b.z.s5Latency, b.z.repeats),
		Unit: "MB", Proxyq: per[sideProxyq], Peer: per[sidePeer], Ratio: r, Target: "proxyq/peer ≤ 1", Met: met(r <= 1)}}, nil
}

// peakRSS runs one side in a child process with z.s5Concurrency requests in flight and returns
// its peak RSS in MB per 1,000 requests in flight.
func (b *bencher) peakRSS(ctx context.Context, fake *fakeAPI, side, run string) (float64, error) {
	if err := b.redis.flush(ctx); err != nil {
		return 0, err
	}
	fake.reset()
	enq := tasks.NewEnqueuer(b.redis.opt)
	err := enqueueAll(ctx, enq, run, b.z.s5Messages)
	_ = enq.Close()
	if err != nil {
		return 0, err
	}
	limit := time.Duration(b.z.s5Messages/b.z.s5Concurrency+1)*b.z.s5Latency*4 + time.Minute
	c, err := b.startChild(childArgs{Side: side, Redis: b.redis.url, API: fake.URL, Concurrency: b.z.s5Concurrency,
		Expect: b.z.s5Messages, Timeout: limit})
	if err != nil {
		return 0, err
	}
	res, err := c.wait(limit + 30*time.Second)
	if err != nil {
		return 0, err
	}
	inFlight := fake.Fake.MaxConcurrencySeen(accountSID)
	if inFlight == 0 {
		return 0, fmt.Errorf("%s child: no request reached the API", side)
	}
	b.logf("scenario 5: %s peak RSS %d kB (idle %d kB) with %d in flight; peak heap in use %d kB, stacks %d kB, %d goroutines",
		side, res.PeakRSSKB, res.IdleRSSKB, inFlight, res.HeapInuseKB, res.StackInuseKB, res.Goroutines)
	return float64(res.PeakRSSKB) / 1024 * 1000 / float64(inFlight), nil
}

// scenario6: account limits across three proxyq processes.
func (b *bencher) scenario6(ctx context.Context) ([]Row, error) {
	z := b.z
	// (a) The fake caps the account at K concurrent requests; every worker has MaxInFlight=K.
	capped, err := startFake(proxytest.Config{Latency: s6Latency, MaxConcurrentPerAccount: z.s6Cap})
	if err != nil {
		return nil, err
	}
	defer capped.close()
	ideal := float64(z.s6Cap) / s6Latency.Seconds()
	tput, err := b.fleet(ctx, capped, z.s6Messages, childArgs{MaxInFlight: z.s6Cap})
	if err != nil {
		return nil, err
	}
	tooMany := capped.Fake.Stats().TooManyRequests
	b.logf("scenario 6: cap %d: %.1f tasks/s (ideal %.0f), %d 429s", z.s6Cap, tput, ideal, tooMany)

	// (a') The same cap with the messages over realServices Services, per-Service limits at
	// their defaults, timed over the whole run.
	capped.reset()
	spreadSlope, spreadWhole, err := b.fleetRun(ctx, capped, mixRealistic, z.s6Messages, childArgs{MaxInFlight: z.s6Cap})
	if err != nil {
		return nil, err
	}
	spreadTooMany := capped.Fake.Stats().TooManyRequests
	b.logf("scenario 6: cap %d over %d Services: %.1f tasks/s steady, %.1f over the whole run (ideal %.0f), %d 429s",
		z.s6Cap, realServices, spreadSlope, spreadWhole, ideal, spreadTooMany)

	// (b) No cap at the fake; every worker has RateLimit=R.
	open, err := startFake(proxytest.Config{Latency: s6Latency})
	if err != nil {
		return nil, err
	}
	defer open.close()
	if _, err := b.fleet(ctx, open, z.s6RateMessages, childArgs{Rate: z.s6Rate}); err != nil {
		return nil, err
	}
	burst := int(math.Ceil(z.s6Rate))
	achieved := arrivalRate(open.createTimes(), burst)
	b.logf("scenario 6: rate %v/s: achieved %.2f/s", z.s6Rate, achieved)
	procs := fmt.Sprintf("%d proxyq processes × concurrency %d", z.s6Processes, z.s6Concurrency)
	return []Row{
		{Scenario: 6, Measure: fmt.Sprintf("429s received, fake caps account at K=%d, %v latency, MAX_IN_FLIGHT=K, %s", z.s6Cap, s6Latency, procs),
			Unit: "count", Proxyq: float64(tooMany), Peer: nan, Ratio: nan, Target: "0", Met: met(tooMany == 0)},
		{Scenario: 6, Measure: fmt.Sprintf("… throughput as a fraction of K/latency (%.0f/s)", ideal), Unit: "fraction",
			Proxyq: tput / ideal, Peer: nan, Ratio: tput / ideal, Target: "≥ 0.9", Met: met(tput/ideal >= 0.9)},
		{Scenario: 6, Measure: fmt.Sprintf("the same cap, messages over %d Services (per-Service limits at their defaults): 429s", realServices),
			Unit: "count", Proxyq: float64(spreadTooMany), Peer: nan, Ratio: nan, Target: "0", Met: met(spreadTooMany == 0)},
		{Scenario: 6, Measure: "… throughput as a fraction of K/latency, timed from outside: first create → the queue's counter says all done", Unit: "fraction",
			Proxyq: spreadWhole / ideal, Peer: nan, Ratio: spreadWhole / ideal, Target: "≥ 0.9", Met: met(spreadWhole/ideal >= 0.9)},
		{Scenario: 6, Measure: "… steady part (slope from 10% to 90% done)", Unit: "fraction",
			Proxyq: spreadSlope / ideal, Peer: nan, Ratio: spreadSlope / ideal},
		{Scenario: 6, Measure: fmt.Sprintf("achieved rate with RATE_LIMIT=R=%v/s (burst %d excluded), %s", z.s6Rate, burst, procs), Unit: "fraction of R",
			Proxyq: achieved / z.s6Rate, Peer: nan, Ratio: achieved / z.s6Rate, Target: "0.95 … 1.05", Met: met(math.Abs(achieved/z.s6Rate-1) <= 0.05)},
	}, nil
}

// fleet enqueues n messages, runs z.s6Processes proxyq children (with a's limits) until all are
// completed, and returns the steady-state rate of completions.
func (b *bencher) fleet(ctx context.Context, fake *fakeAPI, n int, a childArgs) (float64, error) {
	slope, _, err := b.fleetRun(ctx, fake, mixNarrow, n, a)
	return slope, err
}

// fleetRun is fleet on a mix: on the realistic one the messages go to realServices Services and
// the workers keep the per-Service limits at their defaults. It returns the steady rate (the
// slope between 10% and 90% done) and the whole run's, timed from outside: from the first
// create at the fake to the queue's counter saying every message is done.
func (b *bencher) fleetRun(ctx context.Context, fake *fakeAPI, m mix, n int, a childArgs) (steady, whole float64, err error) {
	if err := b.redis.flush(ctx); err != nil {
		return 0, 0, err
	}
	fake.reset()
	if err := b.enqueueMix(ctx, m, sideProxyq, "s6-"+string(m), n); err != nil {
		return 0, 0, err
	}
	if m == mixRealistic {
		a.ServiceRate = worker.DefaultServiceRate
	}
	a.Side, a.Redis, a.API, a.Concurrency, a.Expect = sideProxyq, b.redis.url, fake.URL, b.z.s6Concurrency, n
	expected := float64(n) / max(a.Rate, float64(max(a.MaxInFlight, 1))/s6Latency.Seconds())
	a.Timeout = time.Duration(expected*4*float64(time.Second)) + time.Minute
	var children []*child
	for range b.z.s6Processes {
		c, err := b.startChild(a)
		if err != nil {
			for _, c := range children {
				_ = c.cmd.Process.Kill()
			}
			return 0, 0, err
		}
		children = append(children, c)
	}
	rdb := b.redis.client()
	defer rdb.Close()
	doneAt, times, counts, merr := waitCompleted(ctx, rdb, n, a.Timeout)
	for _, c := range children {
		if _, err := c.wait(a.Timeout + 30*time.Second); err != nil && merr == nil {
			merr = err
		}
	}
	if merr != nil {
		return 0, 0, merr
	}
	if creates := fake.createTimes(); len(creates) > 0 {
		whole = float64(n) / doneAt.Sub(creates[0]).Seconds()
	}
	return slope(times, counts, n), whole, nil
}
