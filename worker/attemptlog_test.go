package worker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/tasks"
)

// The attempt log rides the ledger's own writes: retries, waits and the final record end up in
// field pl of the task hash, bounded, and the Message SID is indexed for the console.
func TestAttemptLogRidesTheLedger(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newTestLedger(t)
	start := time.UnixMilli(1_800_000_000_123).UTC()

	own, err := l.Acquire(ctx, testQ, "t1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	busy := &proxyclient.Error{StatusCode: 503, Code: 20503, RequestID: "RQ0123456789abcdef0123456789abcdef"}
	if err := l.Release(ctx, testQ, "t1", own.Fence, attemptNone, nil,
		AttemptEntry(start, 85*time.Millisecond, ResultRetried, busy), WaitEntry(WaitService), WaitEntry(WaitService)); err != nil {
		t.Fatal(err)
	}
	own, err = l.Acquire(ctx, testQ, "t1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx, testQ, "t1", own.Fence, attemptNone, nil, WaitEntry(WaitLane), WaitEntry(WaitService)); err != nil {
		t.Fatal(err)
	}
	own, err = l.Acquire(ctx, testQ, "t1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	sm := "SM0123456789abcdef0123456789abcdef"
	o := &tasks.Outcome{State: tasks.OutcomeSent, InteractionSID: "KI0123456789abcdef0123456789abcdef", OutboundResourceSID: sm,
		Attempts: 2, RecordedAt: start.Add(time.Second)}
	if _, err := l.MarkSent(ctx, testQ, "t1", testClaim, own.Fence, o,
		ReconcileEntry(start.Add(500*time.Millisecond), 0, "", false),
		AttemptEntry(start.Add(time.Second), 40*time.Millisecond, ResultSent, nil)); err != nil {
		t.Fatal(err)
	}
	log, err := ReadAttemptLog(ctx, l.rdb, testQ, "t1")
	if err != nil {
		t.Fatal(err)
	}
	if log.Waits[WaitService] != 3 || log.Waits[WaitLane] != 1 || log.Waits[WaitAccount] != 0 {
		t.Errorf("waits = %v, want s:3 l:1", log.Waits)
	}
	want := []LoggedAttempt{
		{Start: start, Took: 85 * time.Millisecond, Result: ResultRetried, HTTPStatus: 503, TwilioCode: 20503, RequestID: busy.RequestID},
		{Start: start.Add(time.Second), Took: 40 * time.Millisecond, Result: ResultSent, HTTPStatus: 201},
	}
	if len(log.Attempts) != 2 || log.Attempts[0] != want[0] || log.Attempts[1] != want[1] {
		t.Errorf("attempts = %+v, want %+v", log.Attempts, want)
	}
	if len(log.Reconciliation) != 1 || log.Reconciliation[0].Found != 0 || !log.Reconciliation[0].At.Equal(start.Add(500*time.Millisecond)) {
		t.Errorf("reconciliation = %+v", log.Reconciliation)
	}
	ref, ok, err := FindByMessageSID(ctx, l.rdb, sm, DayOf(time.Now().UnixMilli()), 3)
	if err != nil || !ok || ref != (MessageRef{Queue: testQ, TaskID: "t1"}) {
		t.Errorf("FindByMessageSID = %+v, %v, %v; want default/t1", ref, ok, err)
	}
	if ttl := l.rdb.PTTL(ctx, sidIndexKey(DayOf(time.Now().UnixMilli()))).Val(); ttl <= 0 {
		t.Errorf("the Message SID index has no expiry (PTTL %v)", ttl)
	}
	if _, ok, _ := FindByMessageSID(ctx, l.rdb, "SM99999999999999999999999999999999", DayOf(time.Now().UnixMilli()), 3); ok {
		t.Error("an unknown Message SID was found")
	}
}

// The log keeps its last maxLogRows rows however many attempts a message makes.
func TestAttemptLogIsBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newTestLedger(t)
	start := time.UnixMilli(1_800_000_000_000).UTC()
	for i := range maxLogRows + 5 {
		own, err := l.Acquire(ctx, testQ, "t2", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		err = l.Release(ctx, testQ, "t2", own.Fence, attemptNone, nil,
			AttemptEntry(start.Add(time.Duration(i)*time.Second), time.Millisecond, ResultRetried, errors.New("connection reset")))
		if err != nil {
			t.Fatal(err)
		}
	}
	log, err := ReadAttemptLog(ctx, l.rdb, testQ, "t2")
	if err != nil {
		t.Fatal(err)
	}
	if len(log.Attempts) != maxLogRows || !log.Attempts[maxLogRows-1].Start.Equal(start.Add(time.Duration(maxLogRows+4)*time.Second)) {
		t.Fatalf("kept %d attempts ending %v, want the last %d", len(log.Attempts), log.Attempts[len(log.Attempts)-1].Start, maxLogRows)
	}
}

// A message sent by its first run keeps its log in the outcome record, not in a field of its
// own (the common case costs no field).
func TestAttemptLogOfAFirstRunSendIsInTheRecord(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newTestLedger(t)
	start := time.UnixMilli(1_800_000_000_000).UTC()
	own, err := l.Acquire(ctx, testQ, "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	o := &tasks.Outcome{State: tasks.OutcomeSent, InteractionSID: "KI0123456789abcdef0123456789abcdea", Attempts: 1, RecordedAt: start}
	if _, err := l.MarkSent(ctx, testQ, "a", testClaim, own.Fence, o, AttemptEntry(start, 12*time.Millisecond, ResultSent, nil)); err != nil {
		t.Fatal(err)
	}
	if o.AttemptLog != "" {
		t.Errorf("MarkSent changed the caller's outcome: %+v", o)
	}
	if n := l.rdb.HExists(ctx, LedgerKey(testQ, "a"), logField).Val(); n {
		t.Error("a first-run send has a log field of its own")
	}
	log, err := ReadAttemptLog(ctx, l.rdb, testQ, "a")
	if err != nil {
		t.Fatal(err)
	}
	want := LoggedAttempt{Start: start, Took: 12 * time.Millisecond, Result: ResultSent, HTTPStatus: 201}
	if len(log.Attempts) != 1 || log.Attempts[0] != want {
		t.Errorf("attempts = %+v, want %+v", log.Attempts, want)
	}
}
