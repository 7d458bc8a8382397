package httpapi

import (
	"net/http"
	"testing"
	"time"
)

// fuzzNow is the fuzz decoder's clock: fixed, so a failing input replays the same way.
var fuzzNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// FuzzDecodeRequest feeds arbitrary bodies to the request decoder (batch selects the batch
// decoder). It must never panic, and must return either valid messages or a problem: a 400
// for a body that is not one JSON object, or a 422 naming at least one field. Messages it
// accepts must pass every rule the tasks package enforces at enqueue time. No I/O: CI runs it
// with -fuzz=FuzzDecodeRequest -fuzztime=10s.
func FuzzDecodeRequest(f *testing.F) {
	seeds := []string{
		`{"service_sid":"` + ks + `","session_sid":"` + kc + `","participant_sid":"` + kp + `","body":"hi"}`,
		`{"service_sid":"` + ks + `","session_sid":"` + kc + `","participant_sid":"` + kp + `","media_url":["https://example.com/a.png"],"send_at":"2030-01-02T03:05:00Z","send_before":"2030-01-02T04:00:00+01:30","queue":"low"}`,
		`{"service_sid":"` + ks + `","session_sid":"` + kc + `","participant_sid":"` + kp + `","body":"x","send_at":null,"queue":null,"send_before":null}`,
		`{"service_sid":"KS1","body":5,"media_url":"x","send_at":12,"queue":["a"],"extra":{}}`,
		`{"service_sid":"` + ks + `","session_sid":"` + kc + `","participant_sid":"` + kp + `","body":"x","send_before":"2001-01-01T00:00:00Z"}`,
		`{"body":"\ud800","idempotency_key":"k"}`,
		`{"Body":"x","body":"y","BODY":null}`,
		`{}`, `[]`, `null`, `""`, `{"a":1}{"b":2}`, `{`, ``, "\xff\xfe", `{"messages":[]}`,
		`{"messages":[{"idempotency_key":"a","service_sid":"` + ks + `","session_sid":"` + kc + `","participant_sid":"` + kp + `","body":"1"},` +
			`{"idempotency_key":"b","service_sid":"` + ks + `","session_sid":"` + kc + `","participant_sid":"` + kp + `","body":"2","send_at":"2031-01-01T00:00:00Z"}]}`,
		`{"messages":[{"idempotency_key":"a"},{"idempotency_key":"a"},1,null,[]],"x":1}`,
		`{"messages":[{},{},{},{},{},{},{}]}`,
		`{"messages":null}`, `{"messages":"x"}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	d := newDecoder(DefaultQueues, 5, func() time.Time { return fuzzNow })
	f.Fuzz(func(t *testing.T, data []byte, batch bool) {
		if batch {
			msgs, p := d.batch(data)
			if p != nil {
				checkProblem(t, p)
				if msgs != nil {
					t.Fatal("messages returned with a problem")
				}
				return
			}
			if len(msgs) == 0 || len(msgs) > 5 {
				t.Fatalf("%d messages accepted, want 1..5", len(msgs))
			}
			keys := map[string]bool{}
			for _, m := range msgs {
				checkMessage(t, m)
				if m.Key != "" {
					if keys[m.Key] {
						t.Fatalf("key %q accepted twice in one batch", m.Key)
					}
					keys[m.Key] = true
				}
			}
			return
		}
		m, p := d.single(data)
		if p != nil {
			checkProblem(t, p)
			return
		}
		if m.Key != "" {
			t.Fatal("single decoder took an idempotency key from the body")
		}
		checkMessage(t, m)
	})
}

func checkProblem(t *testing.T, p *Problem) {
	t.Helper()
	switch {
	case p.Status == http.StatusBadRequest && p.Type == ProblemMalformed:
	case p.Status == http.StatusUnprocessableEntity && p.Type == ProblemValidation && len(p.Errors) > 0:
		for _, e := range p.Errors {
			if e.Field == "" || e.Rule == "" {
				t.Fatalf("field error without field or rule: %+v", p.Errors)
			}
		}
	default:
		t.Fatalf("unexpected problem %+v", p)
	}
}

func checkMessage(t *testing.T, m message) {
	t.Helper()
	if _, err := m.Payload.Encode(); err != nil { // validates and checks the size
		t.Fatalf("accepted a payload tasks refuses: %v", err)
	}
	if m.Queue != "critical" && m.Queue != "default" && m.Queue != "low" {
		t.Fatalf("accepted queue %q", m.Queue)
	}
	if m.Key != "" && keyProblem(m.Key) != "" {
		t.Fatalf("accepted key %q", m.Key)
	}
	sched := fuzzNow
	if m.SendAt != nil && m.SendAt.After(fuzzNow) {
		sched = *m.SendAt
	}
	if m.Payload.SendBefore != nil && !m.Payload.SendBefore.After(sched) {
		t.Fatalf("accepted send_before %s not after %s", m.Payload.SendBefore, sched)
	}
}
