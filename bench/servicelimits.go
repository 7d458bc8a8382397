package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
)

// Scenario 10: Twilio's per-Service limit. The fake enforces 30 requests/s per Service over a
// 5-second sliding window (429 with code 80621) and caps the account at s6Cap concurrent
// requests (20429). Three proxyq processes (defaults: per-Service limits on, MAX_IN_FLIGHT =
// the cap) send to two Services as fast as they can; then three naive peer servers (asynq
// defaults, no limits) send the same messages. Reported: 429s each side got, and each
// Service's rate over whole windows (5 s + proxyq's 0.25 s margin) from its first create, as a
// fraction of 30/s.

const (
	s7Rate   = 30.0
	s7Window = 5250 * time.Millisecond // Twilio's 5 s plus proxyq's margin: proxyq's period

	// ampleServiceRate is the per-Service rate of scenarios 1–6: far above anything they send.
	ampleServiceRate = 1e6
)

var s7Services = []string{"KS00000000000000000000000000be0c0a", "KS00000000000000000000000000be0c0b"}

func (b *bencher) scenario10(ctx context.Context) ([]Row, error) {
	z := b.z
	perService, windows := 600, 3 // four windows' worth; three are measured
	if b.cfg.Quick {
		perService, windows = 160, 1
	}
	fake, err := startFake(proxytest.Config{Latency: s6Latency, MaxConcurrentPerAccount: z.s6Cap,
		ServiceLimits: proxytest.ServiceLimits{Rate: s7Rate}})
	if err != nil {
		return nil, err
	}
	defer fake.close()

	// proxyq: three child processes, until every message is sent.
	if err := b.s10Enqueue(ctx, fake, "s10q", perService); err != nil {
		return nil, err
	}
	a := childArgs{Side: sideProxyq, Redis: b.redis.url, API: fake.URL, Concurrency: z.s6Concurrency,
		MaxInFlight: z.s6Cap, ServiceRate: s7Rate, Expect: perService * len(s7Services)}
	a.Timeout = time.Duration(perService/int(s7Rate)*3)*time.Second + time.Minute
	began := time.Now()
	var children []*child
	for range z.s6Processes {
		c, err := b.startChild(a)
		if err != nil {
			for _, c := range children {
				_ = c.cmd.Process.Kill()
			}
			return nil, err
		}
		children = append(children, c)
	}
	var werr error
	for _, c := range children {
		if _, err := c.wait(a.Timeout + 30*time.Second); err != nil && werr == nil {
			werr = err
		}
	}
	if werr != nil {
		return nil, werr
	}
	took := time.Since(began)
	q429 := fake.Fake.Stats().TooManyRequests
	qRates := s7Rates(fake.Fake.Created(), windows)
	b.logf("scenario 10: proxyq %d 429s, %d messages in %v, Service rates %v", q429, a.Expect, took.Round(time.Millisecond), qRates)

	// The naive peer: three asynq servers in this process, for as long as proxyq took.
	if err := b.redis.flush(ctx); err != nil {
		return nil, err
	}
	fake.reset()
	if err := b.s10Enqueue(ctx, fake, "s10p", perService); err != nil {
		return nil, err
	}
	var peers []*peerServer
	for range z.s6Processes {
		p := newPeer(b.redis.opt, fake.URL, z.s6Concurrency)
		if err := p.Start(); err != nil {
			return nil, err
		}
		peers = append(peers, p)
	}
	select {
	case <-time.After(took):
	case <-ctx.Done():
	}
	for _, p := range peers {
		p.Shutdown()
	}
	p429 := fake.Fake.Stats().TooManyRequests
	pRates := s7Rates(fake.Fake.Created(), windows)
	b.logf("scenario 10: peer %d 429s, Service rates %v", p429, pRates)

	procs := fmt.Sprintf("%d processes × concurrency %d", z.s6Processes, z.s6Concurrency)
	rows := []Row{{Scenario: 10, Measure: fmt.Sprintf("429s, fake caps each Service at 30/s over 5s (80621) and the account at K=%d (20429), 2 Services × %d msgs, %s, defaults + MAX_IN_FLIGHT=K", z.s6Cap, perService, procs),
		Unit: "count", Proxyq: float64(q429), Peer: float64(p429), Ratio: nan, Target: "proxyq 0", Met: met(q429 == 0)}}
	for i, ks := range s7Services {
		rows = append(rows, Row{Scenario: 10, Measure: fmt.Sprintf("… Service %c rate over %d whole windows (5.25s) from its first create", 'A'+i, windows),
			Unit: "fraction of 30/s", Proxyq: qRates[ks] / s7Rate, Peer: pRates[ks] / s7Rate, Ratio: qRates[ks] / s7Rate,
			Target: "proxyq ≥ 0.9", Met: met(qRates[ks]/s7Rate >= 0.9)})
	}
	return rows, nil
}

// s10Enqueue enqueues perService messages for each Service, interleaved.
func (b *bencher) s10Enqueue(ctx context.Context, fake *fakeAPI, run string, perService int) error {
	enq := tasks.NewEnqueuer(b.redis.opt)
	defer enq.Close()
	var msgs []tasks.Message
	for i := range perService * len(s7Services) {
		p := payload(run, i)
		p.ServiceSID = s7Services[i%len(s7Services)]
		msgs = append(msgs, tasks.Message{Payload: p})
	}
	for start := 0; start < len(msgs); start += 500 {
		if _, err := enq.EnqueueBatch(ctx, msgs[start:min(start+500, len(msgs))]); err != nil {
			return fmt.Errorf("enqueue: %w", err)
		}
	}
	return nil
}

// s7Rates is each Service's creates per second over `windows` whole windows from its first.
func s7Rates(created []proxytest.Interaction, windows int) map[string]float64 {
	first := map[string]time.Time{}
	for _, in := range created {
		if f, ok := first[in.Service]; !ok || in.CreatedAt.Before(f) {
			first[in.Service] = in.CreatedAt
		}
	}
	span := time.Duration(windows) * s7Window
	counts := map[string]int{}
	for _, in := range created {
		if in.CreatedAt.Before(first[in.Service].Add(span)) {
			counts[in.Service]++
		}
	}
	out := map[string]float64{}
	for _, ks := range s7Services {
		out[ks] = float64(counts[ks]) / span.Seconds()
	}
	return out
}
