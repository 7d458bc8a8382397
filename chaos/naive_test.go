//go:build chaos || cluster

package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/tasks"
)

// The naive worker: what most teams write first on asynq. Decode the payload, POST it to
// Twilio with net/http, return the error; asynq retries any error. It has no send ledger and no
// reconciliation, so a retry after an answer it never saw sends the message again.
//
// It runs as a child process of the test (the test binary re-executed with CHAOS_NAIVE_WORKER=1)
// so that it can be SIGKILLed like `proxyq worker`, and it reads the same environment variables.
// Its retry backoff, polling intervals and shutdown timeout are set like proxyq's, not left at
// asynq's defaults (a 15 s to minutes retry delay), so that the two runs take the same time and
// differ only in the handler.

// naiveWorkerMain runs the naive worker until SIGTERM or SIGINT and returns the exit code.
func naiveWorkerMain() int {
	cfg, err := naiveConfigFromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "naive worker:", err)
		return 2
	}
	redisOpt, err := asynq.ParseRedisURI(cfg.redisURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, "naive worker: REDIS_URL:", err)
		return 2
	}
	srv := asynq.NewServer(redisOpt, asynq.Config{
		Concurrency:              cfg.concurrency,
		Queues:                   map[string]int{tasks.DefaultQueue: 1},
		TaskCheckInterval:        cfg.pollInterval,
		DelayedTaskCheckInterval: cfg.delayedCheck,
		ShutdownTimeout:          cfg.shutdownTimeout,
		RetryDelayFunc: func(n int, _ error, _ *asynq.Task) time.Duration {
			return backoff(n, cfg.backoffBase, cfg.backoffMax)
		},
		LogLevel: asynq.WarnLevel,
	})
	h := &naiveHandler{
		base:   strings.TrimRight(cfg.apiBase, "/"),
		user:   cfg.accountSID,
		secret: cfg.authToken,
		client: &http.Client{
			Timeout:   cfg.httpTimeout,
			Transport: &http.Transport{MaxIdleConnsPerHost: cfg.concurrency},
		},
	}
	mux := asynq.NewServeMux()
	mux.Handle(tasks.TypeSendInteraction, h)
	// Run returns after SIGTERM or SIGINT, once the in-flight tasks finished or the shutdown
	// timeout passed.
	if err := srv.Run(mux); err != nil {
		fmt.Fprintln(os.Stderr, "naive worker:", err)
		return 1
	}
	return 0
}

type naiveHandler struct {
	base, user, secret string
	client             *http.Client
}

// ProcessTask is the whole naive handler.
func (h *naiveHandler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var p tasks.Payload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return err
	}
	form := url.Values{}
	form.Set("Body", p.Body)
	for _, u := range p.MediaURLs {
		form.Add("MediaUrl", u)
	}
	u := h.base + "/v1/Services/" + p.ServiceSID + "/Sessions/" + p.SessionSID +
		"/Participants/" + p.ParticipantSID + "/MessageInteractions"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.SetBasicAuth(h.user, h.secret)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("twilio answered %s", resp.Status)
	}
	return nil
}

type naiveConfig struct {
	redisURL, apiBase, accountSID, authToken string
	concurrency                              int
	httpTimeout, shutdownTimeout             time.Duration
	backoffBase, backoffMax                  time.Duration
	pollInterval, delayedCheck               time.Duration
}

// naiveConfigFromEnv reads the variables `proxyq worker` reads, with proxyq's defaults.
func naiveConfigFromEnv(getenv func(string) string) (naiveConfig, error) {
	var firstErr error
	str := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	dur := func(name string, def time.Duration) time.Duration {
		v := getenv(name)
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("%s=%q: %v", name, v, err)
		}
		return d
	}
	c := naiveConfig{
		redisURL:        str("REDIS_URL", "redis://127.0.0.1:6379/0"),
		apiBase:         str("PROXYQ_API_BASE_URL", ""),
		accountSID:      str("TWILIO_ACCOUNT_SID", ""),
		authToken:       str("TWILIO_AUTH_TOKEN", ""),
		httpTimeout:     dur("PROXYQ_HTTP_TIMEOUT", 15*time.Second),
		shutdownTimeout: dur("PROXYQ_SHUTDOWN_TIMEOUT", 45*time.Second),
		backoffBase:     dur("PROXYQ_BACKOFF_BASE", time.Second),
		backoffMax:      dur("PROXYQ_BACKOFF_MAX", 5*time.Minute),
		pollInterval:    dur("PROXYQ_POLL_INTERVAL", 20*time.Millisecond),
		delayedCheck:    dur("PROXYQ_DELAYED_CHECK_INTERVAL", time.Second),
	}
	n, err := strconv.Atoi(str("PROXYQ_CONCURRENCY", "50"))
	if err != nil || n < 1 {
		return c, fmt.Errorf("PROXYQ_CONCURRENCY=%q: want a whole number, 1 or more", getenv("PROXYQ_CONCURRENCY"))
	}
	c.concurrency = n
	if firstErr != nil {
		return c, firstErr
	}
	if c.apiBase == "" || c.accountSID == "" || c.authToken == "" {
		return c, fmt.Errorf("PROXYQ_API_BASE_URL, TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are required")
	}
	return c, nil
}

// backoff is exponential from base, capped at max, with jitter in [d/2, d): the shape of
// worker.Backoff, written out here so the naive worker owes nothing to proxyq's worker package.
func backoff(n int, base, max time.Duration) time.Duration {
	d := max
	if n < 32 {
		if b := base << n; b > 0 && b < max {
			d = b
		}
	}
	return d/2 + time.Duration(rand.Float64()*float64(d/2))
}
