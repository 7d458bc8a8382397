package proxytest

import (
	"fmt"
	"testing"
	"time"
)

// The callback log keeps the last maxCallbackLog entries, in the order planned, however many
// were planned (it is trimmed a half at a time, not an entry at a time).
func TestCallbackLogKeepsTheLatest(t *testing.T) {
	t.Parallel()
	f := New(Config{})
	defer f.Close()
	c := f.cb
	m := &message{ki: "KI1", steps: []string{"queued"}}
	const planned = 2*maxCallbackLog + 1234
	c.mu.Lock()
	c.cfg.MaxPending = planned
	for i := range planned {
		m.ki = fmt.Sprintf("KI%d", i)
		c.planLocked(m, 0, time.Now(), false, 0)
	}
	c.mu.Unlock()
	got := f.Callbacks()
	if len(got) != maxCallbackLog {
		t.Fatalf("%d callbacks in the log, want the last %d", len(got), maxCallbackLog)
	}
	for i, cb := range got {
		if want := fmt.Sprintf("KI%d", planned-maxCallbackLog+i); cb.InteractionSID != want {
			t.Fatalf("entry %d is %s, want %s", i, cb.InteractionSID, want)
		}
	}
}
