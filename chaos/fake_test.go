//go:build chaos || cluster

package chaos

import (
	"bytes"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/proxyq/proxyq/proxyclient/proxytest"
)

// fakeAPI is the proxytest Fake served on 127.0.0.1 under /twilio, behind heldAnswers.
type fakeAPI struct {
	URL  string // base URL for PROXYQ_API_BASE_URL
	Fake *proxytest.Fake
}

// startFake serves a Fake with the scenario's faults. It is closed when the test ends: the Fake
// first, so that hangs end, then the listener.
func startFake(t *testing.T, seed int64) *fakeAPI {
	t.Helper()
	f := proxytest.New(proxytest.Config{
		Latency: *flagLatency,
		Seed:    seed,
		// Far past the workers' 2 s timeout: a hang ends when the client gives up (or dies).
		HangLimit: time.Minute,
		// Twilio promises no order; the one least kind to a client that assumes one.
		ListOrder: proxytest.ListShuffled,
	})
	rate := *flagFaultRate
	if err := f.SetFaultRates(map[proxytest.Fault]float64{
		proxytest.Fault500AfterCreate:   rate,
		proxytest.FaultResetAfterCreate: rate,
		proxytest.FaultHangAfterCreate:  rate,
		proxytest.Fault429:              *flag429Rate / 2,
		proxytest.Fault429RetryAfter:    *flag429Rate / 2,
	}); err != nil {
		t.Fatalf("fault rates: %v", err)
	}
	h := &heldAnswers{next: f.Mount(proxytest.DefaultPrefix), mean: *flagAnswerDelay,
		rng: rand.New(rand.NewPCG(uint64(seed), 0xA5)), done: make(chan struct{})}
	ts := httptest.NewServer(h) // 127.0.0.1
	t.Cleanup(func() {
		f.Close()
		close(h.done)
		ts.Close()
	})
	return &fakeAPI{URL: ts.URL + proxytest.DefaultPrefix, Fake: f}
}

// heldAnswers holds the answer to each POST for a random time (uniform in [0, 2·mean)) after
// the Fake has handled it. The Fake's own latency comes before it creates the interaction; this
// comes after, so a worker killed during it has created an SMS whose answer nobody saw: the
// case a sender must never turn into a second SMS. GETs (reconciliation lists) are not held.
type heldAnswers struct {
	next http.Handler
	mean time.Duration
	done chan struct{} // closed at cleanup: stop holding

	mu  sync.Mutex
	rng *rand.Rand
}

func (h *heldAnswers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || h.mean <= 0 {
		h.next.ServeHTTP(w, r)
		return
	}
	bw := &bufferedWriter{ResponseWriter: w}
	h.next.ServeHTTP(bw, r)
	if bw.status == 0 && bw.buf.Len() == 0 {
		// Nothing to hold: the connection was reset (hijacked through Unwrap) or the client
		// went away during a hang.
		return
	}
	h.mu.Lock()
	d := time.Duration(h.rng.Int64N(int64(2 * h.mean)))
	h.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return
	case <-h.done:
	}
	if bw.status == 0 {
		bw.status = http.StatusOK
	}
	w.WriteHeader(bw.status)
	_, _ = w.Write(bw.buf.Bytes())
}

// bufferedWriter keeps the Fake's answer until heldAnswers releases it. Headers go straight to
// the real writer's map. Unwrap lets http.ResponseController reach the real connection, which
// the Fake hijacks for its reset fault.
type bufferedWriter struct {
	http.ResponseWriter
	status int
	buf    bytes.Buffer
}

func (b *bufferedWriter) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.buf.Write(p)
}

func (b *bufferedWriter) Unwrap() http.ResponseWriter { return b.ResponseWriter }
