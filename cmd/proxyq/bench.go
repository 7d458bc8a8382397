package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/proxyq/proxyq/bench"
)

func init() {
	register(&command{name: "bench", summary: "measure proxyq beside a naive asynq peer (throughput, latency, memory, limits, Redis cost)", run: runBench})
}

// runBench runs `proxyq bench`. `proxyq bench --child …` is one worker process of the benchmark
// (scenarios 5, 6 and 8 start them); it is not meant to be run by hand.
func runBench(ctx context.Context, m *Main, args []string) error {
	if len(args) > 0 && args[0] == "--child" {
		return bench.ChildMain(ctx, args[1:], m.Stdout)
	}
	fs := m.newFlagSet("bench", "bench [--scenarios 1,2,3,4,5,6,7,8,9,10] [--messages N] [--quick] [--redis URL] [--cpuprofile DIR] [--write-docs FILE]")
	scenarios := fs.String("scenarios", "1,2,3,4,5,6,7,8,9,10", "comma-separated scenarios to run (see the README)")
	messages := fs.Int("messages", 0, "messages per scenario for scenarios 1, 2, 3, 4 and 6 (0: each scenario's default)")
	quick := fs.Bool("quick", false, "small sizes: a smoke test of the benchmark, not a measurement")
	redisURL := fs.String("redis", "", "Redis to run on; its database is FLUSHED before every scenario (default: start a private redis-server; REDIS_URL is deliberately not read)")
	profileDir := fs.String("cpuprofile", "", "directory for CPU profiles of each side of the throughput scenarios (1, 2, 8), and in 8 of the callback endpoint and the fake posting callbacks")
	writeDocs := fs.String("write-docs", "", "also put the table, with the machine and date, between the <!-- bench:begin --> and <!-- bench:end --> lines of this Markdown file (e.g. docs/performance.md)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *writeDocs != "" {
		// Checked before the run, which takes minutes, and again when writing.
		doc, err := os.ReadFile(*writeDocs)
		switch {
		case err != nil:
			return usagef("--write-docs: %v", err)
		case *quick:
			return usagef("--write-docs cannot be combined with --quick: quick sizes are a smoke test, not figures to publish")
		}
		if err := bench.CheckMarkers(doc); err != nil {
			return usagef("--write-docs %s: %v", *writeDocs, err)
		}
	}
	cfg := bench.Config{Messages: *messages, Quick: *quick, RedisURL: *redisURL, ProfileDir: *profileDir, Log: m.Stderr}
	for _, s := range strings.Split(*scenarios, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return usagef("--scenarios: %q is not a scenario number", s)
		}
		cfg.Scenarios = append(cfg.Scenarios, n)
	}
	if err := cfg.Validate(); err != nil {
		return usagef("%s", strings.TrimPrefix(err.Error(), "bench: "))
	}
	rep, err := bench.Run(ctx, cfg)
	if rep != nil {
		if ferr := rep.Format(m.Stdout); ferr != nil && err == nil {
			err = ferr
		}
	}
	if err == nil && *writeDocs != "" {
		if err := bench.WriteDocs(*writeDocs, rep); err != nil {
			return fmt.Errorf("--write-docs: %w", err)
		}
		fmt.Fprintf(m.Stderr, "bench: wrote the table into %s\n", *writeDocs)
	}
	return err
}
