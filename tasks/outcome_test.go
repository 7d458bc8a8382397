package tasks

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

var outcomeCases = func() map[string]*Outcome {
	at := time.Date(2026, 12, 1, 13, 50, 47, 392320914, time.UTC)
	sec := at.Truncate(time.Second)
	return map[string]*Outcome{
		"sent": {State: OutcomeSent, InteractionSID: "KI00000000000000000000000000000001", OutboundStatus: "queued",
			OutboundResourceSID: "SM00000000000000000000000000000001", Attempts: 1, SentAt: &sec, RecordedAt: at},
		"reconciled, delivered": {State: OutcomeSent, InteractionSID: "KI1", OutboundStatus: "delivered", Attempts: 2,
			Reconciled: true, SentAt: &sec, RecordedAt: at, DeliveredAt: &at, Final: true,
			StatusHistory: []StatusEvent{{Status: "queued", At: sec}, {Status: "delivered", At: at}}},
		"failed, text needing escapes": {State: OutcomeFailed, Attempts: 1, ErrorCode: 21610, HTTPStatus: 400,
			Error: "Attempt to send to unsubscribed recipient <+1 555> & \"friends\" \\ café \u2028 \x01", RecordedAt: at},
		"undelivered": {State: OutcomeSent, InteractionSID: "KI2", OutboundStatus: "undelivered", Final: true,
			DeliveryErrorCode: 30003, DeliveryError: "Unreachable destination handset", RecordedAt: at.In(time.FixedZone("X", 3600))},
		"unknown, nothing recorded yet": {State: OutcomeUnknown, Attempts: 3, Error: "timeout"},
		"conversations, read": {State: OutcomeSent, API: APIConversations, MessageSID: "IM00000000000000000000000000000001",
			ConversationSID: "CH00000000000000000000000000000001", ChatServiceSID: "IS00000000000000000000000000000001",
			OutboundStatus: "delivered", Attempts: 2, Reconciled: true, SentAt: &sec, RecordedAt: at, DeliveredAt: &at, Final: true,
			StatusHistory: []StatusEvent{{Status: "sent", At: sec}, {Status: "delivered", At: at}, {Status: "read", At: at}}},
		"opaque statuses with the history's separators, before recorded_at": {State: OutcomeSent, InteractionSID: "KI3",
			OutboundStatus: "sent", Attempts: 1, SentAt: &sec, RecordedAt: at,
			StatusHistory: []StatusEvent{{Status: "queued", At: sec.Add(-time.Hour)}, {Status: "a;b,c%3B%", At: sec}, {Status: "sent", At: at}}},
	}
}()

// The stored record is written by segmentio's encoder (every sent message writes one); it must
// write exactly what encoding/json writes.
func TestEncodeOutcomeAsEncodingJSON(t *testing.T) {
	t.Parallel()
	for name, o := range outcomeCases {
		s := compact(o)
		want, err := json.Marshal(&s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := EncodeOutcome(o)
		if err != nil || string(got) != string(want) {
			t.Errorf("%s: EncodeOutcome = %s, %v\nencoding/json writes %s", name, got, err, want)
		}
	}
}

// What is stored reads back as what was written, times to the millisecond and in UTC.
func TestOutcomeRoundTrip(t *testing.T) {
	t.Parallel()
	ms := func(t time.Time) time.Time { return t.Truncate(time.Millisecond).UTC() }
	for name, o := range outcomeCases {
		data, err := EncodeOutcome(o)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseOutcome(data)
		if err != nil {
			t.Fatalf("%s: ParseOutcome(%s): %v", name, data, err)
		}
		want := *o
		if !o.RecordedAt.IsZero() {
			want.RecordedAt = ms(o.RecordedAt)
		}
		for _, p := range []**time.Time{&want.SentAt, &want.DeliveredAt} {
			if *p != nil {
				t := ms(**p)
				*p = &t
			}
		}
		want.StatusHistory = nil
		for _, e := range o.StatusHistory {
			want.StatusHistory = append(want.StatusHistory, StatusEvent{Status: e.Status, At: ms(e.At)})
		}
		if !reflect.DeepEqual(got, &want) {
			t.Errorf("%s: stored %s\nread back %+v\nwant      %+v", name, data, got, &want)
		}
		// Reading the record and storing it again changes nothing (delivery rewrites it often).
		again, _ := EncodeOutcome(got)
		if string(again) != string(data) {
			t.Errorf("%s: stored again as %s, first %s", name, again, data)
		}
	}
}

// Under Redis's default hash-max-listpack-value, asynq's task hash is a hashtable and the
// record is one allocation of its own: up to 156 bytes it takes jemalloc's 160-byte class. The
// long keys took 250 bytes, one class up from 256 (docs/performance.md, Redis cost per message).
func TestOutcomeStoredSize(t *testing.T) {
	t.Parallel()
	data, err := EncodeOutcome(outcomeCases["sent"])
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 156 {
		t.Errorf("a sent message's record takes %d bytes, more than 156: %s", len(data), data)
	}
	want := `{"s":"sent","ki":"KI00000000000000000000000000000001","os":"queued","sm":"SM00000000000000000000000000000001","n":1,"sa":1796133047000,"ra":1796133047392}`
	if string(data) != want {
		t.Errorf("stored\n%s\nwant (docs/producing.md, Outcome record)\n%s", data, want)
	}
}

// Records written before the compact form (long keys, RFC 3339 times) still read.
func TestParseOutcomeLongForm(t *testing.T) {
	t.Parallel()
	o, err := ParseOutcome([]byte(`{"state":"sent","interaction_sid":"KI1","outbound_status":"delivered","attempts":1,` +
		`"sent_at":"2026-11-25T14:02:11Z","recorded_at":"2026-11-25T14:02:11.532123Z",` +
		`"status_history":[{"status":"delivered","at":"2026-11-25T14:02:15Z"}],"final":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if o.State != OutcomeSent || o.InteractionSID != "KI1" || o.SentAt == nil || o.SentAt.Unix() != 1795615331 ||
		o.RecordedAt.Nanosecond() != 532123000 || len(o.StatusHistory) != 1 || !o.Final {
		t.Errorf("ParseOutcome(long form) = %+v", o)
	}
	for _, bad := range []string{`{"s":`, `[1]`, `{"s":"sent","ra":"yesterday"}`} {
		if _, err := ParseOutcome([]byte(bad)); err == nil {
			t.Errorf("ParseOutcome(%s): no error", bad)
		}
	}
	if o, err := ParseOutcome(nil); o != nil || err != nil {
		t.Errorf("ParseOutcome(nil) = %v, %v; want nil, nil", o, err)
	}
}

// PatchOutcome rewrites every key it knows, in the compact form (also when the record was in the
// long one), and keeps keys a newer version added.
func TestPatchOutcome(t *testing.T) {
	t.Parallel()
	o := outcomeCases["sent"]
	stored, _ := EncodeOutcome(o)
	newer := append(stored[:len(stored)-1:len(stored)-1], `,"zz":{"a":1},"aa":"x"}`...)
	// Inside a newer key, a known key's name is only data.
	nested := append(stored[:len(stored)-1:len(stored)-1], `,"zz":{"s":"sent","k":[{"i":1}]}}`...)
	long, _ := json.Marshal(o)
	for name, tc := range map[string]struct {
		stored []byte
		extra  string
	}{
		"compact":                         {stored, ""},
		"long form":                       {long, ""},
		"keys of a newer writer":          {newer, `,"aa":"x","zz":{"a":1}`},
		"a newer key holding known names": {nested, `,"zz":{"s":"sent","k":[{"i":1}]}`},
	} {
		changed := *o
		changed.OutboundStatus, changed.Final = "delivered", true
		got, err := PatchOutcome(tc.stored, &changed)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want, _ := EncodeOutcome(&changed)
		want = append(want[:len(want)-1], tc.extra+"}"...)
		if string(got) != string(want) {
			t.Errorf("%s: PatchOutcome = %s\nwant %s", name, got, want)
		}
	}
	// null reads as a record without keys (encoding/json's reading into a map): o alone.
	if got, err := PatchOutcome([]byte(" null\n"), o); err != nil || string(got) != string(stored) {
		t.Errorf("PatchOutcome of null = %s, %v; want %s", got, err, stored)
	}
	for _, bad := range []string{"not json", `["s","sent"]`, `"sent"`, `{"s":"sent"`, ""} {
		if _, err := PatchOutcome([]byte(bad), o); err == nil {
			t.Errorf("PatchOutcome of %q, not a JSON object: no error", bad)
		}
	}
}

// A Conversations record names its API and message in compact keys (ap, im) and reads back.
func TestOutcomeConversationsKeys(t *testing.T) {
	t.Parallel()
	o := &Outcome{State: OutcomeSent, API: APIConversations, MessageSID: "IM00000000000000000000000000000001", Attempts: 1}
	data, err := EncodeOutcome(o)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil || raw["ap"] != "conversations" || raw["im"] != o.MessageSID || raw["ki"] != nil {
		t.Fatalf("stored %s, want ap and im keys", data)
	}
	got, err := ParseOutcome(data)
	if err != nil || got.API != APIConversations || got.MessageSID != o.MessageSID || got.CreatedSID() != o.MessageSID {
		t.Fatalf("ParseOutcome = %+v, %v", got, err)
	}
	long, _ := json.Marshal(o)
	if got, err := ParseOutcome(long); err != nil || got.MessageSID != o.MessageSID || got.API != APIConversations {
		t.Fatalf("long form: %+v, %v", got, err)
	}
	if (&Outcome{InteractionSID: "KI1"}).CreatedSID() != "KI1" {
		t.Fatal("CreatedSID of a Proxy record must be its interaction")
	}
}

// Records whose history is the JSON array of earlier versions ("h") still read; one updated
// by both versions during an upgrade holds both forms, read as one history in time order,
// each status once.
func TestStatusHistoryArrayForm(t *testing.T) {
	t.Parallel()
	o, err := ParseOutcome([]byte(`{"s":"sent","ki":"KI1","os":"sent","n":1,"ra":1796133047392,` +
		`"h":[{"s":"queued","t":1796133047000},{"s":"sent","t":1796133048000}]}`))
	if err != nil || len(o.StatusHistory) != 2 || o.StatusHistory[1].Status != "sent" || o.StatusHistory[1].At.UnixMilli() != 1796133048000 {
		t.Fatalf("array form: %+v, %v", o, err)
	}
	o, err = ParseOutcome([]byte(`{"s":"sent","ki":"KI1","os":"delivered","n":1,"ra":1796133047392,` +
		`"h":[{"s":"sent","t":1796133047392},{"s":"delivered","t":1796133049000}],"hl":"queued,-os;sent,ri"}`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range o.StatusHistory {
		got = append(got, fmt.Sprintf("%s@%d", e.Status, e.At.UnixMilli()))
	}
	if want := []string{"queued@1796133046500", "sent@1796133047392", "delivered@1796133049000"}; !reflect.DeepEqual(got, want) {
		t.Errorf("both forms: %v, want %v", got, want)
	}
	if _, err := ParseOutcome([]byte(`{"s":"sent","ra":1,"hl":"queued"}`)); err == nil {
		t.Error("an unreadable history: no error")
	}
}

// A delivered record leaves out delivered_at when its history says the same time (21 bytes a
// message), and reads it back from there; one whose history disagrees keeps it.
func TestDeliveredAtFromTheHistory(t *testing.T) {
	rec := time.UnixMilli(1796686293330).UTC()
	at := rec.Add(60 * time.Millisecond)
	o := &Outcome{State: OutcomeSent, InteractionSID: "KI0123456789abcdef0123456789abcdef", OutboundStatus: "delivered",
		Attempts: 1, RecordedAt: rec, Final: true, DeliveredAt: &at,
		StatusHistory: []StatusEvent{{"queued", rec}, {"sent", rec.Add(30 * time.Millisecond)}, {"delivered", at}}}
	data, err := EncodeOutcome(o)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), `"da"`) {
		t.Errorf("stored %s: delivered_at is in the history already", data)
	}
	back, err := ParseOutcome(data)
	if err != nil || back.DeliveredAt == nil || !back.DeliveredAt.Equal(at) {
		t.Fatalf("parsed delivered_at %v, %v; want %v", back.DeliveredAt, err, at)
	}
	other := rec.Add(time.Second)
	o.DeliveredAt = &other
	if data, _ = EncodeOutcome(o); !strings.Contains(string(data), `"da"`) {
		t.Errorf("stored %s: a delivered_at the history does not say must be kept", data)
	}
	if back, _ = ParseOutcome(data); back.DeliveredAt == nil || !back.DeliveredAt.Equal(other) {
		t.Errorf("parsed delivered_at %v, want %v", back.DeliveredAt, other)
	}
	// Not delivered (a later failure is final first): no delivered_at is made up.
	o.OutboundStatus, o.DeliveredAt = "failed", nil
	if data, _ = EncodeOutcome(o); strings.Contains(string(data), `"da"`) {
		t.Errorf("stored %s", data)
	}
	if back, _ = ParseOutcome(data); back.DeliveredAt != nil {
		t.Errorf("parsed delivered_at %v for a failed message", back.DeliveredAt)
	}
}

// BenchmarkCallbackRecordRoundTrip is what a status callback that moves a record does with it:
// read it, fold the status in, and patch it back.
func BenchmarkCallbackRecordRoundTrip(b *testing.B) {
	o := *outcomeCases["sent"]
	o.StatusHistory = []StatusEvent{{Status: "queued", At: time.UnixMilli(1765000000000).UTC()}, {Status: "sent", At: time.UnixMilli(1765000000900).UTC()}}
	stored, err := EncodeOutcome(&o)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		r, err := ParseOutcome(stored)
		if err != nil {
			b.Fatal(err)
		}
		r.OutboundStatus, r.Final = "delivered", true
		if _, err := PatchOutcome(stored, r); err != nil {
			b.Fatal(err)
		}
	}
}
