package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
)

// A child process runs one worker pool (proxyq or the peer) until the queue has a given number
// of completed messages, then prints one JSON line (childResult) with its peak RSS and exits.
// Scenarios 5 and 6 use children so that memory is measured per process and so that several
// workers share the account limits the way separate replicas do.

// childArgs are a child's settings; they travel as flags.
type childArgs struct {
	Side        string // "proxyq" or "peer"
	Redis       string // redis:// URL
	API         string // fake base URL
	Concurrency int
	MaxInFlight int
	Rate        float64
	ServiceRate float64       // proxyq per-Service rate (0: ample, so only its cost is measured)
	Expect      int           // stop when this many messages are completed (by anyone)
	Timeout     time.Duration // give up after this
	// The fake child's (Side "fake"): its latency, and the callback_url of its Services
	// (empty: no status callbacks).
	Latency     time.Duration
	CallbackURL string
	// CPUProfile, when set, is a file for a CPU profile of the child's whole life (the
	// realistic mix's fake and callback endpoint, under --cpuprofile).
	CPUProfile string
}

func (a childArgs) flags() []string {
	return []string{
		"--side", a.Side, "--redis", a.Redis, "--api", a.API,
		"--concurrency", strconv.Itoa(a.Concurrency), "--max-in-flight", strconv.Itoa(a.MaxInFlight),
		"--rate", strconv.FormatFloat(a.Rate, 'g', -1, 64), "--expect", strconv.Itoa(a.Expect),
		"--timeout", a.Timeout.String(), "--service-rate", strconv.FormatFloat(a.ServiceRate, 'g', -1, 64),
		"--latency", a.Latency.String(), "--callback-url", a.CallbackURL, "--cpuprofile", a.CPUProfile,
	}
}

// childResult is what a child prints.
type childResult struct {
	Side      string `json:"side"`
	PeakRSSKB int64  `json:"peak_rss_kb"` // VmHWM at the end
	IdleRSSKB int64  `json:"idle_rss_kb"` // VmRSS before the pool started
	Completed int64  `json:"completed"`
	// Largest values seen while running (sampled every 20ms), to explain the peak.
	HeapInuseKB  int64 `json:"heap_inuse_kb"`
	StackInuseKB int64 `json:"stack_inuse_kb"`
	Goroutines   int   `json:"goroutines"`
}

func defaultChildCommand(args []string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	return exec.Command(exe, append([]string{"bench", "--child"}, args...)...)
}

// ChildMain is the body of `proxyq bench --child …`: it runs one worker pool as told by args
// and writes its result as one JSON line to stdout. It returns an error for bad arguments, a
// pool that cannot start, or a timeout.
func ChildMain(ctx context.Context, args []string, stdout io.Writer) error {
	var a childArgs
	fs := flag.NewFlagSet("bench --child", flag.ContinueOnError)
	fs.StringVar(&a.Side, "side", "", "proxyq or peer")
	fs.StringVar(&a.Redis, "redis", "", "Redis URL")
	fs.StringVar(&a.API, "api", "", "fake API base URL")
	fs.IntVar(&a.Concurrency, "concurrency", 50, "worker concurrency")
	fs.IntVar(&a.MaxInFlight, "max-in-flight", 0, "proxyq MaxInFlight")
	fs.Float64Var(&a.Rate, "rate", 0, "proxyq RateLimit")
	fs.Float64Var(&a.ServiceRate, "service-rate", 0, "proxyq per-Service rate (0: ample)")
	fs.IntVar(&a.Expect, "expect", 0, "completed messages to wait for")
	fs.DurationVar(&a.Timeout, "timeout", time.Minute, "give up after")
	fs.DurationVar(&a.Latency, "latency", 0, "the fake's API latency")
	fs.StringVar(&a.CallbackURL, "callback-url", "", "the fake's status callback URL (empty: none)")
	fs.StringVar(&a.CPUProfile, "cpuprofile", "", "write a CPU profile of the child's life here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if a.CPUProfile != "" {
		stop, err := startCPUProfile(a.CPUProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	switch a.Side {
	case "fake":
		return serveFakeChild(stdout, a)
	case sideCallbacks:
		return serveCallbacksChild(a.Redis, stdout)
	}
	ropt, err := asynq.ParseRedisURI(a.Redis)
	if err != nil {
		return fmt.Errorf("--redis: %w", err)
	}
	copt, ok := ropt.(asynq.RedisClientOpt)
	if !ok {
		return fmt.Errorf("--redis: want a redis:// or rediss:// URL, got %T", ropt)
	}
	rs := &redisServer{opt: copt}
	rdb := rs.client()
	defer rdb.Close()
	idle := procStatusKB("VmRSS")
	heapWritten := false
	if os.Getenv("PROXYQ_BENCH_HEAPPROFILE") != "" {
		runtime.MemProfileRate = 4096
	}
	var r runner
	switch a.Side {
	case "proxyq":
		r, err = newProxyq(ropt, a.API, proxyqOptions{Concurrency: a.Concurrency, MaxInFlight: a.MaxInFlight, RateLimit: a.Rate, ServiceRate: a.ServiceRate})
	case "peer":
		r = newPeer(ropt, a.API, a.Concurrency)
	default:
		err = fmt.Errorf("--side %q: want proxyq or peer", a.Side)
	}
	if err != nil {
		return err
	}
	if err := r.Start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, a.Timeout)
	defer cancel()
	var (
		done int64
		peak childResult
		ms   runtime.MemStats
	)
	for {
		runtime.ReadMemStats(&ms)
		peak.HeapInuseKB = max(peak.HeapInuseKB, int64(ms.HeapInuse>>10))
		peak.StackInuseKB = max(peak.StackInuseKB, int64(ms.StackInuse>>10))
		peak.Goroutines = max(peak.Goroutines, runtime.NumGoroutine())
		if p := os.Getenv("PROXYQ_BENCH_HEAPPROFILE"); p != "" && runtime.NumGoroutine() > 3*a.Concurrency && !heapWritten {
			heapWritten = writeHeapProfile(p + "." + a.Side)
		}
		done, err = completed(ctx, rdb)
		if err == nil && done >= int64(a.Expect) {
			break
		}
		select {
		case <-ctx.Done():
			r.Shutdown()
			return fmt.Errorf("%s child: %d of %d messages completed: %w", a.Side, done, a.Expect, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	res := peak
	res.Side, res.PeakRSSKB, res.IdleRSSKB, res.Completed = a.Side, procStatusKB("VmHWM"), idle, done
	if err := json.NewEncoder(stdout).Encode(res); err != nil {
		return err
	}
	r.Shutdown()
	return nil
}

// writeHeapProfile writes a heap profile to path (for diagnosing scenario 5 by hand).
func writeHeapProfile(path string) bool {
	f, err := os.Create(path)
	if err != nil {
		return false
	}
	defer f.Close()
	runtime.GC()
	return pprof.WriteHeapProfile(f) == nil
}

// procStatusKB reads a "kB" field of /proc/self/status (0 where there is none).
func procStatusKB(field string) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// child is a running child process.
type child struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr bytes.Buffer
}

func (b *bencher) startChild(a childArgs) (*child, error) {
	c := &child{cmd: b.cfg.ChildCommand(a.flags())}
	c.cmd.Stdout = &c.stdout
	c.cmd.Stderr = &c.stderr
	if c.cmd.SysProcAttr == nil {
		dieWithParent(c.cmd)
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start child: %w", err)
	}
	return c, nil
}

// wait waits for the child to exit (killing it after limit) and returns its result.
func (c *child) wait(limit time.Duration) (childResult, error) {
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(limit):
		_ = c.cmd.Process.Kill()
		<-done
		err = errors.New("timed out")
	}
	var res childResult
	sc := bufio.NewScanner(&c.stdout)
	for sc.Scan() {
		if json.Unmarshal(sc.Bytes(), &res) == nil && res.Side != "" {
			break
		}
	}
	if err != nil || res.Side == "" {
		msg := strings.TrimSpace(c.stderr.String())
		if len(msg) > 2000 {
			msg = msg[len(msg)-2000:]
		}
		return res, fmt.Errorf("child %v: %v; stderr: %s", c.cmd.Args[1:], err, msg)
	}
	return res, nil
}
