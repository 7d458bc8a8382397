package statusview

import (
	"strings"
	"testing"
	"time"

	"github.com/proxyq/proxyq/delivery"
	"github.com/proxyq/proxyq/tasks"
)

func TestDeliveryRows(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	sent := func(o tasks.Outcome) *tasks.Outcome {
		o.State, o.InteractionSID = tasks.OutcomeSent, "KI00000000000000000000000000000001"
		return &o
	}
	tests := []struct {
		name string
		o    *tasks.Outcome
		want string
	}{
		{"final", sent(tasks.Outcome{Final: true, OutboundStatus: "delivered", DeliveredAt: &at,
			StatusHistory: []tasks.StatusEvent{{Status: "sent", At: at}, {Status: "delivered", At: at}}}),
			"Status history=sent 2026-12-07T10:00:00Z, delivered 2026-12-07T10:00:00Z;Delivery=final (delivered);Delivered at=T;"},
		{"unknown", sent(tasks.Outcome{OutboundStatus: delivery.StatusDeliveryUnknown}),
			"Delivery=unknown: no final status from Twilio within PROXYQ_DELIVERY_MAX_AGE;Delivered at=;"},
		{"pending with error", sent(tasks.Outcome{OutboundStatus: "sent", DeliveryErrorCode: 30003, DeliveryError: "Unreachable"}),
			"Delivery=not final yet;Delivered at=;Delivery error=30003 Unreachable;"},
		{"not sent", &tasks.Outcome{State: tasks.OutcomeFailed}, "Delivered at=;"},
	}
	for _, tt := range tests {
		var b strings.Builder
		DeliveryRows(func(name, value string) { b.WriteString(name + "=" + value + ";") },
			func(t *time.Time) string {
				if t == nil {
					return ""
				}
				return "T"
			}, tt.o)
		if b.String() != tt.want {
			t.Errorf("%s: %q\nwant %q", tt.name, b.String(), tt.want)
		}
	}
}
