package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Config says what to run. The zero value runs every scenario at full size on a private Redis.
type Config struct {
	// ChildCommand builds the command of a child process (scenarios 5 and 6) from its arguments,
	// which ChildMain must receive. Default: this executable with "bench --child" before them.
	ChildCommand func(args []string) *exec.Cmd
	// Log receives progress lines (nil: none).
	Log io.Writer
	// Messages overrides the number of messages of scenarios 1, 2, 3, 4 and 6 (0: their own).
	Messages int
	// ProfileDir, when set, receives a CPU profile of each side of scenarios 1, 2 and 8
	// (cpu-<scenario>-<side>.pprof), for `go tool pprof`.
	ProfileDir string
	// Quick uses small sizes: a smoke test of the machinery, not a measurement.
	Quick bool
	// RedisURL is the Redis to run on; its database is flushed before every scenario. Empty: a
	// private redis-server on a free loopback port.
	RedisURL string
	// Scenarios lists the scenarios to run, 1 to 10 (empty: all).
	Scenarios []int
}

// AllScenarios are the scenario numbers, in order.
var AllScenarios = []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	for _, s := range c.Scenarios {
		if s < 1 || s > len(AllScenarios) {
			return fmt.Errorf("bench: Scenarios: %d is not a scenario (want 1 to %d)", s, len(AllScenarios))
		}
	}
	if c.Messages < 0 {
		return fmt.Errorf("bench: Messages must not be negative, got %d", c.Messages)
	}
	return nil
}

// sizes are the scenario parameters of a full or quick run.
type sizes struct {
	s1Messages                   int
	s2Messages, s2Concurrency    int
	s3Messages                   int
	s3Every                      time.Duration
	s4Messages, s4Batch          int
	s5Messages, s5Concurrency    int
	s5Latency                    time.Duration
	s6Messages, s6Cap            int
	s6RateMessages               int
	s6Rate                       float64
	s6Processes, s6Concurrency   int
	s1Concurrency, s1MaxInFlight int
	s7Messages                   int
	repeats                      int // runs of scenarios 1, 2, 4 and 5, keeping the best
}

func (c Config) sizes() sizes {
	z := sizes{
		s1Messages: 20000, s1Concurrency: 50, s1MaxInFlight: 1000,
		s2Messages: 30000, s2Concurrency: 1000,
		s3Messages: 100, s3Every: 100 * time.Millisecond,
		s4Messages: 20000, s4Batch: 100,
		s5Messages: 3000, s5Concurrency: 1000, s5Latency: time.Second,
		s6Messages: 2000, s6Cap: 20, s6RateMessages: 500, s6Rate: 50, s6Processes: 3, s6Concurrency: 50,
		s7Messages: 5000,
		repeats:    3,
	}
	if c.Quick {
		z = sizes{
			s1Messages: 300, s1Concurrency: 50, s1MaxInFlight: 1000,
			s2Messages: 200, s2Concurrency: 100,
			s3Messages: 6, s3Every: 50 * time.Millisecond,
			s4Messages: 300, s4Batch: 100,
			s5Messages: 100, s5Concurrency: 50, s5Latency: 200 * time.Millisecond,
			s6Messages: 40, s6Cap: 4, s6RateMessages: 30, s6Rate: 20, s6Processes: 3, s6Concurrency: 10,
			s7Messages: 200,
			repeats:    1,
		}
	}
	if n := c.Messages; n > 0 {
		z.s1Messages, z.s2Messages, z.s3Messages, z.s4Messages, z.s6Messages, z.s6RateMessages, z.s7Messages = n, n, n, n, n, n, n
	}
	return z
}

// Latencies of the scenarios that fix one.
const (
	s2Latency = 200 * time.Millisecond
	s6Latency = 100 * time.Millisecond
)

// Row is one line of the report. Proxyq, Peer and Ratio are NaN where they do not apply.
type Row struct {
	Scenario int
	Measure  string
	Unit     string
	Proxyq   float64
	Peer     float64
	// Ratio is the number the target is about (proxyq/peer, or a fraction of an ideal).
	Ratio  float64
	Target string
	// Met says whether the target was met; nil when the row has no target.
	Met *bool
}

// Report is the outcome of a run.
type Report struct {
	// Machine is where the run happened: OS/arch, cores, CPU model, memory, Go and Redis versions.
	Machine string
	Quick   bool
	Rows    []Row
	Took    time.Duration
	// Date is when the run began.
	Date time.Time
}

// Run runs the scenarios of cfg and returns their report. It returns an error when a scenario
// could not run (Redis unreachable, a child process failed, messages not processed in time);
// missing a target is not an error, it is in the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	scenarios := cfg.Scenarios
	if len(scenarios) == 0 {
		scenarios = AllScenarios
	}
	scenarios = slices.Compact(slices.Sorted(slices.Values(scenarios)))
	began := time.Now()
	rs, err := startRedis(ctx, cfg.RedisURL)
	if err != nil {
		return nil, err
	}
	defer rs.close()
	b := &bencher{cfg: cfg, z: cfg.sizes(), redis: rs, log: cfg.Log, began: began}
	if b.log == nil {
		b.log = io.Discard
	}
	if b.cfg.ChildCommand == nil {
		b.cfg.ChildCommand = defaultChildCommand
	}
	rep := &Report{Machine: machine() + ", " + rs.info, Quick: cfg.Quick, Date: began}
	run := map[int]func(context.Context) ([]Row, error){
		1: b.scenario1, 2: b.scenario2, 3: b.scenario3, 4: b.scenario4, 5: b.scenario5, 6: b.scenario6,
		7: b.scenario7, 8: b.scenario8,
		9:  b.scenario9,  // lanes.go
		10: b.scenario10, // servicelimits.go
	}
	for _, s := range scenarios {
		if err := rs.flush(ctx); err != nil {
			return rep, fmt.Errorf("scenario %d: flush redis: %w", s, err)
		}
		b.logf("scenario %d", s)
		rows, err := run[s](ctx)
		rep.Rows = append(rep.Rows, rows...)
		if err != nil {
			return rep, fmt.Errorf("scenario %d: %w", s, err)
		}
	}
	rep.Took = time.Since(began)
	return rep, nil
}

type bencher struct {
	cfg   Config
	z     sizes
	redis *redisServer
	log   io.Writer
	began time.Time
}

func (b *bencher) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "bench: [%5.1fs] "+format+"\n", append([]any{time.Since(b.began).Seconds()}, args...)...)
}

// machine describes where the run happened.
func machine() string {
	model := ""
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
		_ = f.Close()
	}
	s := fmt.Sprintf("%s/%s, %d CPUs", runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	if model != "" {
		s += " (" + model + ")"
	}
	if mem := memTotal(); mem > 0 {
		s += fmt.Sprintf(", %.1f GiB memory", float64(mem)/(1<<30))
	}
	return s + ", " + runtime.Version()
}

// memTotal is the machine's memory in bytes from /proc/meminfo; 0 where there is none.
func memTotal() uint64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			var kb uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

// Format writes the report as a Markdown table.
func (r *Report) Format(w io.Writer) error {
	var sb strings.Builder
	fmt.Fprintf(&sb, "Machine: %s\n", r.Machine)
	if r.Quick {
		sb.WriteString("QUICK MODE: small sizes, a smoke test, not a measurement.\n")
	}
	sb.WriteString("\n")
	r.writeTable(&sb)
	if r.Took > 0 {
		fmt.Fprintf(&sb, "\nTook %s.\n", r.Took.Round(time.Second))
	}
	_, err := io.WriteString(w, sb.String())
	return err
}

// writeTable writes the rows as a Markdown table.
func (r *Report) writeTable(sb *strings.Builder) {
	sb.WriteString("| # | measure | unit | proxyq | peer | ratio | target | met |\n")
	sb.WriteString("|---|---|---|---:|---:|---:|---|---|\n")
	for _, row := range r.Rows {
		met := ""
		if row.Met != nil {
			met = map[bool]string{true: "yes", false: "**NO**"}[*row.Met]
		}
		fmt.Fprintf(sb, "| %d | %s | %s | %s | %s | %s | %s | %s |\n", row.Scenario, row.Measure, row.Unit,
			num(row.Proxyq), num(row.Peer), ratio(row.Ratio), row.Target, met)
	}
}

func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v == math.Trunc(v) || math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func ratio(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}

func met(ok bool) *bool { return &ok }

// errIncomplete marks a run whose messages were not all processed.
var errIncomplete = errors.New("not every message was processed")
