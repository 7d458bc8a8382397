package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/tasks"
)

// The guard against real Redis: a real task (so tasks.Lookup finds its participant) and a
// ledger entry driven through the same calls the handler makes.
func TestSendGuard(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := redistest.NewDB(t)
	ledger := NewLedger(db.Client(t), time.Hour)
	insp := asynq.NewInspector(db.ConnOpt())
	t.Cleanup(func() { _ = insp.Close() })
	enq := tasks.NewEnqueuer(db.ConnOpt())
	t.Cleanup(func() { _ = enq.Close() })
	guard := NewSendGuard(ledger, insp)

	// take acquires the message as a worker run does; post also starts its request.
	take := func(t *testing.T, kp, id string) int64 {
		t.Helper()
		own, err := ledger.Acquire(ctx, tasks.DefaultQueue, id, time.Minute)
		if err != nil || own.Fence == 0 {
			t.Fatalf("Acquire = %+v, %v; want ownership", own, err)
		}
		return own.Fence
	}
	post := func(t *testing.T, kp, id string) int64 {
		t.Helper()
		fence := take(t, kp, id)
		if _, _, err := ledger.BeginSend(ctx, tasks.DefaultQueue, id, fence, time.Minute); err != nil {
			t.Fatal(err)
		}
		return fence
	}
	check := func(t *testing.T, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	// Each case gets its own participant and task; setup drives the ledger as a worker would.
	tests := []struct {
		name    string
		setup   func(t *testing.T, kp, id string)
		maySend bool
	}{
		{name: "never taken by a worker", setup: func(*testing.T, string, string) {}},
		{name: "a worker holds the lease (claiming, reconciling)", maySend: true, setup: func(t *testing.T, kp, id string) {
			take(t, kp, id)
		}},
		{name: "a request is in flight", maySend: true, setup: func(t *testing.T, kp, id string) {
			post(t, kp, id)
		}},
		{name: "released after a request that created nothing", setup: func(t *testing.T, kp, id string) {
			check(t, ledger.Release(ctx, tasks.DefaultQueue, id, post(t, kp, id), attemptNone, nil))
		}},
		{name: "released with an unknown outcome", maySend: true, setup: func(t *testing.T, kp, id string) {
			check(t, ledger.Release(ctx, tasks.DefaultQueue, id, post(t, kp, id), attemptUnknown, nil))
		}},
		{name: "sent", maySend: true, setup: func(t *testing.T, kp, id string) {
			o := &tasks.Outcome{State: tasks.OutcomeSent, InteractionSID: "KI" + kp[2:], Attempts: 1}
			_, err := ledger.MarkSent(ctx, tasks.DefaultQueue, id, testClaim, post(t, kp, id), o)
			check(t, err)
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			kp := fmt.Sprintf("KP%032x", 0x600+i)
			id := fmt.Sprintf("guard-%d", i)
			p := tasks.Payload{ServiceSID: fmt.Sprintf("KS%032x", 1), SessionSID: fmt.Sprintf("KC%032x", 2), ParticipantSID: kp, Body: "guard"}
			if _, err := enq.Enqueue(ctx, p, tasks.IdempotencyKey(id)); err != nil {
				t.Fatal(err)
			}
			tt.setup(t, kp, id)

			err := guard(ctx, id)
			if !tt.maySend {
				if err != nil {
					t.Fatalf("guard = %v, want nil", err)
				}
				return
			}
			var mse *MaySendError
			if !errors.Is(err, ErrMaySend) || !errors.As(err, &mse) {
				t.Fatalf("guard = %v, want a *MaySendError matching ErrMaySend", err)
			}
			if mse.TaskID != id || mse.Now.IsZero() {
				t.Errorf("MaySendError = %+v, want task %q and the Redis clock", mse, id)
			}
		})
	}

	t.Run("unknown task", func(t *testing.T) {
		t.Parallel()
		if err := guard(ctx, "no-such-task"); err != nil {
			t.Fatalf("guard = %v, want nil (the cancel answers 404)", err)
		}
	})
}

// With Redis unreachable the guard cannot tell, so it refuses: a non-nil error that is not a
// MaySendError.
func TestSendGuardFailsClosed(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // nothing listens there now
	opt := asynq.RedisClientOpt{Addr: addr, DialTimeout: 200 * time.Millisecond}
	insp := asynq.NewInspector(opt)
	t.Cleanup(func() { _ = insp.Close() })
	rdb := redistest.DB{Addr: addr}.Client(t)
	guard := NewSendGuard(NewLedger(rdb, time.Hour), insp)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = guard(ctx, "any")
	if err == nil || errors.Is(err, ErrMaySend) {
		t.Fatalf("guard with Redis down = %v, want a Redis error", err)
	}
}
