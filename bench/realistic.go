package bench

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/delivery"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/worker"
)

// The realistic mix (scenarios 7 and 8) is what a fleet sends, not what is cheapest to
// measure: every message carries an idempotency key (the HTTP API asks for one); messages go
// to realServices Services; a Proxy participant belongs to one session (a ride, an order) of
// two participants and receives realPerParticipant messages; delivery status is on, so the
// fake (in a process of its own) POSTs signed status callbacks (queued, sent, delivered) to
// the callback endpoint `proxyq serve` mounts, run in a process of its own on the same Redis;
// and the worker runs with the delivery hook and poller, as `proxyq worker` does. Redis runs
// with AOF on, appendfsync everysec, as the README recommends.
//
// The naive peer gets the same messages, with the same keys as asynq task IDs, and no
// delivery status: its fake posts no callbacks (a naive handler has no endpoint for them).

const (
	realServices               = 100
	realParticipantsPerSession = 2
	realPerParticipant         = 3
	// realCallbackWorkers are the fake's concurrent callback POSTs: enough that callbacks
	// keep up with the sends, as Twilio's do.
	realCallbackWorkers = 32

	// s8Latency and s8Concurrency are scenario 8's second row: Twilio's latency, with as many
	// sends in flight as a worker sized for it runs.
	s8Latency     = 200 * time.Millisecond
	s8Concurrency = 500
)

// mix names a message mix of scenarios 7 and 8.
type mix string

const (
	mixRealistic mix = "realistic"
	mixNarrow    mix = "narrow"
)

// realisticMessage is message i of n in a run on the realistic mix, and its idempotency key.
// Sessions are interleaved, as a fleet's are: a ride's messages are minutes apart, so
// consecutive messages belong to different sessions (and Services), not one session's six
// back to back, which would put a whole worker pool on a handful of Services at once.
func realisticMessage(run string, i, n int) (tasks.Payload, string) {
	perSession := realParticipantsPerSession * realPerParticipant
	sessions := (n + perSession - 1) / perSession
	session, nth := i%sessions, i/sessions
	participant := session*realParticipantsPerSession + nth%realParticipantsPerSession
	return tasks.Payload{
		ServiceSID:     fmt.Sprintf("KS%032x", 0xbe0d00+session%realServices),
		SessionSID:     fmt.Sprintf("KC%032x", 0xbe0d000000+session),
		ParticipantSID: fmt.Sprintf("KP%032x", 0xbe0d000000+participant),
		Body:           fmt.Sprintf("bench %s #%d", run, i),
	}, idempotencyKey(run, i)
}

// idempotencyKey is what producers send as a key: a UUID (36 characters), fixed per run and
// message.
func idempotencyKey(run string, i int) string {
	h := sha256.Sum256([]byte(run + "#" + strconv.Itoa(i)))
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// enqueueRealistic enqueues n messages of the realistic mix through proxyq's Enqueuer, each
// under its idempotency key.
func enqueueRealistic(ctx context.Context, e *tasks.Enqueuer, run string, n int) error {
	const batch = 500
	for start := 0; start < n; start += batch {
		msgs := make([]tasks.Message, 0, batch)
		for i := start; i < min(start+batch, n); i++ {
			p, key := realisticMessage(run, i, n)
			msgs = append(msgs, tasks.Message{Payload: p, Options: []tasks.Option{tasks.IdempotencyKey(key)}})
		}
		if _, err := e.EnqueueBatch(ctx, msgs); err != nil {
			return fmt.Errorf("enqueue: %w", err)
		}
	}
	return nil
}

// enqueueRealisticPeer enqueues the same messages as the peer would: asynq's client, the key
// as the task ID, the options proxyq's Enqueuer gives a task.
func enqueueRealisticPeer(ctx context.Context, opt asynq.RedisConnOpt, run string, n int) error {
	client := asynq.NewClient(opt)
	defer client.Close()
	for i := range n {
		p, key := realisticMessage(run, i, n)
		data, err := p.Encode()
		if err != nil {
			return err
		}
		if _, err := client.EnqueueContext(ctx, asynq.NewTask(tasks.TypeSendInteraction, data), asynq.TaskID(key),
			asynq.MaxRetry(tasks.DefaultMaxRetry), asynq.Timeout(tasks.DefaultTimeout), asynq.Retention(tasks.DefaultRetention)); err != nil {
			return fmt.Errorf("enqueue: %w", err)
		}
	}
	return nil
}

// enqueueMix enqueues n messages of the mix for a side.
func (b *bencher) enqueueMix(ctx context.Context, m mix, side, run string, n int) error {
	if m == mixRealistic && side == sidePeer {
		return enqueueRealisticPeer(ctx, b.redis.opt, run, n)
	}
	enq := tasks.NewEnqueuer(b.redis.opt)
	defer enq.Close()
	if m == mixRealistic {
		return enqueueRealistic(ctx, enq, run, n)
	}
	return enqueueAll(ctx, enq, run, n)
}

// realRig is what the realistic mix runs beside the sides: a fake posting callbacks to the
// callback endpoint (for proxyq), a fake posting none (for the peer), and the endpoint.
type realRig struct {
	withCallbacks, plain, receiver *remoteFake
}

func (b *bencher) startRealRig(latency time.Duration) (*realRig, error) {
	recv, err := b.startRemote(childArgs{Side: sideCallbacks, Redis: b.redis.url, CPUProfile: b.childProfile("callbacks", latency)})
	if err != nil {
		return nil, err
	}
	withCB, err := b.startRemote(childArgs{Side: "fake", CallbackURL: recv.URL + delivery.CallbackPath, Latency: latency,
		CPUProfile: b.childProfile("fake-posting-callbacks", latency)})
	if err != nil {
		recv.close()
		return nil, err
	}
	plain, err := b.startRemote(childArgs{Side: "fake", Latency: latency})
	if err != nil {
		recv.close()
		withCB.close()
		return nil, err
	}
	return &realRig{withCallbacks: withCB, plain: plain, receiver: recv}, nil
}

// childProfile is the file for a CPU profile of one of the rig's children, empty when
// profiling was not asked for.
func (b *bencher) childProfile(name string, latency time.Duration) string {
	if b.cfg.ProfileDir == "" {
		return ""
	}
	_ = os.MkdirAll(b.cfg.ProfileDir, 0o755)
	return filepath.Join(b.cfg.ProfileDir, fmt.Sprintf("cpu-%s-%s.pprof", name, latency))
}

func (r *realRig) close() {
	r.plain.close()
	r.withCallbacks.close()
	r.receiver.close()
}

// apiFor is the fake a side sends to.
func (r *realRig) apiFor(side string) string {
	if side == sideProxyq {
		return r.withCallbacks.URL
	}
	return r.plain.URL
}

// sideCallbacks is the child that serves the status callback endpoint.
const sideCallbacks = "callbacks"

// serveCallbacksChild serves delivery's callback handler at delivery.CallbackPath on a
// loopback port, on the Redis at redisURL, as `proxyq serve` mounts it with PROXYQ_PUBLIC_URL
// set; prints {"URL": …} and serves until its stdin ends.
func serveCallbacksChild(redisURL string, stdout io.Writer) error {
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		return fmt.Errorf("--redis: %w", err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	base := "http://" + l.Addr().String()
	dsvc, err := delivery.New(delivery.Config{AccountSID: accountSID}, rdb, delivery.NewMetrics(prometheus.NewRegistry()), zap.NewNop())
	if err != nil {
		return err
	}
	h, err := dsvc.CallbackHandler(delivery.CallbackConfig{PublicURL: base,
		Tokens: delivery.Tokens{delivery.StaticToken{AccountSID: accountSID, Token: authToken}}})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle(delivery.CallbackPath, h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	if err := json.NewEncoder(stdout).Encode(map[string]string{"URL": base}); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	return srv.Close()
}

// deliveringWorker is proxyq's worker as `proxyq worker` runs it with delivery status: the
// delivery hook after each recorded send, the delivery tasks, and the polling sweeper.
type deliveringWorker struct {
	w      *worker.Worker
	dwork  *delivery.Worker
	rdb    redis.UniversalClient
	cancel context.CancelFunc
	done   chan struct{}
}

// limiterShim lets the delivery worker share the pool's account limiter, as cmd does.
type limiterShim struct{ l worker.Limiter }

func (s *limiterShim) Acquire(ctx context.Context, account string, maxWait time.Duration) (func(bool), error) {
	p, err := s.l.Acquire(ctx, account, "delivery", maxWait)
	if err != nil {
		return nil, err
	}
	return p.Release, nil
}

func newDeliveringWorker(opt asynq.RedisConnOpt, apiURL string, o proxyqOptions) (*deliveringWorker, error) {
	rdb, ok := opt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return nil, fmt.Errorf("unsupported Redis option %T", opt)
	}
	dsvc, err := delivery.New(delivery.Config{AccountSID: accountSID}, rdb, delivery.NewMetrics(prometheus.NewRegistry()), zap.NewNop())
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	api, err := proxyclient.New(proxyclient.Config{AccountSID: accountSID, AuthToken: authToken, BaseURL: apiURL, HTTPTimeout: worker.DefaultHTTPTimeout})
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	shim := &limiterShim{}
	dwork, err := dsvc.NewWorker(delivery.ClientFetcher(api), shim)
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	w, err := newProxyqDeps(opt, apiURL, o, worker.Deps{Delivery: dsvc, Tasks: dwork.Handlers()})
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	shim.l = w.Limiter()
	return &deliveringWorker{w: w, dwork: dwork, rdb: rdb}, nil
}

func (d *deliveringWorker) Start() error {
	if err := d.w.Start(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel, d.done = cancel, make(chan struct{})
	go func() { defer close(d.done); d.dwork.RunPoller(ctx) }()
	return nil
}

func (d *deliveringWorker) Shutdown() {
	if d.cancel != nil {
		d.cancel()
		<-d.done
	}
	d.w.Shutdown()
	_ = d.rdb.Close()
}

// newRunner builds a side's pool for a mix.
func (b *bencher) newRunner(m mix, side, apiURL string, o proxyqOptions) (runner, error) {
	switch {
	case side == sidePeer:
		return newPeer(b.redis.opt, apiURL, o.Concurrency), nil
	case m == mixRealistic:
		o.ServiceRate = worker.DefaultServiceRate // the defaults: 100 Services never reach it
		return newDeliveringWorker(b.redis.opt, apiURL, o)
	default:
		return newProxyq(b.redis.opt, apiURL, o)
	}
}

// Keys the delivery package keeps (delivery/service.go), for the memory breakdown.
const (
	deliveryPollKey  = "proxyq:delivery:poll"
	deliveryEarlyKey = "proxyq:delivery:early"
)

// waitStatusesSettled waits, after the sends, until every status callback is applied: the poll
// set (messages still waiting for a final status) is empty, and has stayed so for a moment. A
// callback the fake gave up on (its retries failed under load) leaves its message to the poll,
// minutes later: when the set stops shrinking for statusStall, what is left is logged and the
// run goes on. It returns the benchmark's own commands. (The early-callback set is not waited
// for: a callback that raced its message's record may leave a member whose list is gone, swept
// after PendingTTL.)
func (b *bencher) waitStatusesSettled(ctx context.Context, rdb *redis.Client, limit time.Duration) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var polls int64
	quiet := 0
	last, lastChange := int64(-1), time.Now()
	for {
		waiting, err := rdb.ZCard(ctx, deliveryPollKey).Result()
		polls++
		if err != nil {
			return polls, fmt.Errorf("wait for status callbacks: %w", err)
		}
		if waiting != last {
			last, lastChange = waiting, time.Now()
		}
		if waiting == 0 {
			quiet++
		} else {
			quiet = 0
		}
		switch {
		case quiet >= 5: // 1s without a message waiting: the last callbacks have landed
			return polls, nil
		case time.Since(lastChange) >= statusStall:
			b.logf("%d messages still wait for a final status after %v without a callback: left to the poll", waiting, statusStall)
			return polls, nil
		}
		select {
		case <-ctx.Done():
			return polls, fmt.Errorf("%d messages still waiting for a final status: %w", waiting, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// statusStall is how long the poll set may stay the same before the rest is left to the poll.
const statusStall = 10 * time.Second

// useAOF switches the Redis to AOF with appendfsync everysec, as the README recommends, and
// returns what puts the previous settings back.
func (b *bencher) useAOF(ctx context.Context) (restore func(), note string) {
	rdb := b.redis.client()
	defer rdb.Close()
	old, err := rdb.ConfigGet(ctx, "append*").Result()
	if err != nil {
		return func() {}, "AOF as the Redis given has it"
	}
	if err := rdb.ConfigSet(ctx, "appendonly", "yes").Err(); err != nil {
		return func() {}, "AOF as the Redis given has it"
	}
	_ = rdb.ConfigSet(ctx, "appendfsync", "everysec").Err()
	// Wait for the initial rewrite that turning AOF on starts, so it is not measured.
	for range 200 {
		info, err := rdb.Info(ctx, "persistence").Result()
		if err != nil || !strings.Contains(info, "aof_rewrite_in_progress:1") && strings.Contains(info, "aof_enabled:1") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return func() {
		c := b.redis.client()
		defer c.Close()
		for _, k := range []string{"appendfsync", "appendonly"} {
			if v, ok := old[k]; ok {
				_ = c.ConfigSet(context.WithoutCancel(ctx), k, v).Err()
			}
		}
	}, "AOF on, appendfsync everysec"
}

// breakdown writes where a side's commands, Redis's time and held bytes go, per message,
// largest first.
func (b *bencher) breakdown(what string, c sideCost) {
	per := func(v int64) float64 { return float64(v) / float64(c.n) }
	type kv struct {
		k string
		v int64
	}
	sorted := func(m map[string]int64) []kv {
		out := make([]kv, 0, len(m))
		for k, v := range m {
			out = append(out, kv{k, v})
		}
		slices.SortFunc(out, func(a, b kv) int {
			if a.v != b.v {
				return int(b.v - a.v)
			}
			return strings.Compare(a.k, b.k)
		})
		return out
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s: commands per message (%.2f in all):", what, per(c.stats.Calls))
	for _, e := range sorted(c.stats.PerCommand) {
		fmt.Fprintf(&sb, " %s %.2f,", e.k, per(e.v))
	}
	fmt.Fprintf(&sb, "\n    Redis µs per message by command (commandstats usec; a script's includes its commands'):")
	for _, e := range sorted(c.stats.UsecByCmd) {
		fmt.Fprintf(&sb, " %s %.1f,", e.k, per(e.v))
	}
	fmt.Fprintf(&sb, "\n    memory per message (MEMORY USAGE; keys in all):")
	for _, e := range sorted(c.keys.Bytes) {
		fmt.Fprintf(&sb, " %s %.0f B (%d keys),", e.k, per(e.v), c.keys.Keys[e.k])
	}
	b.logf("%s", strings.TrimSuffix(sb.String(), ","))
}
