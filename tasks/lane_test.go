package tasks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func laned(key, body string) Payload {
	p := validPayload()
	p.Body, p.OrderingKey = body, key
	return p
}

// enqueueLane enqueues n messages on lane key (bodies m0, m1, …) and returns their task IDs.
func enqueueLane(t *testing.T, e *env, key string, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		r, err := e.enq.Enqueue(context.Background(), laned(key, fmt.Sprint("m", i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.TaskID)
	}
	return ids
}

func laneOrder(t *testing.T, rdb redis.UniversalClient, queue, key string) []string {
	t.Helper()
	ids, err := rdb.ZRange(context.Background(), LaneKey(queue, key), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestOrderingKeyRules(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"a", "KP0123456789abcdef0123456789abcdef", "ride-8812:eta.v2_x", strings.Repeat("k", 128)} {
		if err := ValidateOrderingKey(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", strings.Repeat("k", 129), "a b", "{tag}", "ü", "a/b"} {
		var ve *ValidationError
		if err := ValidateOrderingKey(bad); !errors.As(err, &ve) || ve.Field != "ordering_key" {
			t.Errorf("%q: got %v, want an ordering_key error", bad, err)
		}
	}
	p := laned("lane-1", "hi")
	data, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"ordering_key":"lane-1"`) {
		t.Errorf("encoded payload %s lacks ordering_key", data)
	}
	back, err := Decode(data)
	if err != nil || back.OrderingKey != "lane-1" {
		t.Fatalf("Decode = %+v, %v", back, err)
	}
	_, err = Decode([]byte(strings.Replace(string(data), `"lane-1"`, `""`, 1)))
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != "ordering_key" {
		t.Errorf("empty ordering_key: got %v", err)
	}
	_, err = Decode([]byte(strings.Replace(string(data), `"lane-1"`, `"a b"`, 1)))
	if err == nil || !strings.Contains(err.Error(), "ordering_key: may contain only") {
		t.Errorf("bad ordering_key: got %v", err)
	}
	// Unordered payloads keep their exact bytes (no ordering_key key at all).
	plain, _ := validPayload().Encode()
	if strings.Contains(string(plain), "ordering_key") {
		t.Errorf("unordered payload carries ordering_key: %s", plain)
	}
}

func TestLaneBatchTakesPlacesInInputOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rdb := e.db.Client(t)
	ctx := context.Background()
	var msgs []Message
	for i := range 30 {
		switch i % 3 {
		case 0:
			msgs = append(msgs, Message{Payload: laned("A", fmt.Sprint("a", i))})
		case 1:
			msgs = append(msgs, Message{Payload: laned("B", fmt.Sprint("b", i)), Options: []Option{IdempotencyKey(fmt.Sprint("key-b-", i))}})
		default:
			msgs = append(msgs, Message{Payload: validPayload()}) // unordered
		}
	}
	res, err := e.enq.EnqueueBatch(ctx, msgs)
	if err != nil {
		t.Fatal(err)
	}
	var wantA, wantB []string
	for i, r := range res {
		switch msgs[i].Payload.OrderingKey {
		case "A":
			wantA = append(wantA, r.TaskID)
		case "B":
			wantB = append(wantB, r.TaskID)
		}
	}
	if got := laneOrder(t, rdb, DefaultQueue, "A"); !slices.Equal(got, wantA) {
		t.Errorf("lane A = %v, want input order %v", got, wantA)
	}
	if got := laneOrder(t, rdb, DefaultQueue, "B"); !slices.Equal(got, wantB) {
		t.Errorf("lane B = %v, want input order %v", got, wantB)
	}
	// Every laned task exists with its key in the payload.
	for _, id := range wantA {
		if p := storedPayload(t, e.taskInfo(t, DefaultQueue, id)); p.OrderingKey != "A" {
			t.Errorf("task %s payload ordering_key = %q", id, p.OrderingKey)
		}
	}
	// Re-enqueuing idempotency keys keeps their first places.
	again, err := e.enq.EnqueueBatch(ctx, []Message{msgs[1], msgs[4]})
	if err != nil || !again[0].Duplicate || !again[1].Duplicate {
		t.Fatalf("re-enqueue: %+v, %v", again, err)
	}
	if got := laneOrder(t, rdb, DefaultQueue, "B"); !slices.Equal(got, wantB) {
		t.Errorf("after re-enqueue lane B = %v, want %v", got, wantB)
	}
}

func TestLaneConcurrentProducersGetOneOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rdb := e.db.Client(t)
	const producers, each = 8, 25
	ids := make([][]string, producers)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r, err := e.enq.Enqueue(context.Background(), laned("shared", fmt.Sprintf("p%d-%d", p, i)))
				if err != nil {
					t.Error(err)
					return
				}
				ids[p] = append(ids[p], r.TaskID)
			}
		}()
	}
	wg.Wait()
	order := laneOrder(t, rdb, DefaultQueue, "shared")
	if len(order) != producers*each {
		t.Fatalf("lane holds %d messages, want %d", len(order), producers*each)
	}
	pos := map[string]int{}
	for i, id := range order {
		pos[id] = i
	}
	for p, mine := range ids {
		for i := 1; i < len(mine); i++ {
			if pos[mine[i-1]] >= pos[mine[i]] {
				t.Fatalf("producer %d: message %d is ahead of message %d in the lane", p, i, i-1)
			}
		}
	}
}

// A place whose enqueue failed is given back, unless the task exists after all; a place whose
// task never appears is skipped once older than the grace.
func TestLaneFailedEnqueueLeavesNoGap(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rdb := e.db.Client(t)
	ctx := context.Background()
	if _, err := reserveLanes(ctx, rdb, []laneEntry{{DefaultQueue, "L", "ghost"}, {DefaultQueue, "L", "crashed"}}); err != nil {
		t.Fatal(err)
	}
	real, err := e.enq.Enqueue(ctx, laned("L", "real"))
	if err != nil {
		t.Fatal(err)
	}
	releaseFailed(ctx, rdb, laneEntry{DefaultQueue, "L", "ghost"})
	releaseFailed(ctx, rdb, laneEntry{DefaultQueue, "L", real.TaskID}) // exists: kept
	if got := laneOrder(t, rdb, DefaultQueue, "L"); !slices.Equal(got, []string{"crashed", real.TaskID}) {
		t.Fatalf("lane = %v", got)
	}
	// "crashed" took its place and its producer died: young, it is an enqueue in progress…
	turn, err := LaneTurn(ctx, rdb, DefaultQueue, "L", real.TaskID, time.Hour)
	if err != nil || turn.Go || turn.HeadState != "enqueuing" || turn.Head != "crashed" {
		t.Fatalf("turn = %+v, %v; want wait on an enqueuing head", turn, err)
	}
	// …past the grace it is skipped.
	turn, err = LaneTurn(ctx, rdb, DefaultQueue, "L", real.TaskID, 0)
	if err != nil || !turn.Go || turn.Skipped != 1 {
		t.Fatalf("turn = %+v, %v; want go after skipping the vanished head", turn, err)
	}
}

// TestLaneDuplicateOnAnotherQueueGivesItsPlaceBack reproduces issue 20 item 4: an idempotency
// key that already names a message on queue "a", sent again to queue "b" with an ordering key,
// took a place in b's lane before the key's reservation answered Duplicate, and never gave it
// back: the lane's next message then waited LaneEnqueueGrace behind an "enqueuing" head that
// would never exist. Both Enqueue and EnqueueBatch must leave b's lane as if the duplicate had
// not been sent.
func TestLaneDuplicateOnAnotherQueueGivesItsPlaceBack(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		enqueue func(context.Context, *Enqueuer, Payload, ...Option) (Result, error)
	}{
		{"Enqueue", func(ctx context.Context, e *Enqueuer, p Payload, o ...Option) (Result, error) {
			return e.Enqueue(ctx, p, o...)
		}},
		{"EnqueueBatch", func(ctx context.Context, e *Enqueuer, p Payload, o ...Option) (Result, error) {
			res, err := e.EnqueueBatch(ctx, []Message{{Payload: p, Options: o}})
			if len(res) != 1 {
				return Result{}, fmt.Errorf("%d results, %v", len(res), err)
			}
			return res[0], err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			rdb := e.db.Client(t)
			ctx := context.Background()
			msg := laned("L", "once")
			if _, err := e.enq.Enqueue(ctx, msg, IdempotencyKey("k-1"), Queue("a")); err != nil {
				t.Fatal(err)
			}
			dup, err := tc.enqueue(ctx, e.enq, msg, IdempotencyKey("k-1"), Queue("b"))
			if err != nil || !dup.Duplicate || dup.Queue != "a" || dup.TaskID != "k-1" {
				t.Fatalf("re-send to queue b = %+v, %v; want a duplicate of k-1 on queue a", dup, err)
			}
			if got := laneOrder(t, rdb, "b", "L"); len(got) != 0 {
				t.Fatalf("lane L on queue b = %v after the duplicate, want empty", got)
			}
			next, err := tc.enqueue(ctx, e.enq, laned("L", "next"), Queue("b"))
			if err != nil {
				t.Fatal(err)
			}
			turn, err := LaneTurn(ctx, rdb, "b", "L", next.TaskID, LaneEnqueueGrace)
			if err != nil || !turn.Go || turn.Skipped != 0 {
				t.Fatalf("turn of the lane's next message = %+v, %v; want go at once, nothing to skip", turn, err)
			}
			// The original keeps its place in its own queue's lane.
			if got := laneOrder(t, rdb, "a", "L"); !slices.Equal(got, []string{"k-1"}) {
				t.Errorf("lane L on queue a = %v, want [k-1]", got)
			}
		})
	}
}

// moveToRetry puts a pending task in the retry set, as asynq does with a run that asked to wait.
func moveToRetry(t *testing.T, rdb redis.UniversalClient, queue, id string) {
	t.Helper()
	ctx := context.Background()
	p := asynqPrefix(queue)
	if err := rdb.LRem(ctx, p+"pending", 0, id).Err(); err != nil {
		t.Fatal(err)
	}
	rdb.ZAdd(ctx, p+"retry", redis.Z{Score: float64(time.Now().Add(time.Hour).Unix()), Member: id})
	rdb.HSet(ctx, p+"t:"+id, "state", "retry")
}

func TestLaneTurnsLeaveWakeAndSkip(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rdb := e.db.Client(t)
	ctx := context.Background()
	ids := enqueueLane(t, e, "L", 4)
	g := LaneEnqueueGrace
	if turn, _ := LaneTurn(ctx, rdb, DefaultQueue, "L", ids[0], g); !turn.Go {
		t.Fatalf("head: %+v", turn)
	}
	turn, _ := LaneTurn(ctx, rdb, DefaultQueue, "L", ids[1], g)
	if turn.Go || turn.Ahead != 1 || turn.Head != ids[0] {
		t.Fatalf("follower: %+v", turn)
	}
	// The follower sleeps in the retry set; the head ends: the follower is woken at once.
	moveToRetry(t, rdb, DefaultQueue, ids[1])
	lv, err := LeaveLane(ctx, rdb, DefaultQueue, "L", ids[0], g)
	if err != nil || !lv.Removed || lv.Head != ids[1] || lv.HeadState != "woken" {
		t.Fatalf("leave = %+v, %v", lv, err)
	}
	if info := e.taskInfo(t, DefaultQueue, ids[1]); info.State.String() != "pending" {
		t.Errorf("woken follower is %s, want pending", info.State)
	}
	ns, err := rdb.HGet(ctx, asynqPrefix(DefaultQueue)+"t:"+ids[1], "pending_since").Int64()
	if since := time.Since(time.Unix(0, ns)); err != nil || since < 0 || since > time.Minute {
		t.Errorf("woken follower's pending_since = %d (%v ago), %v", ns, since, err)
	}
	// A head deleted (cancelled) and one archived from the dashboard are skipped.
	if err := e.insp.DeleteTask(DefaultQueue, ids[1]); err != nil {
		t.Fatal(err)
	}
	if err := e.insp.ArchiveTask(DefaultQueue, ids[2]); err != nil {
		t.Fatal(err)
	}
	turn, err = LaneTurn(ctx, rdb, DefaultQueue, "L", ids[3], 0)
	if err != nil || !turn.Go || turn.Skipped != 2 {
		t.Fatalf("after delete+archive: %+v, %v", turn, err)
	}
	st, err := Lookup(ctx, e.insp, ids[3])
	if err != nil {
		t.Fatal(err)
	}
	if err := ReadLane(ctx, rdb, st); err != nil {
		t.Fatal(err)
	}
	if st.Lane == nil || st.Lane.Position != 1 || st.Lane.Key != "L" || st.Message.OrderingKey != "L" {
		t.Fatalf("lane status = %+v", st.Lane)
	}
	// The last one leaves: the lane's keys are gone.
	if _, err := LeaveLane(ctx, rdb, DefaultQueue, "L", ids[3], g); err != nil {
		t.Fatal(err)
	}
	if n, _ := rdb.Exists(ctx, LaneKey(DefaultQueue, "L"), LaneInfoKey(DefaultQueue, "L")).Result(); n != 0 {
		t.Errorf("an empty lane left %d keys behind", n)
	}
	// A message that is not in its lane joins its tail.
	turn, err = LaneTurn(ctx, rdb, DefaultQueue, "L", "stray", g)
	if err != nil || !turn.Go || !turn.Joined {
		t.Fatalf("stray: %+v, %v", turn, err)
	}
}

// backOfQueue does what asynq's forwarder does when a retry comes due: the task goes to the back
// (left) of its queue.
func backOfQueue(t *testing.T, rdb redis.UniversalClient, queue, id string) {
	t.Helper()
	ctx := context.Background()
	p := asynqPrefix(queue)
	if err := rdb.ZRem(ctx, p+"retry", id).Err(); err != nil {
		t.Fatal(err)
	}
	rdb.LRem(ctx, p+"pending", 0, id)
	rdb.LPush(ctx, p+"pending", id)
	rdb.HSet(ctx, p+"t:"+id, "state", "pending")
}

func queueFront(t *testing.T, rdb redis.UniversalClient, queue string) string {
	t.Helper()
	id, err := rdb.LIndex(context.Background(), asynqPrefix(queue)+"pending", -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// A follower that was told to wait and whose own recheck has put it back at the end of its
// queue is moved to the front when its turn comes, not left behind the queue's backlog; one
// that no worker has seen yet keeps its place in the queue.
func TestLaneWakesAFollowerBackInItsQueue(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rdb := e.db.Client(t)
	ctx := context.Background()
	g := LaneEnqueueGrace
	ids := enqueueLane(t, e, "L", 3)
	if turn, _ := LaneTurn(ctx, rdb, DefaultQueue, "L", ids[0], g); !turn.Go {
		t.Fatalf("head: %+v", turn)
	}
	if turn, _ := LaneTurn(ctx, rdb, DefaultQueue, "L", ids[1], g); turn.Go {
		t.Fatalf("follower: %+v", turn)
	}
	moveToRetry(t, rdb, DefaultQueue, ids[1])
	// Its recheck comes due: back at the end of the queue, behind a backlog.
	backOfQueue(t, rdb, DefaultQueue, ids[1])
	for i := range 5 {
		if _, err := e.enq.Enqueue(ctx, laned(fmt.Sprint("other", i), "x")); err != nil {
			t.Fatal(err)
		}
	}
	lv, err := LeaveLane(ctx, rdb, DefaultQueue, "L", ids[0], g)
	if err != nil || lv.Head != ids[1] || lv.HeadState != "woken" {
		t.Fatalf("leave = %+v, %v", lv, err)
	}
	if front := queueFront(t, rdb, DefaultQueue); front != ids[1] {
		t.Errorf("front of the queue is %s, want the woken follower %s", front, ids[1])
	}
	p := asynqPrefix(DefaultQueue)
	if n, _ := rdb.LLen(ctx, p+"pending").Result(); n != 3+5 { // the lane's three (not run here) and the others
		t.Errorf("pending holds %d tasks, want 8 (each once)", n)
	}
	if info := e.taskInfo(t, DefaultQueue, ids[1]); info.State.String() != "pending" {
		t.Errorf("woken follower is %s, want pending", info.State)
	}
	// Woken once: a second wake (another check of the lane) leaves it where it is.
	if st, err := WakeLaneHead(ctx, rdb, DefaultQueue, "L", ids[1]); err != nil || st != "" {
		t.Errorf("second wake = %q, %v; want \"\" (not sleeping any more)", st, err)
	}
	// ids[2] was never told to wait: when its turn comes it keeps its place in the queue.
	before, _ := rdb.LRange(ctx, p+"pending", 0, -1).Result()
	lv, err = LeaveLane(ctx, rdb, DefaultQueue, "L", ids[1], g)
	if err != nil || lv.Head != ids[2] || lv.HeadState != "pending" {
		t.Fatalf("leave = %+v, %v", lv, err)
	}
	after, _ := rdb.LRange(ctx, p+"pending", 0, -1).Result()
	if !slices.Equal(before, after) {
		t.Errorf("a message no worker had seen was moved: %v → %v", before, after)
	}
}

// Woken messages are picked up in the order they were woken, all ahead of the queue's backlog:
// each goes behind those woken before it that no worker has picked up yet.
func TestLaneWokenMessagesKeepWakeOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rdb := e.db.Client(t)
	ctx := context.Background()
	g := LaneEnqueueGrace
	heads, followers := map[string]string{}, map[string]string{}
	for _, key := range []string{"A", "B", "C"} {
		h, err := e.enq.Enqueue(ctx, laned(key, "head"))
		if err != nil {
			t.Fatal(err)
		}
		f, err := e.enq.Enqueue(ctx, laned(key, "follower"))
		if err != nil {
			t.Fatal(err)
		}
		heads[key], followers[key] = h.TaskID, f.TaskID
		if turn, _ := LaneTurn(ctx, rdb, DefaultQueue, key, f.TaskID, g); turn.Go {
			t.Fatalf("follower %s: %+v", key, turn)
		}
		moveToRetry(t, rdb, DefaultQueue, f.TaskID)
	}
	p := asynqPrefix(DefaultQueue)
	// The heads were picked up: out of the queue. A backlog waits in it.
	for _, h := range heads {
		rdb.LRem(ctx, p+"pending", 0, h)
	}
	for i := range 3 {
		if _, err := e.enq.Enqueue(ctx, laned(fmt.Sprint("other", i), "x")); err != nil {
			t.Fatal(err)
		}
	}
	leave := func(key string) {
		t.Helper()
		if lv, err := LeaveLane(ctx, rdb, DefaultQueue, key, heads[key], g); err != nil || lv.HeadState != "woken" {
			t.Fatalf("leave %s = %+v, %v", key, lv, err)
		}
	}
	front := func(n int) []string {
		t.Helper()
		ids, err := rdb.LRange(ctx, p+"pending", int64(-n), -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		slices.Reverse(ids) // first out first
		return ids
	}
	leave("A")
	leave("B")
	if got, want := front(2), []string{followers["A"], followers["B"]}; !slices.Equal(got, want) {
		t.Fatalf("front of the queue = %v, want A's then B's follower %v", got, want)
	}
	// A worker picks A's follower up (asynq pops the right end) and checks its turn: C's
	// follower, woken next, queues behind B's, still ahead of the backlog.
	if id, _ := rdb.RPop(ctx, p+"pending").Result(); id != followers["A"] {
		t.Fatalf("popped %s", id)
	}
	if turn, _ := LaneTurn(ctx, rdb, DefaultQueue, "A", followers["A"], g); !turn.Go {
		t.Fatalf("A's follower: %+v", turn)
	}
	leave("C")
	if got, want := front(2), []string{followers["B"], followers["C"]}; !slices.Equal(got, want) {
		t.Fatalf("front of the queue = %v, want B's then C's follower %v", got, want)
	}
	if n, _ := rdb.LLen(ctx, p+"pending").Result(); n != 2+3 {
		t.Errorf("pending holds %d tasks, want 5 (each once)", n)
	}
	// Marks: B's and C's followers, not yet picked up; A's went with its turn check.
	if ids, _ := rdb.ZRange(ctx, LaneWokenKey(DefaultQueue), 0, -1).Result(); len(ids) != 2 || slices.Contains(ids, followers["A"]) {
		t.Errorf("woken marks = %v, want B's and C's followers", ids)
	}
	// A message that ends takes its mark with it.
	if _, err := LeaveLane(ctx, rdb, DefaultQueue, "B", followers["B"], g); err != nil {
		t.Fatal(err)
	}
	if ok, _ := rdb.ZScore(ctx, LaneWokenKey(DefaultQueue), followers["B"]).Result(); ok != 0 {
		t.Errorf("B's follower left its lane but kept its woken mark")
	}
}

func TestLaneNeedsRedisAccess(t *testing.T) {
	t.Parallel()
	enq := NewEnqueuerFromClient(nil) // the asynq client is never reached
	_, err := enq.Enqueue(context.Background(), laned("L", "x"))
	if err == nil || !strings.Contains(err.Error(), "WithLaneRedis") {
		t.Fatalf("got %v", err)
	}
}
