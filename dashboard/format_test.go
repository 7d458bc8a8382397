package dashboard

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/tasks"
)

const (
	testService     = "KS0123456789abcdef0123456789abcdef"
	testSession     = "KC0123456789abcdef0123456789abcdef"
	testParticipant = "KP0123456789abcdef0123456789abcdef"
	secretBody      = "Your door code is 4821 — ring Jane Doe" // 38 characters, 40 bytes
)

var secretMedia = []string{"https://media.example.com/jane-doe/licence.jpg", "https://media.example.com/jane-doe/face.jpg"}

// realTaskPayload builds a task the way producers do (tasks.Enqueuer.Prepare), so the
// formatter is tested on the exact bytes asynq stores.
func realTaskPayload(t *testing.T) []byte {
	t.Helper()
	enq := tasks.NewEnqueuer(asynq.RedisClientOpt{Addr: "127.0.0.1:1"}) // Prepare never dials
	t.Cleanup(func() { _ = enq.Close() })
	task, _, err := enq.Prepare(tasks.Payload{
		ServiceSID: testService, SessionSID: testSession, ParticipantSID: testParticipant,
		Body: secretBody, MediaURLs: secretMedia,
	}, tasks.SendWithin(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return task.Payload()
}

func TestRedactPayloadRealTask(t *testing.T) {
	t.Parallel()
	payload := realTaskPayload(t)
	got := RedactPayload(tasks.TypeSendInteraction, payload)

	for _, secret := range append([]string{secretBody, "door code", "Jane", "4821"}, secretMedia...) {
		if strings.Contains(got, secret) {
			t.Errorf("redacted view contains %q:\n%s", secret, got)
		}
	}
	for _, want := range []string{testService, testSession, testParticipant, `"[redacted: 38 chars]"`, `"[redacted: 2 URLs]"`} {
		if !strings.Contains(got, want) {
			t.Errorf("redacted view lacks %q:\n%s", want, got)
		}
	}
	// It stays JSON, with send_before intact, so the UI can pretty-print it.
	var view map[string]any
	if err := json.Unmarshal([]byte(got), &view); err != nil {
		t.Fatalf("redacted view is not JSON: %v\n%s", err, got)
	}
	var orig tasks.Payload
	if err := json.Unmarshal(payload, &orig); err != nil {
		t.Fatal(err)
	}
	if view["send_before"] != orig.SendBefore.Format(time.RFC3339Nano) {
		t.Errorf("send_before = %v, want %v", view["send_before"], orig.SendBefore.Format(time.RFC3339Nano))
	}
	// Key order is the producer's: SIDs first.
	if strings.Index(got, "service_sid") > strings.Index(got, "body") {
		t.Errorf("keys reordered:\n%s", got)
	}
}

func TestFullPayloadShowsContent(t *testing.T) {
	t.Parallel()
	got := FullPayload(tasks.TypeSendInteraction, realTaskPayload(t))
	for _, want := range append([]string{secretBody, testParticipant}, secretMedia...) {
		if !strings.Contains(got, want) {
			t.Errorf("full view lacks %q:\n%s", want, got)
		}
	}
	if got := FullPayload("other", []byte{0xff, 0x00}); got != "non-printable bytes" {
		t.Errorf("FullPayload(binary) = %q", got)
	}
}

func TestRedactPayloadShapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, taskType, in string
		want               string // exact output, compacted
	}{
		{"one URL", tasks.TypeSendInteraction, `{"media_url":["https://x.example/a"]}`, `{"media_url":"[redacted: 1 URL]"}`},
		{"empty body", tasks.TypeSendInteraction, `{"body":""}`, `{"body":"[redacted: 0 chars]"}`},
		{"runes not bytes", tasks.TypeSendInteraction, `{"body":"😀😀"}`, `{"body":"[redacted: 2 chars]"}`},
		{"malformed SID redacted", tasks.TypeSendInteraction, `{"participant_sid":"+15551234567"}`, `{"participant_sid":"[redacted: 12 chars]"}`},
		{"SID under another key redacted", tasks.TypeSendInteraction, `{"note":"` + testService + `"}`, `{"note":"[redacted: 34 chars]"}`},
		{"bad send_before redacted", tasks.TypeSendInteraction, `{"send_before":"call Jane at 5"}`, `{"send_before":"[redacted: 14 chars]"}`},
		{"numbers redacted", "other:type", `{"phone":15551234567,"ok":true,"x":null}`, `{"phone":"[redacted]","ok":true,"x":null}`},
		{"nested object", "other:type", `{"to":{"name":"Jane","n":1}}`, `{"to":"[redacted: object with 2 keys]"}`},
		{"list", "other:type", `{"names":["Jane","Joe"]}`, `{"names":"[redacted: 2 items]"}`},
		{"not an object", "other:type", `"Jane Doe"`, `[redacted: 10 bytes, not a JSON object]`},
		{"not JSON", "other:type", `Jane Doe`, `[redacted: 8 bytes, not a JSON object]`},
		{"trailing garbage", tasks.TypeSendInteraction, `{"body":"x"} Jane`, `{"body":"[redacted: 1 chars]"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := RedactPayload(tt.taskType, []byte(tt.in))
			if compact(got) != tt.want {
				t.Errorf("RedactPayload(%s) = %s, want %s", tt.in, compact(got), tt.want)
			}
			if strings.Contains(got, "Jane") {
				t.Errorf("RedactPayload(%s) leaks content: %s", tt.in, got)
			}
		})
	}
}

func compact(s string) string {
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		return s
	}
	return b.String()
}

func TestFormatResult(t *testing.T) {
	t.Parallel()
	sentAt := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	sent, _ := tasks.EncodeOutcome(&tasks.Outcome{State: tasks.OutcomeSent, InteractionSID: "KI0123456789abcdef0123456789abcdef",
		OutboundResourceSID: "SM0123456789abcdef0123456789abcdef", OutboundStatus: "queued", Attempts: 1, SentAt: &sentAt, RecordedAt: sentAt})
	reconciled, _ := tasks.EncodeOutcome(&tasks.Outcome{State: tasks.OutcomeSent, InteractionSID: "KIffff", Attempts: 2, Reconciled: true, RecordedAt: sentAt})
	failed, _ := tasks.EncodeOutcome(&tasks.Outcome{State: tasks.OutcomeFailed, ErrorCode: 20404, HTTPStatus: 404, Error: "The requested resource was not found", Attempts: 1, RecordedAt: sentAt})
	tests := []struct {
		name, taskType string
		in             []byte
		want           []string
	}{
		{"sent", tasks.TypeSendInteraction, sent, []string{
			`"summary": "sent, 1 attempt"`, `"interaction_sid": "KI0123456789abcdef0123456789abcdef"`,
			`"outbound_resource_sid": "SM0123456789abcdef0123456789abcdef"`, `"attempts": 1`}},
		// asynqmon's task-details view passes no task type.
		{"details view", "", sent, []string{`"summary": "sent, 1 attempt"`, `"interaction_sid"`}},
		{"reconciled", tasks.TypeSendInteraction, reconciled, []string{`"summary": "sent (found by reconciliation), 2 attempts"`, `"reconciled": true`}},
		{"failed", "", failed, []string{`"summary": "failed: Twilio 20404 (HTTP 404), not retried"`, `"error": "The requested resource was not found"`}},
		{"sent at", "", sent, []string{`"sent_at": "2030-01-02T03:04:05Z"`, `"recorded_at": "2030-01-02T03:04:05Z"`}},
		// Records written before the compact form read the same.
		{"long form", "", []byte(`{"state":"sent","interaction_sid":"KI1","attempts":1,"recorded_at":"2030-01-02T03:04:05.5Z"}`),
			[]string{`"summary": "sent, 1 attempt"`, `"interaction_sid": "KI1"`, `"recorded_at": "2030-01-02T03:04:05.5Z"`}},
		{"other type untouched", "other:type", sent, []string{string(sent)}},
		{"not an outcome", "", []byte(`{"hello":"world"}`), []string{`{"hello":"world"}`}},
		{"empty", tasks.TypeSendInteraction, nil, []string{"non-printable bytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := FormatResult(tt.taskType, tt.in)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("FormatResult = \n%s\nwant it to contain %s", got, w)
				}
			}
			if strings.Contains(got, `"summary"`) {
				if !json.Valid([]byte(got)) {
					t.Errorf("FormatResult is not JSON:\n%s", got)
				}
				if !strings.HasPrefix(got, "{\n  \"summary\"") {
					t.Errorf("summary is not first:\n%s", got)
				}
			}
		})
	}
}
