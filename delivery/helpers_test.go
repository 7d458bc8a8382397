package delivery

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/tasks"
)

func hmacSHA1B64(key, msg string) string {
	m := hmac.New(sha1.New, []byte(key))
	m.Write([]byte(msg))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

const testAccount = "AC00000000000000000000000000000001"

// env is one test's Redis and a way to make messages with a recorded send.
type env struct {
	db   redistest.DB
	rdb  *redis.Client
	insp *asynq.Inspector
	cli  *asynq.Client
	n    int
	mu   sync.Mutex
}

func newEnv(t *testing.T) *env {
	t.Helper()
	db := redistest.NewDB(t)
	e := &env{db: db, rdb: db.Client(t), insp: asynq.NewInspector(db.ConnOpt()), cli: asynq.NewClient(db.ConnOpt())}
	t.Cleanup(func() { _ = e.insp.Close(); _ = e.cli.Close() })
	return e
}

func (e *env) service(t *testing.T, cfg Config) *Service {
	t.Helper()
	rdb := e.db.Client(t) // a client of its own, as a separate process would have
	s, err := New(cfg, rdb, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// message enqueues a task and writes a sent outcome as its result, as the worker does, and
// returns its task ID, interaction SID and outcome.
func (e *env) message(t *testing.T, queue string) (string, string, *tasks.Outcome) {
	t.Helper()
	e.mu.Lock()
	e.n++
	n := e.n
	e.mu.Unlock()
	info, err := e.cli.Enqueue(asynq.NewTask(tasks.TypeSendInteraction, []byte(`{}`)), asynq.Queue(queue), asynq.ProcessIn(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	sent := time.Now().UTC().Add(-time.Second).Truncate(time.Millisecond)
	o := &tasks.Outcome{State: tasks.OutcomeSent, InteractionSID: fmt.Sprintf("KI%032x", n), OutboundStatus: "queued",
		OutboundResourceSID: fmt.Sprintf("SM%032x", n), Attempts: 1, SentAt: &sent, RecordedAt: sent}
	data, _ := json.Marshal(o)
	if err := e.rdb.HSet(context.Background(), taskKey(queue, info.ID), "result", data).Err(); err != nil {
		t.Fatal(err)
	}
	return info.ID, o.InteractionSID, o
}

// outcome reads the record through asynq's own Inspector: proof that taskKey is asynq's key.
func (e *env) outcome(t *testing.T, queue, id string) *tasks.Outcome {
	t.Helper()
	info, err := e.insp.GetTaskInfo(queue, id)
	if err != nil {
		t.Fatal(err)
	}
	o, err := tasks.ParseOutcome(info.Result)
	if err != nil || o == nil {
		t.Fatalf("outcome of %s: %v %v", id, o, err)
	}
	return o
}

func (e *env) rawResult(t *testing.T, queue, id string) string {
	t.Helper()
	v, err := e.rdb.HGet(context.Background(), taskKey(queue, id), "result").Result()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func statuses(o *tasks.Outcome) []string {
	var s []string
	for _, e := range o.StatusHistory {
		s = append(s, e.Status)
	}
	return s
}

func counter(t *testing.T, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// stillPolled waits (bounded) for kis, messages whose status is final, to leave the poll set,
// and returns those still in it: a final message leaves in the next batch of removals
// (unschedule.go), within finalsLinger.
func stillPolled(t *testing.T, rdb redis.Cmdable, kis ...string) []string {
	t.Helper()
	deadline := time.Now().Add(finalsLinger + 2*time.Second)
	for {
		var still []string
		for _, ki := range kis {
			switch _, err := rdb.ZScore(context.Background(), pollKey, ki).Result(); {
			case err == nil:
				still = append(still, ki)
			case err != redis.Nil:
				t.Fatal(err)
			}
		}
		if len(still) == 0 || time.Now().After(deadline) {
			return still
		}
		time.Sleep(5 * time.Millisecond)
	}
}
