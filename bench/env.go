package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/internal/redisproc"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
)

// Fixed identities of the benchmark's messages.
const (
	accountSID = "AC00000000000000000000000000be0c01"
	authToken  = "bench-secret"
	serviceSID = "KS00000000000000000000000000be0c01"
	sessionSID = "KC00000000000000000000000000be0c01"
	queueName  = tasks.DefaultQueue
	// participants spreads the narrow mix's messages over this many participants.
	participants = 64
)

// completedKey is asynq's ZSET of completed tasks of the queue (asynq's internal key layout,
// read only to count): both sides keep completed tasks (the Enqueuer sets a retention).
var completedKey = "asynq:{" + queueName + "}:completed"

// redisServer is the Redis the benchmark runs on.
type redisServer struct {
	url  string // redis://host:port/db
	opt  asynq.RedisClientOpt
	proc *redisproc.Server // nil when given by the caller
	info string            // "redis 7.0.15" for the report
}

// startRedis uses url, or starts a private redis-server when url is empty.
func startRedis(ctx context.Context, rawURL string) (*redisServer, error) {
	if rawURL != "" {
		o, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("redis URL %q: %w", rawURL, err)
		}
		s := &redisServer{url: rawURL, opt: asynq.RedisClientOpt{Addr: o.Addr, DB: o.DB, Username: o.Username, Password: o.Password, TLSConfig: o.TLSConfig}}
		return s, s.describe(ctx)
	}
	proc, err := redisproc.Start("--appendonly", "no")
	if err != nil {
		return nil, fmt.Errorf("%w, or pass --redis redis://host:port/db (that database is flushed)", err)
	}
	s := &redisServer{url: "redis://" + proc.Addr + "/0", opt: asynq.RedisClientOpt{Addr: proc.Addr}, proc: proc}
	return s, s.describe(ctx)
}

func (s *redisServer) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: s.opt.Addr, DB: s.opt.DB, Username: s.opt.Username, Password: s.opt.Password, TLSConfig: s.opt.TLSConfig})
}

func (s *redisServer) describe(ctx context.Context) error {
	c := s.client()
	defer c.Close()
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	for _, line := range bytes.Split([]byte(info), []byte("\n")) {
		if v, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("redis_version:")); ok {
			s.info = "redis " + string(v)
		}
	}
	return nil
}

// flush empties the benchmark's database.
func (s *redisServer) flush(ctx context.Context) error {
	c := s.client()
	defer c.Close()
	return c.FlushDB(ctx).Err()
}

func (s *redisServer) close() {
	if s.proc != nil {
		s.proc.Close()
	}
}

// fakeAPI is the proxytest fake on a loopback port, behind a thin handler that notes when each
// create request arrived (before the fake's latency), keyed by its Body.
type fakeAPI struct {
	Fake *proxytest.Fake
	URL  string // base URL for clients, with the fake's path prefix

	srv *http.Server

	mu       sync.Mutex
	arrivals map[string]time.Time // body → first arrival of a create
	times    []time.Time          // arrival of every create request
}

const fakePrefix = "/twilio"

func startFake(cfg proxytest.Config) (*fakeAPI, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &fakeAPI{Fake: proxytest.New(cfg), URL: "http://" + l.Addr().String() + fakePrefix, arrivals: map[string]time.Time{}}
	inner := f.Fake.Mount(fakePrefix)
	f.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			f.note(r)
		}
		inner.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = f.srv.Serve(l) }()
	return f, nil
}

// note records the arrival of a create and hands the fake an intact body.
func (f *fakeAPI) note(r *http.Request) {
	now := time.Now()
	data, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	_ = r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(data))
	if err != nil {
		return
	}
	form, err := url.ParseQuery(string(data))
	if err != nil {
		return
	}
	body := form.Get("Body")
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, seen := f.arrivals[body]; !seen {
		f.arrivals[body] = now
	}
	f.times = append(f.times, now)
}

// reset forgets every arrival and resets the fake (latency back to its configured value).
func (f *fakeAPI) reset() {
	if f.Fake == nil {
		return // the fake is in another process (scenario 8)
	}
	f.Fake.Reset()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.arrivals = map[string]time.Time{}
	f.times = nil
}

func (f *fakeAPI) arrival(body string) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.arrivals[body]
	return t, ok
}

// createTimes returns the arrival time of every create so far, in order.
func (f *fakeAPI) createTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.times)
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}

// close stops the fake at once. (A graceful Shutdown would wait up to 5s for connections a
// client dialled but never used, which net/http counts as active.)
func (f *fakeAPI) close() {
	f.Fake.Close()
	_ = f.srv.Close()
}

// payload is message i of a run: its Body is unique so the fake's arrival can be matched.
func payload(run string, i int) tasks.Payload {
	return tasks.Payload{
		ServiceSID:     serviceSID,
		SessionSID:     sessionSID,
		ParticipantSID: fmt.Sprintf("KP%032x", 0xbe0c00+i%participants),
		Body:           fmt.Sprintf("bench %s #%d", run, i),
	}
}

// enqueueAll enqueues n messages of run in batches, as fast as one producer can.
func enqueueAll(ctx context.Context, e *tasks.Enqueuer, run string, n int) error {
	const batch = 500
	for start := 0; start < n; start += batch {
		msgs := make([]tasks.Message, 0, batch)
		for i := start; i < min(start+batch, n); i++ {
			msgs = append(msgs, tasks.Message{Payload: payload(run, i)})
		}
		if _, err := e.EnqueueBatch(ctx, msgs); err != nil {
			return fmt.Errorf("enqueue: %w", err)
		}
	}
	return nil
}

// completed returns how many messages of the queue asynq has completed.
func completed(ctx context.Context, rdb *redis.Client) (int64, error) {
	return rdb.ZCard(ctx, completedKey).Result()
}

// waitCompleted polls the completed count until it reaches n and returns when that was seen
// (within 5ms), and the samples taken, for slope.
func waitCompleted(ctx context.Context, rdb *redis.Client, n int, limit time.Duration) (doneAt time.Time, times []time.Time, counts []int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		done, err := completed(ctx, rdb)
		if err != nil {
			return time.Time{}, times, counts, fmt.Errorf("count completed messages: %w", err)
		}
		now := time.Now()
		times, counts = append(times, now), append(counts, done)
		if done >= int64(n) {
			return now, times, counts, nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, times, counts, fmt.Errorf("completed %d of %d: %w", done, n, ctx.Err())
		case <-tick.C:
		}
	}
}

// progress waits for n completed messages and returns the steady-state rate: the slope between
// the samples where 10% and 90% of n were done. It suits runs whose start is fuzzy (child
// processes starting up).
func progress(ctx context.Context, rdb *redis.Client, n int, limit time.Duration) (float64, error) {
	_, times, counts, err := waitCompleted(ctx, rdb, n, limit)
	if err != nil {
		return 0, err
	}
	return slope(times, counts, n), nil
}

// slope is the rate between the first points where counts reached 10% and 90% of n.
func slope(times []time.Time, counts []int64, n int) float64 {
	lo, hi := int64(n/10), int64(n*9/10)
	a, b := -1, -1
	for i, c := range counts {
		if a < 0 && c >= lo {
			a = i
		}
		if b < 0 && c >= hi {
			b = i
		}
	}
	if a < 0 || b <= a {
		return 0
	}
	d := times[b].Sub(times[a]).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(counts[b]-counts[a]) / d
}

// arrivalRate is the rate of creates between the 10th and 90th percentile arrivals, skipping
// the first skip arrivals (a rate limiter's initial burst).
func arrivalRate(times []time.Time, skip int) float64 {
	if len(times) <= skip+2 {
		return 0
	}
	times = times[skip:]
	a, b := len(times)/10, len(times)*9/10
	if b <= a {
		return 0
	}
	d := times[b].Sub(times[a]).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(b-a) / d
}
