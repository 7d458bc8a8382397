package redistest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

// SlotLog is a go-redis hook for Redis Cluster tests. It counts every command (pipelined ones
// too), counts scripts by their first key, and keeps every error saying a command or script
// touched keys of more than one slot, so that an error a caller only logs (a release that
// warns) still fails the test. Attach it to a cluster client with Attach.
type SlotLog struct {
	mu        sync.Mutex
	counts    map[string]int
	scripts   map[string]int
	crossSlot []string
}

// NewSlotLog returns an empty log.
func NewSlotLog() *SlotLog {
	return &SlotLog{counts: map[string]int{}, scripts: map[string]int{}}
}

// Attach hooks the log to c and to every per-node client c makes (those are made lazily, and
// MasterForKey's commands run on them).
func (l *SlotLog) Attach(c *redis.ClusterClient) {
	c.AddHook(slotHook{l, true})
	c.OnNewNode(func(n *redis.Client) { n.AddHook(slotHook{l, false}) })
}

// IsCrossSlot says whether err is Redis refusing keys of more than one slot: CROSSSLOT for a
// command's declared keys, and (Redis 7) a script touching a key it did not declare in another
// slot, or one held by another node.
func IsCrossSlot(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	for _, s := range []string{"CROSSSLOT", "cross slot", "do not hash to the same slot", "non local key"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func (l *SlotLog) note(cmd redis.Cmder, cluster bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	name := strings.ToUpper(cmd.Name())
	l.counts[name]++
	// Scripts are counted once per run: on the cluster client (each command also passes a
	// node's client), and not the EVALSHA that found the script missing (EVAL follows).
	if args := cmd.Args(); cluster && (name == "EVAL" || name == "EVALSHA") && len(args) > 3 &&
		(cmd.Err() == nil || errors.Is(cmd.Err(), redis.Nil)) {
		l.scripts[fmt.Sprint(args[3])]++
	}
	if err := cmd.Err(); IsCrossSlot(err) {
		l.crossSlot = append(l.crossSlot, fmt.Sprintf("%v: %v", cmd.Args(), err))
	}
}

// ScriptRuns is how many scripts ran with key as their first key.
func (l *SlotLog) ScriptRuns(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.scripts[key]
}

// TakeCrossSlot returns the cross-slot errors seen so far and forgets them.
func (l *SlotLog) TakeCrossSlot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.crossSlot
	l.crossSlot = nil
	return out
}

// Check fails t for every cross-slot error seen, and for every command of want that never
// ran (the test no longer exercises what it claims); it logs the command counts.
func (l *SlotLog) Check(t testing.TB, want ...string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.crossSlot {
		t.Errorf("cross-slot: %s", c)
	}
	for _, w := range want {
		if l.counts[w] == 0 {
			t.Errorf("no %s ran: the test no longer exercises what it claims", w)
		}
	}
	names := make([]string, 0, len(l.counts))
	for n, c := range l.counts {
		names = append(names, fmt.Sprintf("%s=%d", n, c))
	}
	sort.Strings(names)
	t.Logf("commands: %s", strings.Join(names, " "))
}

// slotHook feeds a SlotLog from one client: the cluster client itself (cluster) or a node's.
type slotHook struct {
	l       *SlotLog
	cluster bool
}

func (h slotHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h slotHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.l.note(cmd, h.cluster)
		return err
	}
}
func (h slotHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			h.l.note(c, h.cluster)
		}
		return err
	}
}
