package delivery

import (
	"slices"
	"testing"
	"time"

	"github.com/proxyq/proxyq/tasks"
)

func TestTimelineNeverMovesBack(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sent := t0
	o := &tasks.Outcome{State: tasks.OutcomeSent, OutboundStatus: "queued", SentAt: &sent}
	steps := []struct {
		status string
		want   Change
		cur    string
	}{
		{"sent", Advanced, "sent"},
		{"sent", Unchanged, "sent"},          // duplicate
		{"queued", Unchanged, "sent"},        // the creation status is already the first entry
		{"sending", Stale, "sent"},           // out of order: history only
		{"read", Stale, "sent"},              // opaque: history, no rank
		{"DELIVERED", Advanced, "delivered"}, // case-insensitive
		{"undelivered", Stale, "delivered"},  // a terminal is never replaced
		{"delivered", Unchanged, "delivered"},
		{"", Unchanged, "delivered"},
	}
	for i, st := range steps {
		got := applyUpdate(o, Update{Status: st.status, At: t0.Add(time.Duration(i+1) * time.Second)})
		if got != st.want || o.OutboundStatus != st.cur {
			t.Fatalf("step %d %q: change %v status %q, want %v %q", i, st.status, got, o.OutboundStatus, st.want, st.cur)
		}
	}
	if want := []string{"queued", "sent", "sending", "read", "delivered", "undelivered"}; !slices.Equal(statuses(o), want) {
		t.Fatalf("history %v, want %v", statuses(o), want)
	}
	if !o.Final || o.DeliveredAt == nil || !o.DeliveredAt.Equal(t0.Add(6*time.Second)) {
		t.Fatalf("final %v delivered_at %v", o.Final, o.DeliveredAt)
	}
	if !o.StatusHistory[0].At.Equal(sent) {
		t.Fatalf("first entry at %v, want sent_at", o.StatusHistory[0].At)
	}
}

func TestTimelineErrorAndBounds(t *testing.T) {
	o := &tasks.Outcome{State: tasks.OutcomeSent, OutboundStatus: "sent"}
	now := time.Now()
	if c := applyUpdate(o, Update{Status: "undelivered", At: now}); c != Advanced || !o.Final {
		t.Fatalf("undelivered: %v final %v", c, o.Final)
	}
	if c := applyUpdate(o, Update{Status: "undelivered", At: now, ErrorCode: 30003, ErrorMessage: "Unreachable destination handset"}); c != ErrorAdded {
		t.Fatalf("error: %v", c)
	}
	if o.DeliveryErrorCode != 30003 || o.DeliveryError == "" {
		t.Fatalf("error not recorded: %+v", o)
	}
	// delivery-unknown moves past sent but a final status still replaces it.
	o2 := &tasks.Outcome{State: tasks.OutcomeSent, OutboundStatus: "sent"}
	applyUpdate(o2, Update{Status: StatusDeliveryUnknown, At: now})
	if o2.OutboundStatus != StatusDeliveryUnknown || o2.Final {
		t.Fatalf("delivery-unknown: %+v", o2)
	}
	applyUpdate(o2, Update{Status: "delivered", At: now})
	if o2.OutboundStatus != "delivered" || !o2.Final {
		t.Fatalf("delivered after delivery-unknown: %+v", o2)
	}
	// Opaque statuses cannot grow the history without bound.
	o3 := &tasks.Outcome{State: tasks.OutcomeSent, OutboundStatus: "queued"}
	for i := range 100 {
		applyUpdate(o3, Update{Status: "x" + string(rune('a'+i%26)) + string(rune('a'+i/26)), At: now})
	}
	if len(o3.StatusHistory) != MaxHistory {
		t.Fatalf("history grew to %d", len(o3.StatusHistory))
	}
	if c := applyUpdate(o3, Update{Status: "delivered", At: now}); c != Advanced || !o3.Final {
		t.Fatal("a full history must still let the status advance")
	}
}
