package worker

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	base, max := time.Second, time.Minute
	for n := 0; n < 40; n++ {
		want := max
		if n < 6 {
			want = base << n
		}
		lo := Backoff(n, base, max, func() float64 { return 0 })
		hi := Backoff(n, base, max, func() float64 { return 0.999999 })
		if lo != want/2 || hi < want*99/100 || hi > want {
			t.Fatalf("Backoff(%d) spans [%v, %v], want [%v, %v)", n, lo, hi, want/2, want)
		}
	}
}

func TestRetryIntent(t *testing.T) {
	t.Parallel()
	cfg := Config{}.WithDefaults()
	wait := &retryLater{After: 3 * time.Second, Err: errors.New("429")}
	wrapped := fmt.Errorf("handler: %w", wait)
	if isFailure(wrapped) {
		t.Error("a 429 wait counted as a failed attempt")
	}
	if d := cfg.retryDelay(7, wrapped, nil); d != 3*time.Second {
		t.Errorf("retry delay = %v, want the Retry-After 3s", d)
	}
	fail := &retryLater{Failure: true, Err: errors.New("503")}
	if !isFailure(fail) || !isFailure(errors.New("redis down")) {
		t.Error("a 503 or plain error not counted as a failure")
	}
	if d := cfg.retryDelay(2, fail, nil); d < 2*time.Second || d >= 4*time.Second {
		t.Errorf("retry delay after the 3rd failure = %v, want backoff in [2s, 4s)", d)
	}
	arch := archive(errors.New("twilio 20404"))
	if !errors.Is(arch, asynq.SkipRetry) || !strings.Contains(arch.Error(), "20404") {
		t.Errorf("archive(err) = %v, want SkipRetry keeping the reason", arch)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if err := (Config{}).WithDefaults().Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	d := Config{}.WithDefaults()
	if d.ShutdownTimeout != 45*time.Second || d.PollInterval != 20*time.Millisecond || d.Concurrency != 50 || d.DequeueLoops != 2 {
		t.Fatalf("defaults = %+v", d)
	}
	if one := (Config{Concurrency: 1}).WithDefaults(); one.DequeueLoops != 1 {
		t.Fatalf("Concurrency 1 gets %d dequeue loops by default, want 1 (a loop needs a handler)", one.DequeueLoops)
	}
	cases := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"concurrency", func(c *Config) { c.Concurrency = -1 }, "Concurrency must be between 1 and 10000"},
		{"dequeue loops", func(c *Config) { c.DequeueLoops = 17 }, "DequeueLoops must be between 1 and 16 and at most Concurrency (50), got 17"},
		{"dequeue loops above concurrency", func(c *Config) { c.Concurrency, c.DequeueLoops = 3, 4 }, "at most Concurrency (3), got 4"},
		{"http timeout", func(c *Config) { c.HTTPTimeout = 500 * time.Millisecond }, "HTTPTimeout must be at least 1s"},
		{"shutdown shorter than a request", func(c *Config) { c.ShutdownTimeout = 16 * time.Second }, "ShutdownTimeout must be at least HTTPTimeout+5s"},
		{"queue priority", func(c *Config) { c.Queues = map[string]int{"default": 0} }, `priority of "default" must be at least 1`},
		{"queue name", func(c *Config) { c.Queues = map[string]int{"a b": 1} }, `queue name "a b"`},
		{"skew", func(c *Config) { c.ReconcileSkew = time.Millisecond }, "ReconcileSkew must be at least 1s"},
		{"pages", func(c *Config) { c.ReconcileMaxPages = 1000 }, "ReconcileMaxPages must be between 1 and 100"},
		{"rate", func(c *Config) { c.RateLimit = -1 }, "RateLimit must be a finite number"},
		{"rate NaN", func(c *Config) { c.RateLimit = math.NaN() }, "RateLimit must be a finite number"},
		// Issue 20 item 3: no upper bound let a run wait past its Service slot's window.
		{"limiter wait beyond the Service window", func(c *Config) { c.LimiterMaxWait = 5*time.Second + time.Millisecond },
			"LimiterMaxWait must be at most the per-Service window ServiceWindow (5s) while per-Service limits are on"},
		{"limiter wait beyond a shorter window", func(c *Config) { c.LimiterMaxWait, c.ServiceLimits.Window = 3*time.Second, 2*time.Second },
			"ServiceWindow (2s)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{}.WithDefaults()
			tc.mod(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want it to say %q", err, tc.want)
			}
		})
	}
	for _, ok := range []Config{
		{LimiterMaxWait: 5 * time.Second},
		{LimiterMaxWait: 8 * time.Second, ServiceLimits: ServiceLimits{Window: 10 * time.Second}},
		{LimiterMaxWait: time.Minute, ServiceLimits: ServiceLimits{Off: true}},
	} {
		if err := ok.WithDefaults().Validate(); err != nil {
			t.Errorf("LimiterMaxWait %v with %+v: %v", ok.LimiterMaxWait, ok.ServiceLimits, err)
		}
	}
}

func TestShareSplitsConcurrencyEvenly(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n, loops int
		want     []int
	}{{50, 2, []int{25, 25}}, {5, 3, []int{2, 2, 1}}, {1, 1, []int{1}}, {7, 7, []int{1, 1, 1, 1, 1, 1, 1}}} {
		var got []int
		sum := 0
		for i := range tc.loops {
			got = append(got, share(tc.n, tc.loops, i))
			sum += got[i]
		}
		if !slices.Equal(got, tc.want) || sum != tc.n {
			t.Errorf("share(%d, %d, i) = %v, want %v", tc.n, tc.loops, got, tc.want)
		}
	}
}

func TestParseQueues(t *testing.T) {
	t.Parallel()
	q, err := ParseQueues("critical=6, default=3,low")
	if err != nil || q["critical"] != 6 || q["default"] != 3 || q["low"] != 1 {
		t.Fatalf("ParseQueues = %v, %v", q, err)
	}
	for _, bad := range []string{"", "a=x", "a=1,a=2", "a=1.5"} {
		if _, err := ParseQueues(bad); err == nil {
			t.Errorf("ParseQueues(%q) accepted", bad)
		}
	}
}
