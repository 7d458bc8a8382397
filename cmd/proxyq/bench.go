package main

import (
	"context"
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
	fs := m.newFlagSet("bench", "bench [--scenarios 1,2,3,4,5,6,7,8,9,10] [--messages N] [--quick] [--redis URL] [--cpuprofile DIR]")
	scenarios := fs.String("scenarios", "1,2,3,4,5,6,7,8,9,10", "comma-separated scenarios to run (see the README)")
	messages := fs.Int("messages", 0, "messages per scenario for scenarios 1, 2, 3, 4 and 6 (0: each scenario's default)")
	quick := fs.Bool("quick", false, "small sizes: a smoke test of the benchmark, not a measurement")
	redisURL := fs.String("redis", "", "Redis to run on; its database is FLUSHED before every scenario (default: start a private redis-server; REDIS_URL is deliberately not read)")
	profileDir := fs.String("cpuprofile", "", "directory for CPU profiles of each side of the throughput scenarios (1, 2, 8)")
	if err := parseFlags(fs, args); err != nil {
		return err
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
	return err
}
