package tasks

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

const (
	testCH = "CHaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	testIS = "ISaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	testME = "MEaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	testHX = "HXaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
)

func TestConversationPayloadValidate(t *testing.T) {
	t.Parallel()
	ok := ConversationPayload{ConversationSID: testCH, Author: "clinic", Body: "hi"}
	with := func(mod func(*ConversationPayload)) ConversationPayload { p := ok; mod(&p); return p }
	zero := time.Time{}
	tests := []struct {
		name   string
		p      ConversationPayload
		fields []string // fields named by the errors, in order; nil means valid
	}{
		{"minimal", ok, nil},
		{"service, media, template, attributes, webhooks", with(func(p *ConversationPayload) {
			p.ServiceSID, p.MediaSID, p.ContentSID = testIS, testME, testHX
			p.ContentVariables, p.Attributes, p.WebhookEnabled = json.RawMessage(`{"1":"Ana"}`), json.RawMessage(`{"app":{"id":7}}`), new(bool)
		}), nil},
		{"media only", ConversationPayload{ConversationSID: testCH, MediaSID: testME}, nil},
		{"template only", ConversationPayload{ConversationSID: testCH, ContentSID: testHX}, nil},
		{"no conversation", with(func(p *ConversationPayload) { p.ConversationSID = "" }), []string{"conversation_sid"}},
		{"Proxy session as conversation", with(func(p *ConversationPayload) { p.ConversationSID = "KC" + testCH[2:] }), []string{"conversation_sid"}},
		{"Proxy service SID", with(func(p *ConversationPayload) { p.ServiceSID = "KS" + testIS[2:] }), []string{"service_sid"}},
		{"bad account", with(func(p *ConversationPayload) { p.AccountSID = "AC1" }), []string{"account_sid"}},
		{"nothing to send", with(func(p *ConversationPayload) { p.Body = "  " }), []string{"body"}},
		{"body too long", with(func(p *ConversationPayload) { p.Body = strings.Repeat("ß", 1601) }), []string{"body"}},
		{"body not UTF-8", with(func(p *ConversationPayload) { p.Body = "\xff" }), []string{"body"}},
		{"media URL", with(func(p *ConversationPayload) { p.MediaSID = "https://example.com/x.jpg" }), []string{"media_sid"}},
		{"bad media SID", with(func(p *ConversationPayload) { p.MediaSID = "ME12" }), []string{"media_sid"}},
		{"bad template SID", with(func(p *ConversationPayload) { p.ContentSID = "HX12" }), []string{"content_sid"}},
		{"variables without template", with(func(p *ConversationPayload) { p.ContentVariables = json.RawMessage(`{"1":"a"}`) }), []string{"content_variables"}},
		{"variables not an object", with(func(p *ConversationPayload) { p.ContentSID, p.ContentVariables = testHX, json.RawMessage(`["a"]`) }), []string{"content_variables"}},
		{"attributes not an object", with(func(p *ConversationPayload) { p.Attributes = json.RawMessage(`"x"`) }), []string{"attributes"}},
		{"attributes use the stamp key", with(func(p *ConversationPayload) { p.Attributes = json.RawMessage(`{"proxyq":{"id":"forged"}}`) }), []string{"attributes"}},
		{"zero send_before", with(func(p *ConversationPayload) { p.SendBefore = &zero }), []string{"send_before"}},
		{"bad ordering key", with(func(p *ConversationPayload) { p.OrderingKey = "a b" }), []string{"ordering_key"}},
		{"several at once", ConversationPayload{ConversationSID: "x", MediaSID: "y"}, []string{"conversation_sid", "media_sid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.p.Validate()
			if tt.fields == nil {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var es ValidationErrors
			if !errors.As(err, &es) {
				t.Fatalf("Validate = %v, want ValidationErrors", err)
			}
			var got []string
			for _, e := range es {
				got = append(got, e.Field)
			}
			if strings.Join(got, ",") != strings.Join(tt.fields, ",") {
				t.Errorf("fields %v, want %v (%v)", got, tt.fields, err)
			}
		})
	}
}

func TestDecodeConversation(t *testing.T) {
	t.Parallel()
	const full = `{"conversation_sid":"` + testCH + `","service_sid":"` + testIS + `","author":"clinic","body":"hi",
		"media_sid":"` + testME + `","content_sid":"` + testHX + `","content_variables":{"1":"Ana"},
		"attributes":{"app":"x","n":12345678901234567890},"webhook_enabled":false,
		"send_before":"2030-01-02T03:04:05Z","ordering_key":"patient-7","account_sid":"AC0123456789abcdef0123456789abcdef"}`
	p, err := DecodeConversation([]byte(full))
	if err != nil {
		t.Fatal(err)
	}
	if p.ConversationSID != testCH || p.ServiceSID != testIS || p.WebhookEnabled == nil || *p.WebhookEnabled ||
		string(p.Attributes) != `{"app":"x","n":12345678901234567890}` || p.OrderingKey != "patient-7" ||
		!p.SendBefore.Equal(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("decoded %+v", p)
	}
	// Round trip through Encode and Task.
	data, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeConversation(data)
	if err != nil || string(back.Attributes) != string(p.Attributes) || back.Body != p.Body {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	task, err := p.Task()
	if err != nil || task.Type() != TypeSendConversationMessage || string(task.Payload()) != string(data) {
		t.Fatalf("Task = %v, %v", task, err)
	}

	tests := []struct {
		name, in, field, rule string
	}{
		{"not an object", `[1]`, "payload", "JSON object"},
		{"unknown key", `{"conversation_sid":"` + testCH + `","body":"x","colour":"red"}`, "colour", "not a known key"},
		{"case differs", `{"Conversation_sid":"` + testCH + `","body":"x"}`, "Conversation_sid", "not a known key"},
		{"repeated key", `{"conversation_sid":"` + testCH + `","body":"x","body":"y"}`, "body", "only once"},
		{"media_url", `{"conversation_sid":"` + testCH + `","media_url":["https://x/y.jpg"]}`, "media_url", "Media SID"},
		{"Proxy participant", `{"conversation_sid":"` + testCH + `","participant_sid":"KP1","body":"x"}`, "participant_sid", "Proxy key"},
		{"body not a string", `{"conversation_sid":"` + testCH + `","body":7}`, "body", "JSON string"},
		{"attributes as a string", `{"conversation_sid":"` + testCH + `","body":"x","attributes":"{}"}`, "attributes", "JSON object"},
		{"webhook_enabled as a string", `{"conversation_sid":"` + testCH + `","body":"x","webhook_enabled":"false"}`, "webhook_enabled", "true or false"},
		{"empty ordering key", `{"conversation_sid":"` + testCH + `","body":"x","ordering_key":""}`, "ordering_key", "must not be empty"},
		{"bad send_before", `{"conversation_sid":"` + testCH + `","body":"x","send_before":"tomorrow"}`, "send_before", "RFC 3339"},
		{"trailing data", `{"conversation_sid":"` + testCH + `","body":"x"} {}`, "payload", "single JSON object"},
		{"stamp key", `{"conversation_sid":"` + testCH + `","body":"x","attributes":{"proxyq":1}}`, "attributes", `"proxyq"`},
		{"URL as media", `{"conversation_sid":"` + testCH + `","media_sid":"https://x/y.jpg"}`, "media_sid", "upload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := DecodeConversation([]byte(tt.in))
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != tt.field || !strings.Contains(ve.Rule, tt.rule) {
				t.Fatalf("err = %v, want %s: …%s…", err, tt.field, tt.rule)
			}
		})
	}
	if _, err := DecodeConversation([]byte(`{"conversation_sid":"` + testCH + `","body":"` + strings.Repeat("a", MaxPayloadBytes) + `"}`)); !errors.Is(err, ErrPayloadTooLarge) {
		t.Errorf("oversized: %v", err)
	}
	// A Proxy payload is not a Conversations payload, and the reverse.
	if _, err := Decode([]byte(`{"conversation_sid":"` + testCH + `","body":"x"}`)); err == nil {
		t.Error("Decode accepted a Conversations payload")
	}
	if _, err := DecodeConversation([]byte(`{"service_sid":"KSaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","session_sid":"KC1","participant_sid":"KP1","body":"x"}`)); err == nil {
		t.Error("DecodeConversation accepted a Proxy payload")
	}
}
