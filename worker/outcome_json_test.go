package worker

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/proxyq/proxyq/tasks"
)

// The outcome record is written with segmentio's encoder; readers (ParseOutcome, the dashboard,
// anyone reading asynq's result) expect exactly what encoding/json writes.
func TestOutcomeJSONAsEncodingJSON(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 1, 13, 50, 47, 392320914, time.UTC)
	sec := at.Truncate(time.Second)
	for name, o := range map[string]*tasks.Outcome{
		"sent": {State: tasks.OutcomeSent, InteractionSID: "KI00000000000000000000000000000001", OutboundStatus: "queued",
			OutboundResourceSID: "SM00000000000000000000000000000001", Attempts: 1, SentAt: &sec, RecordedAt: at},
		"reconciled, delivered": {State: tasks.OutcomeSent, InteractionSID: "KI1", OutboundStatus: "delivered", Attempts: 2,
			Reconciled: true, SentAt: &sec, RecordedAt: at, DeliveredAt: &at, Final: true,
			StatusHistory: []tasks.StatusEvent{{Status: "queued", At: sec}, {Status: "delivered", At: at}}},
		"failed, text needing escapes": {State: tasks.OutcomeFailed, Attempts: 1, ErrorCode: 21610, HTTPStatus: 400,
			Error: "Attempt to send to unsubscribed recipient <+1 555> & \"friends\" \\ café \u2028 \x01", RecordedAt: at},
		"undelivered": {State: tasks.OutcomeSent, InteractionSID: "KI2", OutboundStatus: "undelivered", Final: true,
			DeliveryErrorCode: 30003, DeliveryError: "Unreachable destination handset", RecordedAt: at.In(time.FixedZone("X", 3600))},
		"empty": {},
	} {
		want, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		got, err := jsonMarshal(o)
		if err != nil || got != string(want) {
			t.Errorf("%s: jsonMarshal = %s, %v\nencoding/json writes %s", name, got, err, want)
		}
	}
}
