package conversations_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/proxyq/proxyq/conversations"
	"github.com/proxyq/proxyq/proxyclient"
)

func TestCreateMessageRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		params   conversations.CreateParams
		wantPath string
		wantForm url.Values
		wantHook string
	}{
		{"default service, body and author",
			conversations.CreateParams{Conversation: conversations.Conversation{ConversationSID: testCH}, Author: "clinic", Body: "see you at 3",
				Attributes: `{"proxyq":{"id":"t1"}}`},
			basePath + "/v1/Conversations/" + testCH + "/Messages",
			url.Values{"Author": {"clinic"}, "Body": {"see you at 3"}, "Attributes": {`{"proxyq":{"id":"t1"}}`}}, ""},
		{"named service, media, webhooks off",
			conversations.CreateParams{Conversation: conversations.Conversation{ServiceSID: testIS, ConversationSID: testCH}, MediaSID: testME,
				WebhookEnabled: ptr(false)},
			basePath + "/v1/Services/" + testIS + "/Conversations/" + testCH + "/Messages",
			url.Values{"MediaSid": {testME}}, "false"},
		{"template, webhooks on",
			conversations.CreateParams{Conversation: conversations.Conversation{ConversationSID: testCH}, ContentSID: testHX,
				ContentVariables: `{"1":"Ana"}`, WebhookEnabled: ptr(true)},
			basePath + "/v1/Conversations/" + testCH + "/Messages",
			url.Values{"ContentSid": {testHX}, "ContentVariables": {`{"1":"Ana"}`}}, "true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || r.URL.Path != tt.wantPath {
					t.Errorf("request %s %s, want POST %s", r.Method, r.URL.Path, tt.wantPath)
				}
				if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
					t.Errorf("Content-Type = %q", ct)
				}
				if u, p, ok := r.BasicAuth(); !ok || u != testAccount || p != testToken {
					t.Error("missing or wrong basic auth")
				}
				if got := r.Header.Get("X-Twilio-Webhook-Enabled"); got != tt.wantHook {
					t.Errorf("X-Twilio-Webhook-Enabled = %q, want %q", got, tt.wantHook)
				}
				_ = r.ParseForm()
				if got := r.PostForm.Encode(); got != tt.wantForm.Encode() {
					t.Errorf("form = %s, want %s", got, tt.wantForm.Encode())
				}
				w.WriteHeader(http.StatusCreated)
				_, _ = io.WriteString(w, messageJSON)
			}))
			m, err := newClient(t, srv.URL+basePath, nil).CreateMessage(context.Background(), tt.params)
			if err != nil {
				t.Fatal(err)
			}
			if m.SID != testIM || m.Index != 0 || m.Attributes != `{ "importance": "high" }` || m.Delivery == nil || m.Delivery.Total != 2 ||
				!m.DateCreated.Equal(time.Date(2015, 12, 16, 22, 18, 37, 0, time.UTC)) || m.ContentSID != "" {
				t.Errorf("decoded %+v", m)
			}
		})
	}
}

func TestCreateMessageValidation(t *testing.T) {
	t.Parallel()
	c := newClient(t, "http://127.0.0.1:1"+basePath, nil) // never reached
	conv := conversations.Conversation{ConversationSID: testCH}
	tests := []struct {
		name  string
		p     conversations.CreateParams
		field string
	}{
		{"bad CH", conversations.CreateParams{Conversation: conversations.Conversation{ConversationSID: "CH123"}, Body: "x"}, "ConversationSID"},
		{"bad IS", conversations.CreateParams{Conversation: conversations.Conversation{ServiceSID: "KS" + testCH[2:], ConversationSID: testCH}, Body: "x"}, "ServiceSID"},
		{"nothing to send", conversations.CreateParams{Conversation: conv}, "Body"},
		{"media URL", conversations.CreateParams{Conversation: conv, MediaSID: "https://example.com/a.jpg"}, "MediaSID"},
		{"bad ME", conversations.CreateParams{Conversation: conv, MediaSID: "MEzz"}, "MediaSID"},
		{"bad HX", conversations.CreateParams{Conversation: conv, ContentSID: "HX1"}, "ContentSID"},
		{"variables without template", conversations.CreateParams{Conversation: conv, Body: "x", ContentVariables: `{}`}, "ContentVariables"},
		{"variables not an object", conversations.CreateParams{Conversation: conv, ContentSID: testHX, ContentVariables: `[1]`}, "ContentVariables"},
		{"attributes not an object", conversations.CreateParams{Conversation: conv, Body: "x", Attributes: `"s"`}, "Attributes"},
		{"body too long", conversations.CreateParams{Conversation: conv, Body: strings.Repeat("é", 1601)}, "Body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.CreateMessage(context.Background(), tt.p)
			var ve *proxyclient.ValidationError
			if !errors.As(err, &ve) || ve.Field != tt.field {
				t.Fatalf("err = %v, want validation error on %s", err, tt.field)
			}
			if conversations.Classify(err) != proxyclient.ClassPermanent {
				t.Errorf("Classify = %v", conversations.Classify(err))
			}
		})
	}
}

func TestListMessagesPagingAndSafety(t *testing.T) {
	t.Parallel()
	var srvURL string
	page := func(i int, next string) string {
		n := "null"
		if next != "" {
			n = `"` + next + `"`
		}
		return fmt.Sprintf(`{"messages":[{"sid":"IM%032x","index":%d,"attributes":"{}","date_created":"2024-01-01T00:00:0%dZ"}],"meta":{"page":%d,"page_size":1,"next_page_url":%s,"key":"messages"}}`, i, 9-i, i, i, n)
	}
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("Order") != "desc" || q.Get("PageSize") != "1" {
			t.Errorf("query %s", r.URL.RawQuery)
		}
		switch q.Get("PageToken") {
		case "":
			_, _ = io.WriteString(w, page(0, srvURL+basePath+"/v1/Conversations/"+testCH+"/Messages?Order=desc&PageSize=1&Page=1&PageToken=PT1"))
		case "PT1":
			_, _ = io.WriteString(w, page(1, srvURL+basePath+"/v1/Conversations/"+testCH+"/Messages?Order=desc&PageSize=1&Page=2&PageToken=PT2"))
		case "PT2":
			_, _ = io.WriteString(w, page(2, "https://evil.example/v1/steal?PageToken=PT3"))
		}
	}))
	srvURL = srv.URL
	c := newClient(t, srv.URL+basePath, nil)
	conv := conversations.Conversation{ConversationSID: testCH}

	got, err := c.ListMessages(context.Background(), conv, conversations.ListOptions{Order: conversations.OrderDesc, PageSize: 1, MaxPages: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Messages) != 2 || got.Pages != 2 || !got.Truncated || got.Messages[0].Index != 9 || got.Messages[1].Index != 8 {
		t.Errorf("bounded list = %+v", got)
	}
	_, err = c.ListMessages(context.Background(), conv, conversations.ListOptions{Order: conversations.OrderDesc, PageSize: 1, MaxPages: 5})
	if !errors.Is(err, proxyclient.ErrUnsafeNextPage) {
		t.Errorf("next page on another host: err = %v, want ErrUnsafeNextPage", err)
	}
	for _, opt := range []conversations.ListOptions{{PageSize: 101}, {PageSize: -1}, {MaxPages: -1}, {Order: "newest"}} {
		var ve *proxyclient.ValidationError
		if _, err := c.ListMessages(context.Background(), conv, opt); !errors.As(err, &ve) {
			t.Errorf("options %+v: err = %v, want validation error", opt, err)
		}
	}
}

func TestReceiptsAndFetch(t *testing.T) {
	t.Parallel()
	const receipts = `{"meta":{"page":0,"page_size":50,"next_page_url":null,"key":"delivery_receipts"},"delivery_receipts":[
	 {"sid":"DYaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","account_sid":"ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","conversation_sid":"CHaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","message_sid":"IMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","channel_message_sid":"SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","status":"failed","error_code":3000,"participant_sid":"MBaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","date_created":"2016-03-24T20:37:57Z","date_updated":"2016-03-24T20:37:57Z","url":"https://conversations.twilio.com/v1/x"},
	 {"sid":"DYbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","account_sid":"ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","conversation_sid":"CHaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","message_sid":"IMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","channel_message_sid":null,"status":"delivered","error_code":null,"participant_sid":null,"date_created":"2016-03-24T20:37:57Z","date_updated":null,"url":null},
	 {"sid":"DYcccccccccccccccccccccccccccccccc","message_sid":"IMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","status":"undelivered","error_code":"30003"}]}`
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case basePath + "/v1/Services/" + testIS + "/Conversations/" + testCH + "/Messages/" + testIM + "/Receipts":
			if r.URL.Query().Get("PageSize") != "50" {
				t.Errorf("receipts query %s", r.URL.RawQuery)
			}
			_, _ = io.WriteString(w, receipts)
		case basePath + "/v1/Conversations/" + testCH + "/Messages/" + testIM:
			_, _ = io.WriteString(w, messageJSON)
		default:
			t.Errorf("unexpected %s", r.URL.Path)
		}
	}))
	c := newClient(t, srv.URL+basePath, nil)
	rp, err := c.ListReceipts(context.Background(), conversations.Conversation{ServiceSID: testIS, ConversationSID: testCH}, testIM, conversations.ListOptions{PageSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	if len(rp.Receipts) != 3 || rp.Receipts[2].ErrorCode != 30003 || rp.Receipts[0].Status != "failed" || rp.Receipts[0].ErrorCode != 3000 ||
		rp.Receipts[0].ChannelMessageSID != "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" || rp.Receipts[1].ErrorCode != 0 || rp.Receipts[1].ParticipantSID != "" {
		t.Errorf("receipts = %+v", rp.Receipts)
	}
	if _, err := c.ListReceipts(context.Background(), conversations.Conversation{ConversationSID: testCH}, testIM, conversations.ListOptions{Order: conversations.OrderDesc}); err == nil {
		t.Error("Order accepted for receipts")
	}
	m, err := c.FetchMessage(context.Background(), conversations.Conversation{ConversationSID: testCH}, testIM)
	if err != nil || m.SID != testIM || m.ParticipantSID != "MBaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
		t.Fatalf("FetchMessage = %+v, %v", m, err)
	}
	if _, err := c.FetchMessage(context.Background(), conversations.Conversation{ConversationSID: testCH}, "SM"+testIM[2:]); err == nil {
		t.Error("FetchMessage accepted an SM SID")
	}
}

func TestEndpointEdgeRegion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cfg  conversations.Config
		want string
	}{
		{conversations.Config{}, "https://conversations.twilio.com"},
		{conversations.Config{Edge: "dublin", Region: "ie1"}, "https://conversations.dublin.ie1.twilio.com"},
		{conversations.Config{Edge: "sydney"}, "https://conversations.sydney.us1.twilio.com"},
		{conversations.Config{Region: "au1"}, "https://conversations.au1.twilio.com"},
		{conversations.Config{BaseURL: "http://127.0.0.1:4010/twilio/", Edge: "dublin"}, "http://127.0.0.1:4010/twilio"},
	}
	for _, tt := range tests {
		tt.cfg.AccountSID, tt.cfg.AuthToken = testAccount, testToken
		c, err := conversations.New(tt.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Endpoint(); got != tt.want {
			t.Errorf("%+v: Endpoint = %s, want %s", tt.cfg, got, tt.want)
		}
	}
	_, err := conversations.New(conversations.Config{AccountSID: testAccount, AuthToken: testToken, BaseURL: "ftp://x"})
	var ve *proxyclient.ValidationError
	if !errors.As(err, &ve) || ve.Field != "BaseURL" {
		t.Errorf("bad BaseURL: %v", err)
	}
}
