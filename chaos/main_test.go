//go:build chaos || cluster

package chaos

import (
	"flag"
	"os"
	"testing"
	"time"

	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/internal/testbin"
)

// Flags; their defaults meet issue 3's proof. See the package doc.
var (
	flagMessages     = flag.Int("chaos.messages", 1000, "messages to enqueue, each with a unique body")
	flagWorkers      = flag.Int("chaos.workers", 3, "worker processes")
	flagKills        = flag.Int("chaos.kills", 30, "SIGKILLs, one every 1-4s at random, each followed by a restart")
	flagFaultRate    = flag.Float64("chaos.fault-rate", 0.03, "rate of each ambiguous fault (500, reset and hang after create)")
	flag429Rate      = flag.Float64("chaos.429-rate", 0.02, "rate of 429 answers (half of them with Retry-After)")
	flagConcurrency  = flag.Int("chaos.concurrency", 3, "PROXYQ_CONCURRENCY of each worker: low, so the run lasts as long as the kills")
	flagLatency      = flag.Duration("chaos.latency", 100*time.Millisecond, "the Fake's latency before it handles a request")
	flagAnswerDelay  = flag.Duration("chaos.answer-delay", 400*time.Millisecond, "mean hold of a create's answer after the interaction exists (uniform 0..2x)")
	flagDrain        = flag.Duration("chaos.drain", 5*time.Minute, "how long to wait, after the last kill, for every message to finish")
	flagSeed         = flag.Int64("chaos.seed", 1, "seed of the kill schedule and of the Fake's faults")
	flagParticipants = flag.Int("chaos.participants", 20, "participants the messages are spread over")
	flagNaive        = flag.Bool("chaos.naive", true, "also run the naive handler for comparison")
	flagEnqueueOver  = flag.Duration("chaos.enqueue-over", 0, "spread the enqueues over this long, with the workers already running (0: enqueue everything first)")
	flagLogDir       = flag.String("chaos.logdir", "", "keep the workers' logs in this folder (default: a temporary one, removed)")
)

// naiveWorkerEnv makes the test binary run the naive worker instead of the tests (see naive_test.go).
const naiveWorkerEnv = "CHAOS_NAIVE_WORKER"

func TestMain(m *testing.M) {
	if os.Getenv(naiveWorkerEnv) == "1" {
		os.Exit(naiveWorkerMain())
	}
	code := m.Run()
	redistest.Stop()
	testbin.Remove()
	os.Exit(code)
}
