package worker

import (
	"sync"
	"time"
)

// Reserving Service slots ahead, in batches.
//
// Each reservation is one script in Redis, and the script's fixed cost dominates its work, so
// a busy process reserves several consecutive slots of a Service at once and hands them to its
// own requests: the requests waiting while a reservation is in flight (they would each have
// run the script right after it), plus as many as this process's recent demand for that
// Service will use within batchHorizon. A slot is usable until lateTolerance after its time,
// exactly as a lone reservation is; one not used by then is given up (counted in
// proxyq_service_slots_unused_total) and stays counted in the Service's window: the window is
// never exceeded, it is at worst left a little under-used. Demand at Twilio's default 30/s per
// Service is one request per 33ms, so batches there stay single; batching pays for Services
// with raised limits and for bursts.
const (
	// batchHorizon is how far ahead of demand a process reserves: well inside lateTolerance,
	// so that a slot reserved ahead is used on time.
	batchHorizon = 10 * time.Millisecond
	// maxBatch bounds one batch; a tenth of the window's limit bounds it too (reserveBatch), so
	// one process cannot take much of a Service's window from the others.
	maxBatch = 32
)

// reservedSlot is one reserved request time: Redis's clock (ms), its ZSET member, and the
// same instant on this process's clock.
type reservedSlot struct {
	atMs   int64
	member string
	local  time.Time
}

// slotPool holds one (account, Service, endpoint)'s slots reserved ahead by this process.
type slotPool struct {
	mu      sync.Mutex
	slots   []reservedSlot // in time order
	filling chan struct{}  // closed when the batch being reserved returns; nil when none is
	waiting int            // requests waiting for that batch
	short   int            // requests that waited for the last batch and may find it empty
	last    time.Time      // the last request
	gap     time.Duration  // smoothed time between requests
	unused  func(n int)
}

// maxIdlePools bounds the slot pools kept before idle ones are dropped: one per Service
// endpoint is few, but one per conversation endpoint grows with the conversations a process
// ever sent to.
const maxIdlePools = 4096

// pool returns the slot pool of a Service endpoint's key.
func (l *ServiceLimiter) pool(key string) *slotPool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pools) >= maxIdlePools {
		l.dropIdlePools(time.Now())
	}
	p, ok := l.pools[key]
	if !ok {
		p = &slotPool{unused: func(n int) { l.unused.Add(float64(n)) }}
		l.pools[key] = p
	}
	return p
}

// dropIdlePools forgets pools with no slot, no batch in flight and no request for a minute
// (l.mu held). A dropped pool only loses its demand estimate.
func (l *ServiceLimiter) dropIdlePools(now time.Time) {
	for k, p := range l.pools {
		p.mu.Lock()
		idle := len(p.slots) == 0 && p.filling == nil && now.Sub(p.last) > time.Minute
		p.mu.Unlock()
		if idle {
			delete(l.pools, k)
		}
	}
}

// called notes a request, for the demand estimate.
func (p *slotPool) called(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.last.IsZero() {
		d := now.Sub(p.last)
		if p.gap == 0 {
			p.gap = d
		} else {
			p.gap = (7*p.gap + d) / 8
		}
	}
	p.last = now
}

// take hands out the earliest slot due within maxWait. Otherwise, while a batch is being
// reserved it returns a channel closed when that batch is in; else the caller is to reserve a
// batch of fill slots itself (and must call filled).
func (p *slotPool) take(now time.Time, maxWait time.Duration) (s *reservedSlot, fill int, wait <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	stale := 0
	for stale < len(p.slots) && now.Sub(p.slots[stale].local) > lateTolerance {
		stale++
	}
	if stale > 0 {
		p.unused(stale)
		p.slots = p.slots[stale:]
	}
	if len(p.slots) > 0 && p.slots[0].local.Sub(now) <= maxWait {
		first := p.slots[0]
		p.slots = p.slots[1:]
		return &first, 0, nil
	}
	if p.filling != nil {
		p.waiting++
		return nil, 0, p.filling
	}
	fill = 1 + p.short
	if p.gap > 0 {
		fill += int(batchHorizon / p.gap)
	}
	p.short = 0
	p.filling = make(chan struct{})
	return nil, min(fill, maxBatch), nil
}

// filled ends the batch being reserved: its spare slots join the pool (none after an error or
// a refusal) and the requests waiting for it look again.
func (p *slotPool) filled(spare []reservedSlot) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.slots = append(p.slots, spare...)
	p.short = max(0, p.waiting-len(spare))
	p.waiting = 0
	close(p.filling)
	p.filling = nil
}
