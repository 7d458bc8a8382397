package dashboard

import (
	"strings"
	"testing"
)

func TestFormatResultShowsDeliveryTimeline(t *testing.T) {
	cases := map[string]struct{ record, summary string }{
		"delivered": {`{"state":"sent","interaction_sid":"KI0123456789abcdef0123456789abcdef","outbound_status":"delivered","attempts":1,"recorded_at":"2026-01-01T00:00:00Z","status_history":[{"status":"queued","at":"2026-01-01T00:00:00Z"},{"status":"sent","at":"2026-01-01T00:00:01Z"},{"status":"delivered","at":"2026-01-01T00:00:03Z"}],"delivered_at":"2026-01-01T00:00:03Z","final":true}`,
			"sent, 1 attempt; delivered"},
		"undelivered": {`{"state":"sent","outbound_status":"undelivered","attempts":1,"recorded_at":"2026-01-01T00:00:00Z","status_history":[{"status":"queued","at":"2026-01-01T00:00:00Z"},{"status":"undelivered","at":"2026-01-01T00:00:03Z"}],"final":true,"delivery_error_code":30003,"delivery_error":"Unreachable destination handset"}`,
			"sent, 1 attempt; undelivered: error 30003 Unreachable destination handset"},
		"in progress": {`{"state":"sent","outbound_status":"sent","attempts":2,"recorded_at":"2026-01-01T00:00:00Z","status_history":[{"status":"queued","at":"2026-01-01T00:00:00Z"},{"status":"sent","at":"2026-01-01T00:00:01Z"}]}`,
			"sent, 2 attempts; sent, not final yet"},
		"no callbacks yet": {`{"state":"sent","outbound_status":"queued","attempts":1,"recorded_at":"2026-01-01T00:00:00Z"}`, "sent, 1 attempt"},
	}
	for name, c := range cases {
		got := FormatResult("proxy:send_interaction", []byte(c.record))
		if !strings.Contains(got, `"summary": "`+c.summary+`"`) {
			t.Errorf("%s: summary missing or wrong:\n%s", name, got)
		}
		if strings.Contains(c.record, "status_history") && (!strings.Contains(got, `"status_history"`) || !strings.Contains(got, `"at"`)) {
			t.Errorf("%s: the timeline is not shown:\n%s", name, got)
		}
		if strings.Contains(c.record, "delivery_error") && !strings.Contains(got, `"delivery_error": "Unreachable destination handset"`) {
			t.Errorf("%s: the delivery error is not shown:\n%s", name, got)
		}
	}
}
