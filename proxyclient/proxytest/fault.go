package proxytest

import (
	"errors"
	"fmt"
	"math"
)

// Fault is a failure the Fake can serve instead of a normal answer to a create request.
// "BeforeCreate" faults (and 429s) leave no interaction behind, like Twilio's promise that a
// 429 was not processed; "AfterCreate" faults create the interaction (a real SMS would have
// gone out) and then fail the answer, which is what makes a blind retry send twice.
type Fault int

// Fault kinds. The zero value is not a fault.
const (
	// Fault429 answers 429 with code 20429 and no Retry-After. Nothing is created.
	Fault429 Fault = iota + 1
	// Fault429RetryAfter answers 429 with code 20429 and "Retry-After: 1". Nothing is created.
	Fault429RetryAfter
	// Fault503 answers 503 with code 20503 before creating anything.
	Fault503
	// Fault500BeforeCreate answers 500 with code 20500 before creating anything (the client
	// cannot tell it from Fault500AfterCreate).
	Fault500BeforeCreate
	// Fault500AfterCreate creates the interaction, then answers 500 with code 20500.
	Fault500AfterCreate
	// Fault502AfterCreate creates the interaction, then answers 502 with a load balancer's
	// HTML body (not JSON).
	Fault502AfterCreate
	// Fault504AfterCreate creates the interaction, then answers 504 with a load balancer's
	// HTML body (not JSON).
	Fault504AfterCreate
	// FaultResetAfterCreate creates the interaction, then closes the TCP connection with
	// SO_LINGER 0: the client sees a connection reset and no response at all.
	FaultResetAfterCreate
	// FaultHangAfterCreate creates the interaction, then answers nothing until the client goes
	// away, the Fake is closed (503) or Config.HangLimit passes (504, HTML).
	FaultHangAfterCreate

	faultEnd // one past the last kind
)

var faultNames = [...]string{
	Fault429:              "429",
	Fault429RetryAfter:    "429-retry-after",
	Fault503:              "503",
	Fault500BeforeCreate:  "500-before-create",
	Fault500AfterCreate:   "500-after-create",
	Fault502AfterCreate:   "502-after-create",
	Fault504AfterCreate:   "504-after-create",
	FaultResetAfterCreate: "reset-after-create",
	FaultHangAfterCreate:  "hang-after-create",
}

// ErrUnknownFault is wrapped by errors about a Fault value or name that is not one of the kinds.
var ErrUnknownFault = errors.New("proxytest: unknown fault")

// ErrInvalidFaultRate is wrapped by SetFaultRates errors about a rate out of range.
var ErrInvalidFaultRate = errors.New("proxytest: invalid fault rate")

// Faults returns every fault kind, in declaration order.
func Faults() []Fault {
	out := make([]Fault, 0, int(faultEnd)-1)
	for k := Fault429; k < faultEnd; k++ {
		out = append(out, k)
	}
	return out
}

// Valid reports whether k is one of the declared kinds.
func (k Fault) Valid() bool { return k >= Fault429 && k < faultEnd }

// String returns the kind's stable name ("429", "hang-after-create", …), which ParseFault
// accepts and which keys the fault counts in Stats' JSON.
func (k Fault) String() string {
	if k.Valid() {
		return faultNames[k]
	}
	return fmt.Sprintf("Fault(%d)", int(k))
}

// MarshalText encodes k as its name. It returns an error wrapping ErrUnknownFault for an
// undeclared value.
func (k Fault) MarshalText() ([]byte, error) {
	if !k.Valid() {
		return nil, fmt.Errorf("%w: %d", ErrUnknownFault, int(k))
	}
	return []byte(faultNames[k]), nil
}

// UnmarshalText decodes a name produced by MarshalText. It returns an error wrapping
// ErrUnknownFault for any other text.
func (k *Fault) UnmarshalText(b []byte) error {
	v, err := ParseFault(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// ParseFault returns the kind named s (see Fault.String). It returns an error wrapping
// ErrUnknownFault when no kind has that name.
func ParseFault(s string) (Fault, error) {
	for k := Fault429; k < faultEnd; k++ {
		if faultNames[k] == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("%w: %q", ErrUnknownFault, s)
}

// createsBefore reports whether the fault is served instead of creating the interaction.
func (k Fault) createsBefore() bool {
	switch k {
	case Fault429, Fault429RetryAfter, Fault503, Fault500BeforeCreate:
		return true
	}
	return false
}

// Inject appends n faults of the given kind to the scripted FIFO queue. Each create request
// that would otherwise succeed takes the next queued fault; only when the queue is empty are
// the random rates of SetFaultRates consulted. Requests rejected for another reason (auth, bad
// SID, missing body, closed session…) do not consume faults, so scripts stay deterministic.
// n <= 0 does nothing. It returns an error wrapping ErrUnknownFault for an undeclared kind.
func (f *Fake) Inject(kind Fault, n int) error {
	if !kind.Valid() {
		return fmt.Errorf("%w: %d", ErrUnknownFault, int(kind))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := 0; i < n; i++ {
		f.queue = append(f.queue, kind)
	}
	return nil
}

// Pending returns how many scripted faults are still queued.
func (f *Fake) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.queue)
}

// SetFaultRates replaces the random fault rates: each create request that finds the scripted
// queue empty gets kind k with probability rates[k], drawn from the RNG seeded by Config.Seed.
// Nil or empty turns random faults off. It returns an error wrapping ErrUnknownFault for an
// undeclared kind, or wrapping ErrInvalidFaultRate for a rate outside [0, 1] or rates summing
// to more than 1; the previous rates are then kept.
func (f *Fake) SetFaultRates(rates map[Fault]float64) error {
	var sum float64
	cp := make(map[Fault]float64, len(rates))
	for k, r := range rates {
		if !k.Valid() {
			return fmt.Errorf("%w: %d", ErrUnknownFault, int(k))
		}
		if math.IsNaN(r) || r < 0 || r > 1 {
			return fmt.Errorf("%w: %s has rate %v, want 0..1", ErrInvalidFaultRate, k, r)
		}
		sum += r
		cp[k] = r
	}
	if sum > 1+1e-9 {
		return fmt.Errorf("%w: rates sum to %v, want at most 1", ErrInvalidFaultRate, sum)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rates = cp
	return nil
}

// nextFault takes the fault for one create request (0 for none) and counts it as served.
func (f *Fake) nextFault() Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	var k Fault
	if len(f.queue) > 0 {
		k = f.queue[0]
		f.queue = f.queue[1:]
	} else if len(f.rates) > 0 {
		// One draw, cumulative over kinds in declaration order, so a seed gives one sequence
		// whatever the map's iteration order.
		u := f.rng.Float64()
		var cum float64
		for kind := Fault429; kind < faultEnd; kind++ {
			cum += f.rates[kind]
			if u < cum {
				k = kind
				break
			}
		}
	}
	if k != 0 {
		f.stats.faults[k]++
		if k == Fault429 || k == Fault429RetryAfter {
			f.stats.tooMany++
		}
	}
	return k
}
