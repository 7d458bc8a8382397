package bench

import (
	"context"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// cpuMeter names the processes a run involves (label → pid), to measure the CPU each of them
// spends on it: a count of work done, which a noisy machine moves far less than throughput.
type cpuMeter map[string]int

// The processes a run of the realistic mix involves.
const (
	cpuWorker    = "worker"            // this process: the side's worker pool (and the bench's polling)
	cpuCallbacks = "callback endpoint" // proxyq serve's callback handler, a child
	cpuRedis     = "Redis"
	cpuFake      = "fake Twilio" // Twilio's work: the API and, for proxyq, the callbacks it posts
)

func (m cpuMeter) sample() map[string]time.Duration {
	s := make(map[string]time.Duration, len(m))
	for label, pid := range m {
		if d, ok := processCPU(pid); ok {
			s[label] = d
		}
	}
	return s
}

// settled samples once the processes other than this one (the fake posting callbacks, the
// endpoint and Redis applying them) have stopped spending CPU, waiting at most 5 s.
func (m cpuMeter) settled() map[string]time.Duration {
	s := m.sample()
	for range 25 {
		time.Sleep(200 * time.Millisecond)
		next := m.sample()
		busy := false
		for label, d := range next {
			if label != cpuWorker && d-s[label] > 10*time.Millisecond {
				busy = true
			}
		}
		s = next
		if !busy {
			break
		}
	}
	return s
}

// cpuUse is what one run's processes spent, per message.
type cpuUse map[string]time.Duration

func (u cpuUse) String() string {
	if len(u) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("; CPU per message:")
	for _, label := range []string{cpuWorker, cpuCallbacks, cpuRedis, cpuFake} {
		if d, ok := u[label]; ok {
			b.WriteString(" " + label + " " + strconv.FormatInt(d.Microseconds(), 10) + " µs,")
		}
	}
	return strings.TrimSuffix(b.String(), ",")
}

// total is the CPU of the side's own processes: the worker and, for proxyq, the callback
// endpoint; Redis and the fake are counted apart.
func (u cpuUse) total() time.Duration { return u[cpuWorker] + u[cpuCallbacks] }

// perMessage is the CPU each process spent between before and after, per message.
func perMessage(before, after map[string]time.Duration, n int) cpuUse {
	u := cpuUse{}
	for label, b := range before {
		if a, ok := after[label]; ok {
			u[label] = (a - b) / time.Duration(n)
		}
	}
	return u
}

// redisPID is the process ID the Redis server reports (INFO server), for pinning it or reading
// its CPU when it runs on this machine; 0 when it cannot be read.
func (b *bencher) redisPID(ctx context.Context) int {
	rdb := b.redis.client()
	defer rdb.Close()
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			pid, _ := strconv.Atoi(v)
			return pid
		}
	}
	return 0
}

// cpuMeter is the meter of a side's run on the rig; redisPID 0 leaves Redis out.
func (r *realRig) cpuMeter(side string, redisPID int) cpuMeter {
	m := cpuMeter{cpuWorker: os.Getpid()}
	if redisPID != 0 {
		m[cpuRedis] = redisPID
	}
	if side == sideProxyq {
		m[cpuCallbacks] = r.receiver.pid
		m[cpuFake] = r.withCallbacks.pid
	} else {
		m[cpuFake] = r.plain.pid
	}
	return m
}

// cpuRows are scenario 8's CPU rows for a realistic run, p proxyq's and q the peer's: where a
// message's CPU goes, on each side, in the run that spent least. On a machine with few CPUs
// the sides' processes, Redis and the fake share them, so throughput is the inverse of all of
// it summed; these rows say whose it is.
func cpuRows(p, q cpuUse) []Row {
	if p[cpuWorker] == 0 || q[cpuWorker] == 0 {
		return nil // no /proc here
	}
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	rows := []Row{
		{Scenario: 8, Measure: "… CPU per message of the side's own processes (proxyq: worker + callback endpoint; peer: worker), user+system from /proc until the last callback is in, the run that spent least",
			Unit: "µs", Proxyq: us(p.total()), Peer: us(q.total()), Ratio: us(p.total()) / us(q.total())},
		{Scenario: 8, Measure: "… of it the worker",
			Unit: "µs", Proxyq: us(p[cpuWorker]), Peer: us(q[cpuWorker]), Ratio: us(p[cpuWorker]) / us(q[cpuWorker])},
		{Scenario: 8, Measure: "… of it the callback endpoint (3 signed callbacks per message: queued, sent, delivered)",
			Unit: "µs", Proxyq: us(p[cpuCallbacks]), Peer: math.NaN(), Ratio: math.NaN()},
	}
	if p[cpuRedis] > 0 && q[cpuRedis] > 0 {
		rows = append(rows, Row{Scenario: 8, Measure: "… Redis process CPU per message, same runs", Unit: "µs",
			Proxyq: us(p[cpuRedis]), Peer: us(q[cpuRedis]), Ratio: us(p[cpuRedis]) / us(q[cpuRedis])})
	}
	return append(rows, Row{Scenario: 8, Measure: "… the fake Twilio's CPU per message, on the same CPUs (Twilio's work, not the side's: the API and, for proxyq, posting the callbacks)",
		Unit: "µs", Proxyq: us(p[cpuFake]), Peer: us(q[cpuFake]), Ratio: math.NaN()})
}
