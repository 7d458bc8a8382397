package statusview

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/proxyq/proxyq/tasks"
)

func TestWrite(t *testing.T) {
	sent := time.Date(2026, 12, 7, 10, 0, 0, 0, time.FixedZone("X", 3600))
	st := &tasks.Status{ID: "abc", Queue: "default", State: "completed", Retried: 1, MaxRetry: 25,
		Outcome: &tasks.Outcome{State: tasks.OutcomeSent, InteractionSID: "KI00000000000000000000000000000001", SentAt: &sent, Reconciled: true},
		Lane:    &tasks.LaneStatus{Key: "k", Position: 2, Ahead: 1, Length: 3, Head: "h", HeadState: "active"}}
	st.Message.OrderingKey = "k"
	st.Message.ParticipantSID = "KP00000000000000000000000000000001"
	var out bytes.Buffer
	called := false
	err := Write(&out, st, 2, func(row func(name, value string), ts func(*time.Time) string, o *tasks.Outcome) {
		called = true
		row("Delivery", "delivered")
		row("Empty", "") // skipped
	})
	if err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"Task ID:          abc\n",
		"Attempts:         2 (requests to Twilio)\n",
		"Retried:          1 of 25 failed attempts allowed\n",
		"Sent at:          2026-12-07T09:00:00Z\nDelivery:         delivered\n",
		"Reconciled:       yes (found by listing the participant's interactions)\n",
		"Lane:             position 2 of 3 (1 ahead; head h is active)\n",
		"Participant:      KP00000000000000000000000000000001\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("view lacks %q:\n%s", want, got)
		}
	}
	if !called || strings.Contains(got, "Empty") || strings.Contains(got, "Twilio error") {
		t.Errorf("delivery rows called=%v; empty rows must be skipped:\n%s", called, got)
	}

	out.Reset()
	if err := Write(&out, &tasks.Status{ID: "x", State: "pending"}, -1, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Attempts:  - (requests to Twilio)") {
		t.Errorf("unknown posts:\n%s", out.String())
	}
}

// TestWriteConversations: a Conversations message names its API, its IM… message SID, its
// conversation and Service, and how it was reconciled.
func TestWriteConversations(t *testing.T) {
	st := &tasks.Status{ID: "abc", Queue: "default", State: "completed", API: tasks.APIConversations,
		Outcome: &tasks.Outcome{State: tasks.OutcomeSent, API: tasks.APIConversations, Reconciled: true,
			MessageSID: "IM00000000000000000000000000000001", ConversationSID: "CH00000000000000000000000000000001"}}
	st.Message.ConversationSID = "CH00000000000000000000000000000001"
	st.Message.ChatServiceSID = "IS00000000000000000000000000000001"
	var out bytes.Buffer
	if err := Write(&out, st, 1, nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"API:", "Conversations", "Message SID:", "IM00000000000000000000000000000001",
		"Conversation:", "CH00000000000000000000000000000001", "Chat service:", "IS00000000000000000000000000000001",
		"found by proxyq's stamp"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "Interaction SID") {
		t.Errorf("a Conversations message shows an interaction SID:\n%s", out.String())
	}
}
