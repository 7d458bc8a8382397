package convtest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyq/proxyq/conversations/convtest"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
)

const (
	account = "AC0123456789abcdef0123456789abcdef"
	secret  = "s3cr3t"
	ch      = "CHaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	is      = "ISaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
)

func start(t *testing.T, cfg convtest.Config) *convtest.Server {
	t.Helper()
	if cfg.Credentials == nil {
		cfg.Credentials = map[string]string{account: secret}
	}
	srv, err := convtest.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// call makes one request with basic auth and decodes a JSON answer.
func call(t *testing.T, method, u string, form url.Values, hdr map[string]string) (int, map[string]any) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(account, secret)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestCreateListFetch(t *testing.T) {
	t.Parallel()
	srv := start(t, convtest.Config{})
	msgs := srv.URL + "/v1/Services/" + is + "/Conversations/" + ch + "/Messages"
	for i := range 5 {
		st, m := call(t, "POST", msgs, url.Values{"Body": {"same body"}, "Attributes": {`{"n":` + string(rune('0'+i)) + `}`}},
			map[string]string{"X-Twilio-Webhook-Enabled": "false"})
		if st != http.StatusCreated || m["index"] != float64(i) || m["author"] != "system" || m["chat_service_sid"] != is ||
			!strings.HasPrefix(m["sid"].(string), "IM") || m["delivery"] == nil {
			t.Fatalf("create %d: %d %v", i, st, m)
		}
		if !strings.HasPrefix(m["url"].(string), srv.URL+"/v1/Services/") {
			t.Errorf("url %v not absolute under the prefix", m["url"])
		}
	}
	if got := srv.Fake.Messages(account, is, ch); len(got) != 5 || got[0].WebhookEnabled != "false" {
		t.Fatalf("stored %+v", got)
	}
	// The default Service does not see the named Service's conversation.
	if _, m := call(t, "GET", srv.URL+"/v1/Conversations/"+ch+"/Messages", nil, nil); len(m["messages"].([]any)) != 0 {
		t.Errorf("default service sees %v", m["messages"])
	}
	// desc, 2 per page, following next_page_url: 4,3 | 2,1 | 0.
	next, indexes := msgs+"?Order=DeSc&PageSize=2", []float64{}
	for pages := 0; next != ""; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		st, body := call(t, "GET", next, nil, nil)
		if st != 200 {
			t.Fatalf("list: %d %v", st, body)
		}
		for _, m := range body["messages"].([]any) {
			indexes = append(indexes, m.(map[string]any)["index"].(float64))
		}
		next, _ = body["meta"].(map[string]any)["next_page_url"].(string)
	}
	if got := fmt.Sprint(indexes); got != "[4 3 2 1 0]" {
		t.Errorf("indexes %s, want [4 3 2 1 0]", got)
	}
	sid := srv.Fake.Messages(account, is, ch)[2].SID
	if st, m := call(t, "GET", msgs+"/"+sid, nil, nil); st != 200 || m["index"] != float64(2) {
		t.Errorf("fetch: %d %v", st, m)
	}
	if st, m := call(t, "GET", msgs+"/"+sid+"/Receipts", nil, nil); st != 200 || len(m["delivery_receipts"].([]any)) != 1 {
		t.Errorf("receipts: %d %v", st, m)
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	srv := start(t, convtest.Config{})
	msgs := srv.URL + "/v1/Conversations/" + ch + "/Messages"
	tests := []struct {
		name   string
		form   url.Values
		hdr    map[string]string
		status int
		code   float64
	}{
		{"nothing to send", url.Values{"Author": {"a"}}, nil, 400, 20001},
		{"unknown parameter", url.Values{"Body": {"x"}, "MediaUrl": {"https://x"}}, nil, 400, 20001},
		{"bad MediaSid", url.Values{"MediaSid": {"https://x/y.jpg"}}, nil, 400, 20001},
		{"attributes not JSON", url.Values{"Body": {"x"}, "Attributes": {"{"}}, nil, 400, 20001},
		{"bad webhook header", url.Values{"Body": {"x"}}, map[string]string{"X-Twilio-Webhook-Enabled": "yes"}, 400, 20001},
	}
	for _, tt := range tests {
		if st, m := call(t, "POST", msgs, tt.form, tt.hdr); st != tt.status || m["code"] != tt.code {
			t.Errorf("%s: %d %v", tt.name, st, m)
		}
	}
	srv.Fake.CloseConversation(account, "", ch)
	if st, m := call(t, "POST", msgs, url.Values{"Body": {"x"}}, nil); st != 400 || m["code"] != float64(50377) {
		t.Errorf("closed: %d %v", st, m)
	}
	srv.Fake.MarkConversationUnknown(account, "", ch)
	if st, m := call(t, "GET", msgs, nil, nil); st != 404 || m["code"] != float64(20404) {
		t.Errorf("unknown: %d %v", st, m)
	}
	req, _ := http.NewRequest("GET", msgs, nil)
	req.SetBasicAuth(account, "wrong")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Errorf("bad secret: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if st, _ := call(t, "GET", srv.URL+"/v1/Conversations/CH1/Messages", nil, nil); st != 404 {
		t.Errorf("malformed SID: %d", st)
	}
}

// receiver collects onDeliveryUpdated posts and checks their signature like a real receiver.
type receiver struct {
	mu     sync.Mutex
	got    []url.Values
	forged int
	url    string
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	rc := &receiver{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if proxytest.CallbackSignature(secret, rc.url, r.PostForm) != r.Header.Get("X-Twilio-Signature") || r.Header.Get("I-Twilio-Idempotency-Token") == "" {
			rc.forged++
			w.WriteHeader(http.StatusForbidden)
			return
		}
		rc.got = append(rc.got, r.PostForm)
	}))
	t.Cleanup(ts.Close)
	rc.url = ts.URL + "/hooks/conversations"
	return rc
}

func TestDeliveryWebhooks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		outcome    convtest.Outcome
		dup, ooo   bool
		wantStatus []string // in posting order
		errorCode  string
	}{
		{"delivered", convtest.Delivered, false, false, []string{"delivered"}, ""},
		{"read, duplicated", convtest.Read, true, false, []string{"delivered", "delivered", "read", "read"}, ""},
		{"read, out of order", convtest.Read, false, true, []string{"read", "delivered"}, ""},
		{"undelivered", convtest.Undelivered, false, false, []string{"undelivered"}, "30003"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rc := newReceiver(t)
			srv := start(t, convtest.Config{Delivery: convtest.DeliveryConfig{URL: rc.url, Delay: time.Millisecond, Duplicates: tt.dup, OutOfOrder: tt.ooo, Default: tt.outcome}})
			st, m := call(t, "POST", srv.URL+"/v1/Conversations/"+ch+"/Messages", url.Values{"Body": {"x"}}, nil)
			if st != 201 {
				t.Fatalf("create: %d", st)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := srv.Fake.WaitDelivery(ctx); err != nil {
				t.Fatal(err)
			}
			rc.mu.Lock()
			defer rc.mu.Unlock()
			if rc.forged != 0 || len(rc.got) != len(tt.wantStatus) {
				t.Fatalf("got %d webhooks (%d bad signatures), want %d", len(rc.got), rc.forged, len(tt.wantStatus))
			}
			for i, p := range rc.got {
				if p.Get("Status") != tt.wantStatus[i] || p.Get("EventType") != "onDeliveryUpdated" || p.Get("MessageSid") != m["sid"] ||
					p.Get("ConversationSid") != ch || p.Get("AccountSid") != account || !strings.HasPrefix(p.Get("DeliveryReceiptSid"), "DY") ||
					!strings.HasPrefix(p.Get("ChannelMessageSid"), "SM") || !strings.HasPrefix(p.Get("ParticipantSid"), "MB") || p.Get("ErrorCode") != tt.errorCode {
					t.Errorf("webhook %d = %v", i, p)
				}
				for k := range p {
					if !contains(convtest.DeliveryParams, k) {
						t.Errorf("undocumented parameter %s", k)
					}
				}
			}
			stored, _ := srv.Fake.Message(m["sid"].(string))
			if got := stored.Receipts[0].Status; got != map[convtest.Outcome]string{convtest.Delivered: "delivered", convtest.Read: "read", convtest.Undelivered: "undelivered"}[tt.outcome] {
				t.Errorf("receipt status %s", got)
			}
		})
	}
}

func TestFaultRatesSeeded(t *testing.T) {
	t.Parallel()
	run := func() map[string]int {
		srv := start(t, convtest.Config{Seed: 7})
		if err := srv.Fake.SetFaultRates(map[proxytest.Fault]float64{proxytest.Fault429: 0.3, proxytest.Fault500AfterCreate: 0.2}); err != nil {
			t.Fatal(err)
		}
		for range 40 {
			call(t, "POST", srv.URL+"/v1/Conversations/"+ch+"/Messages", url.Values{"Body": {"x"}}, nil)
		}
		s := srv.Fake.Stats()
		if s.Creates != 40-s.Faults["429"] {
			t.Errorf("creates %d with %d 429s", s.Creates, s.Faults["429"])
		}
		return s.Faults
	}
	a, b := run(), run()
	if a["429"] == 0 || a["500-after-create"] == 0 || a["429"] != b["429"] || a["500-after-create"] != b["500-after-create"] {
		t.Errorf("seeded rates: %v then %v", a, b)
	}
	srv := start(t, convtest.Config{})
	if err := srv.Fake.SetFaultRates(map[proxytest.Fault]float64{proxytest.Fault429: 0.7, proxytest.Fault503: 0.7}); err == nil {
		t.Error("rates over 1 accepted")
	}
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func TestConcurrencyLimit(t *testing.T) {
	t.Parallel()
	srv := start(t, convtest.Config{MaxConcurrentPerAccount: 1})
	if err := srv.Fake.Inject(proxytest.FaultHangAfterCreate, 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	hung := make(chan struct{})
	go func() {
		defer close(hung)
		req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/Conversations/"+ch+"/Messages", strings.NewReader("Body=x"))
		req.SetBasicAuth(account, secret)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for len(srv.Fake.Messages(account, "", ch)) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	st, m := call(t, "POST", srv.URL+"/v1/Conversations/"+ch+"/Messages", url.Values{"Body": {"y"}}, nil)
	if st != 429 || m["code"] != float64(20429) {
		t.Errorf("beyond the limit: %d %v", st, m)
	}
	cancel()
	<-hung
	if n := len(srv.Fake.Messages(account, "", ch)); n != 1 {
		t.Errorf("stored %d, want only the hung one", n)
	}
}

func TestWebhookSignedWithCreatorsToken(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	srv, err := convtest.NewServer(convtest.Config{Delivery: convtest.DeliveryConfig{URL: rc.url, Delay: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	call(t, "POST", srv.URL+"/v1/Conversations/"+ch+"/Messages", url.Values{"Body": {"x"}}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Fake.WaitDelivery(ctx); err != nil {
		t.Fatal(err)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.got) != 1 || rc.forged != 0 {
		t.Errorf("got %d webhooks, %d forged", len(rc.got), rc.forged)
	}
}
