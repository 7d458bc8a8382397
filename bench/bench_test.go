package bench

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/proxyq/proxyq/internal/redistest"
)

// childEnv makes the test binary act as a benchmark child process (see TestMain).
const childEnv = "PROXYQ_BENCH_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if err := ChildMain(context.Background(), os.Args[1:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	redistest.Main(m)
}

// testChildCommand runs this test binary as a child.
func testChildCommand(args []string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	return cmd
}

// TestQuickRunReportsEveryRow runs every scenario at quick sizes: the machinery works end to end
// and every number is sane. It asserts no speed: quick mode measures nothing.
func TestQuickRunReportsEveryRow(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes and runs for a few seconds")
	}
	db := redistest.NewDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var log bytes.Buffer
	rep, err := Run(ctx, Config{Quick: true, RedisURL: db.URL(), ChildCommand: testChildCommand, Log: &log})
	if err != nil {
		t.Fatalf("Run: %v\nlog:\n%s", err, log.String())
	}
	type want struct {
		scenario int
		measure  string
		proxyq   bool // proxyq column set
		peer     bool // peer column set
		zeroOK   bool // proxyq may be 0 (a count of 429s)
	}
	wants := []want{
		{1, "throughput, 0ms", true, true, false},
		{2, "throughput, 200ms", true, true, false},
		{2, "fraction of ideal", true, true, false},
		{3, "p50", true, true, false},
		{3, "p99", true, true, false},
		{4, "one at a time", true, true, false},
		{4, "batched", true, false, false},
		{5, "peak RSS", true, true, false},
		{6, "429s received", true, false, true},
		{6, "fraction of K/latency", true, false, false},
		{6, "messages over 100 Services", true, false, true},
		{6, "timed from outside", true, false, false},
		{6, "steady part", true, false, false},
		{6, "achieved rate", true, false, false},
		{7, "realistic mix", true, true, false},
		{7, "commandstats usec", true, true, false},
		{7, "process CPU", true, true, false},
		{7, "memory held per completed message while retained", true, true, false},
		{7, "asynq's task hash", true, true, false},
		{7, "kept by proxyq beyond", true, false, false},
		{7, "per million messages a day", true, true, false},
		{7, "hash-max-listpack-value", true, true, false},
		{7, "narrow mix", true, true, false},
		{7, "Redis CPU", true, true, false},
		{7, "memory held per completed message", true, true, false},
		{7, "transient", true, false, true},
		{7, "commands with both account limits", true, true, false},
		{7, "Redis CPU with both account limits", true, true, false},
		{8, "realistic mix", true, true, false},
		{8, "CPU per message of the side's own processes", true, true, true},
		{8, "of it the worker", true, true, true},
		{8, "of it the callback endpoint", true, false, true},
		{8, "Redis process CPU per message", true, true, true},
		{8, "fake Twilio's CPU", true, true, true},
		{8, "200ms API latency", true, true, false},
		{8, "CPU per message of the side's own processes", true, true, true},
		{8, "of it the worker", true, true, true},
		{8, "of it the callback endpoint", true, false, true},
		{8, "Redis process CPU per message", true, true, true},
		{8, "fake Twilio's CPU", true, true, true},
		{8, "narrow mix", true, true, false},
		{8, "one dequeue loop", true, true, false},
		{9, "hand-off", true, false, false},
		{9, "hand-off", true, false, false},
		{9, "lanes × ", true, false, false},
		{10, "429s, fake caps each Service", true, true, true},
		{10, "Service A rate", true, true, false},
		{10, "Service B rate", true, true, false},
	}
	if len(rep.Rows) != len(wants) {
		t.Errorf("report has %d rows, want %d", len(rep.Rows), len(wants))
	}
	for i, w := range wants {
		if i >= len(rep.Rows) {
			break
		}
		row := rep.Rows[i]
		t.Run(fmt.Sprintf("%d/%s", w.scenario, w.measure), func(t *testing.T) {
			if row.Scenario != w.scenario || !strings.Contains(row.Measure, w.measure) {
				t.Fatalf("row %d = scenario %d %q, want scenario %d containing %q", i, row.Scenario, row.Measure, w.scenario, w.measure)
			}
			sane := func(name string, v float64, set, zeroOK bool) {
				switch {
				case !set && !math.IsNaN(v):
					t.Errorf("%s = %v, want no value", name, v)
				case set && (math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || (v == 0 && !zeroOK)):
					t.Errorf("%s = %v, want a positive number", name, v)
				}
			}
			sane("proxyq", row.Proxyq, w.proxyq, w.zeroOK)
			sane("peer", row.Peer, w.peer, false)
		})
	}
	var out bytes.Buffer
	if err := rep.Format(&out); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out.String(), "\n| "); got != len(wants)+1 {
		t.Errorf("formatted table has %d rows (with header), want %d:\n%s", got, len(wants)+1, out.String())
	}
	t.Logf("\n%s\n%s", log.String(), out.String())
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"zero", Config{}, ""},
		{"some scenarios", Config{Scenarios: []int{1, 6}}, ""},
		{"scenario 0", Config{Scenarios: []int{0}}, "0 is not a scenario"},
		{"scenario 11", Config{Scenarios: []int{11}}, "11 is not a scenario"},
		{"negative messages", Config{Messages: -1}, "Messages must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Validate() = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestPercentileAndRates(t *testing.T) {
	t.Parallel()
	ds := make([]time.Duration, 100)
	for i := range ds {
		ds[i] = time.Duration(100-i) * time.Millisecond
	}
	for _, tt := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {1, time.Millisecond}} {
		if got := percentile(ds, tt.p); got != tt.want {
			t.Errorf("percentile(%v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(nil) = %v, want 0", got)
	}

	// 10 per second, evenly: both estimators say 10/s.
	t0 := time.Unix(1000, 0)
	var times []time.Time
	var counts []int64
	for i := range 101 {
		times = append(times, t0.Add(time.Duration(i)*100*time.Millisecond))
		counts = append(counts, int64(i))
	}
	if got := slope(times, counts, 100); math.Abs(got-10) > 1e-9 {
		t.Errorf("slope = %v, want 10", got)
	}
	if got := arrivalRate(times, 0); math.Abs(got-10) > 1e-9 {
		t.Errorf("arrivalRate = %v, want 10", got)
	}
	// A burst of 20 at t0 first: skipping it gives the steady rate back.
	burst := append(make([]time.Time, 0, 121), times...)
	for range 20 {
		burst = append([]time.Time{t0}, burst...)
	}
	if got := arrivalRate(burst, 20); math.Abs(got-10) > 1e-9 {
		t.Errorf("arrivalRate after burst = %v, want 10", got)
	}
}
