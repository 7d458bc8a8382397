package proxytest

import (
	"slices"
	"time"
)

// Interaction records one message interaction the Fake created, whatever answer the client
// then got (an AfterCreate fault still leaves a record: the SMS "went out").
type Interaction struct {
	SID                 string    `json:"sid"`                   // KI…
	Account             string    `json:"account"`               // Basic-auth user: the account key
	AccountSID          string    `json:"account_sid"`           // AC… as reported in the resource
	Service             string    `json:"service_sid"`           // KS…
	Session             string    `json:"session_sid"`           // KC…
	Participant         string    `json:"participant_sid"`       // KP…
	Body                string    `json:"body"`                  // Body form value ("" when only media was sent)
	MediaURLs           []string  `json:"media_urls,omitempty"`  // MediaUrl form values, in order
	OutboundResourceSID string    `json:"outbound_resource_sid"` // SM…
	CreatedAt           time.Time `json:"created_at"`            // from Config.Now, full precision
}

func (in Interaction) clone() Interaction {
	in.MediaURLs = slices.Clone(in.MediaURLs)
	return in
}

// record is a stored interaction plus what is rendered from it once.
type record struct {
	Interaction
	data string // the resource's "data" string
	seq  uint64 // creation number since New or Reset
}

// Stats counts what the Fake has served since New or Reset.
type Stats struct {
	// Requests counts API requests (everything but /_proxytest), including rejected ones.
	Requests int `json:"requests"`
	// Creates counts interactions created, including those whose answer was then faulted.
	Creates int `json:"creates"`
	// TooManyRequests counts 429 answers: scripted or random 429 faults plus concurrency
	// rejections.
	TooManyRequests int `json:"too_many_requests"`
	// ConcurrencyRejections counts 429 answers caused by MaxConcurrentPerAccount.
	ConcurrencyRejections int `json:"concurrency_rejections"`
	// Faults counts faults served, per kind; every kind is present.
	Faults map[Fault]int `json:"faults"`
}

type counters struct {
	requests, creates, tooMany, concurrency int
	faults                                  [faultEnd]int
}

// Created returns a copy of every interaction created, oldest first.
func (f *Fake) Created() []Interaction {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Interaction, len(f.records))
	for i, r := range f.records {
		out[i] = r.clone()
	}
	return out
}

// CreatesForBody returns how many interactions were created with exactly this Body: more
// than one for a body sent once means a duplicate SMS.
func (f *Fake) CreatesForBody(body string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.byBody[body]
}

// MaxConcurrencySeen returns the largest number of requests of account (the Basic-auth user)
// that were in progress at once, counting only requests admitted past
// MaxConcurrentPerAccount.
func (f *Fake) MaxConcurrencySeen(account string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxSeen[account]
}

// InFlight returns how many requests of account are in progress now. Tests use it to wait
// until requests are parked in latency or a hang before acting.
func (f *Fake) InFlight(account string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inFlight[account]
}

// Count returns how many faults of kind were served.
func (f *Fake) Count(kind Fault) int {
	if !kind.Valid() {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats.faults[kind]
}

// Stats returns a snapshot of the counters.
func (f *Fake) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := Stats{
		Requests:              f.stats.requests,
		Creates:               f.stats.creates,
		TooManyRequests:       f.stats.tooMany,
		ConcurrencyRejections: f.stats.concurrency,
		Faults:                make(map[Fault]int, int(faultEnd)-1),
	}
	for k := Fault429; k < faultEnd; k++ {
		s.Faults[k] = f.stats.faults[k]
	}
	return s
}

// Reset forgets created interactions, counters, the fault queue and rates, unknown
// participants and closed sessions, restores Config.Latency and reseeds the RNG: the Fake is
// as New made it. Requests in progress carry on and are still counted as in flight.
func (f *Fake) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resetLocked()
}

func (f *Fake) resetLocked() {
	f.records = nil
	f.seq = 0
	f.byBody = make(map[string]int)
	f.maxSeen = make(map[string]int)
	f.stats = counters{}
	f.queue = nil
	f.rates = nil
	f.unknownParticipants = make(map[string]bool)
	f.closedSessions = make(map[string]bool)
	f.latency = f.cfg.Latency
	f.rng = newRNG(f.cfg.Seed)
	f.cb.reset()
}

// MarkParticipantUnknown makes every request under participant kp answer 404 (code 20404),
// as for a participant removed from its session. Other participants stay lenient: any
// well-formed SID exists.
func (f *Fake) MarkParticipantUnknown(kp string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unknownParticipants[kp] = true
}

// CloseSession makes creates in session kc answer 400 (code 80607), as Twilio does for a
// closed session. Reads still work.
func (f *Fake) CloseSession(kc string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closedSessions[kc] = true
}

// SetLatency sets the latency added to every API request from now on (negative means 0).
// Requests already waiting keep their latency.
func (f *Fake) SetLatency(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.latency = max(d, 0)
}
