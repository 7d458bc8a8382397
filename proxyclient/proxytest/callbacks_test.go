package proxytest_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyq/proxyq/proxyclient/proxytest"
)

// Twilio's published request-validation vector (twilio-go's validator tests).
func TestCallbackSignatureVector(t *testing.T) {
	t.Parallel()
	params := url.Values{
		"Digits": {"1234"}, "CallSid": {"CA1234567890ABCDE"}, "To": {"+18005551212"},
		"Caller": {"+14158675309"}, "From": {"+14158675309"}, "ReasonConferenceEnded": {"test"},
		"Reason": {"Participant"},
	}
	got := proxytest.CallbackSignature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", params)
	if want := "vOEb5UThFn24KEfnOFLQY2AE5FY="; got != want {
		t.Fatalf("signature %q, want %q", got, want)
	}
	// Another URL, token or value changes it.
	for _, other := range []string{
		proxytest.CallbackSignature("12346", "https://mycompany.com/myapp.php?foo=1&bar=2", params),
		proxytest.CallbackSignature("12345", "https://mycompany.com:443/myapp.php?foo=1&bar=2", params),
		proxytest.CallbackSignature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", url.Values{"Digits": {"1235"}}),
	} {
		if other == got {
			t.Errorf("signature did not change")
		}
	}
}

// verify is the test's own few-line X-Twilio-Signature check, independent of the Fake's.
func verify(token, fullURL string, form url.Values, sig string) bool {
	s := fullURL
	for _, k := range slices.Sorted(maps.Keys(form)) {
		for _, v := range form[k] {
			s += k + v
		}
	}
	m := hmac.New(sha1.New, []byte(token))
	m.Write([]byte(s))
	want := base64.StdEncoding.EncodeToString(m.Sum(nil))
	return hmac.Equal([]byte(want), []byte(sig))
}

// received is one callback as the receiver saw it.
type received struct {
	form        url.Values
	sig, idem   string
	contentType string
	valid       bool
	at          time.Time
}

// receiver is an httptest server standing for the application's callback route.
type receiver struct {
	URL     string // where the Fake posts
	signURL string // what the signature covers
	token   string
	answer  func(n int) int // status for the n-th request (from 1); nil: 200
	hold    chan struct{}   // when non-nil, handlers block on it (or the request's end)

	mu  sync.Mutex
	got []received
}

func newReceiver(t *testing.T, token string) *receiver {
	t.Helper()
	rc := &receiver{token: token}
	ts := newHTTPTestServer(t, http.HandlerFunc(rc.serve))
	rc.URL = ts.URL + "/v1/twilio/proxy/callbacks?tenant=a%20b&x=1"
	rc.signURL = rc.URL
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(b))
	got := received{
		form: form, sig: r.Header.Get("X-Twilio-Signature"), idem: r.Header.Get("I-Twilio-Idempotency-Token"),
		contentType: r.Header.Get("Content-Type"), at: time.Now(),
	}
	got.valid = r.Method == http.MethodPost && r.URL.RawQuery == "tenant=a%20b&x=1" && verify(rc.token, rc.signURL, form, got.sig)
	rc.mu.Lock()
	rc.got = append(rc.got, got)
	n := len(rc.got)
	rc.mu.Unlock()
	if rc.hold != nil {
		select {
		case <-rc.hold:
		case <-r.Context().Done():
		}
	}
	status := http.StatusOK
	if rc.answer != nil {
		status = rc.answer(n)
	}
	w.WriteHeader(status)
}

func (rc *receiver) all() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

func (rc *receiver) statuses(ki string) []string {
	var out []string
	for _, g := range rc.all() {
		if g.form.Get("interactionSid") == ki {
			out = append(out, g.form.Get("outboundResourceStatus"))
		}
	}
	return out
}

func waitCallbacks(t *testing.T, f *proxytest.Fake) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.WaitCallbacks(ctx); err != nil {
		t.Fatal(err)
	}
}

func callbackServer(t *testing.T, rc *receiver, cb proxytest.CallbackConfig) *proxytest.Server {
	t.Helper()
	cb.URL = rc.URL
	if cb.Delay == 0 {
		cb.Delay = 30 * time.Millisecond
	}
	return newServer(t, proxytest.Config{Callbacks: cb, Now: clock})
}

func clock() time.Time { return time.Date(2015, 7, 30, 20, 0, 0, 0, time.UTC) }

var callbackParams = []string{
	"inboundParticipantSid", "inboundResourceSid", "inboundResourceStatus", "inboundResourceType", "inboundResourceUrl",
	"interactionAccountSid", "interactionData", "interactionDateCreated", "interactionDateUpdated", "interactionServiceSid",
	"interactionSessionSid", "interactionSid", "interactionType", "outboundParticipantSid", "outboundResourceSid",
	"outboundResourceStatus", "outboundResourceType", "outboundResourceUrl",
}

func TestCallbacksDelivered(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, secret)
	srv := callbackServer(t, rc, proxytest.CallbackConfig{})
	r := mustCreate(t, srv, kp, "Your driver is here & waiting")
	waitCallbacks(t, srv.Fake)

	got := rc.all()
	if st := rc.statuses(r.SID); !slices.Equal(st, []string{"queued", "sent", "delivered"}) {
		t.Fatalf("statuses %v, want queued, sent, delivered", st)
	}
	idems := map[string]bool{}
	for i, g := range got {
		if !g.valid {
			t.Errorf("callback %d: signature %q does not verify (or wrong method/query)", i, g.sig)
		}
		if g.contentType != "application/x-www-form-urlencoded" {
			t.Errorf("Content-Type %q", g.contentType)
		}
		if names := slices.Sorted(maps.Keys(g.form)); !slices.Equal(names, callbackParams) {
			t.Errorf("parameters %v\nwant %v", names, callbackParams)
		}
		idems[g.idem] = true
		want := map[string]string{
			"interactionSid": r.SID, "interactionSessionSid": kc, "interactionServiceSid": ks,
			"interactionAccountSid": acct, "interactionType": "message",
			"interactionData":        `{"body":"Your driver is here & waiting"}`,
			"interactionDateCreated": "2015-07-30T20:00:00Z",
			"outboundParticipantSid": kp, "outboundResourceSid": r.OutboundResourceSID,
			"outboundResourceType": "Message", "inboundResourceSid": "",
			"outboundResourceUrl": srv.URL + "/2010-04-01/Accounts/" + acct + "/Messages/" + r.OutboundResourceSID + ".json",
		}
		for k, v := range want {
			if g.form.Get(k) != v {
				t.Errorf("callback %d: %s = %q, want %q", i, k, g.form.Get(k), v)
			}
		}
	}
	if len(idems) != 3 {
		t.Errorf("%d distinct idempotency tokens for 3 callbacks", len(idems))
	}
	// The dates move with the statuses.
	if d := got[2].form.Get("interactionDateUpdated"); !reDate.MatchString(d) {
		t.Errorf("interactionDateUpdated %q", d)
	}

	st, ok := srv.Fake.MessageStatus(r.SID)
	if !ok || st.Status != "delivered" || st.ErrorCode != 0 || !slices.Equal(st.History, []string{"queued", "sent", "delivered"}) ||
		st.MessageSID != r.OutboundResourceSID {
		t.Errorf("MessageStatus = %+v, %v", st, ok)
	}
	if bySM, _ := srv.Fake.MessageStatus(r.OutboundResourceSID); bySM.InteractionSID != r.SID {
		t.Errorf("MessageStatus by SM = %+v", bySM)
	}
	// Fetch and list show the current status.
	resp, b := mustDo(t, srv, http.MethodGet, r.URL, acct, nil)
	if resp.StatusCode != 200 || decode[resource](t, b).OutboundResourceStatus != "delivered" {
		t.Errorf("fetch after delivery: %d %s", resp.StatusCode, b)
	}
	_, b = mustDo(t, srv, http.MethodGet, srv.URL+messagesPath(ks, kc, kp), acct, nil)
	if l := decode[listPage](t, b); len(l.Interactions) != 1 || l.Interactions[0].OutboundResourceStatus != "delivered" {
		t.Errorf("list after delivery: %s", b)
	}
	// The Messaging API route serves the message.
	resp, b = mustDo(t, srv, http.MethodGet, got[0].form.Get("outboundResourceUrl"), acct, nil)
	raw := decode[map[string]any](t, b)
	if resp.StatusCode != 200 || raw["status"] != "delivered" || raw["error_code"] != nil || raw["error_message"] != nil ||
		raw["sid"] != r.OutboundResourceSID || raw["date_created"] != "Thu, 30 Jul 2015 20:00:00 +0000" {
		t.Errorf("message: %d %s", resp.StatusCode, b)
	}
	if _, present := raw["error_code"]; !present {
		t.Errorf("error_code missing, want null")
	}
	s := srv.Fake.CallbackStats()
	if s.Scheduled != 3 || s.Delivered != 3 || s.Attempts != 3 || s.Answers[200] != 3 || s.Pending != 0 {
		t.Errorf("stats %+v", s)
	}
	resp, b = mustDo(t, srv, http.MethodGet, srv.URL+"/_proxytest/callbacks", "", nil)
	tool := decode[struct {
		Stats     proxytest.CallbackStats `json:"stats"`
		Callbacks []proxytest.Callback    `json:"callbacks"`
	}](t, b)
	if resp.StatusCode != 200 || tool.Stats.Delivered != 3 || len(tool.Callbacks) != 3 || tool.Callbacks[2].Status != "delivered" {
		t.Errorf("/_proxytest/callbacks: %d %s", resp.StatusCode, b)
	}
	cbs := srv.Fake.Callbacks()
	if len(cbs) != 3 || cbs[0].State != "delivered" || cbs[0].StatusCode != 200 || cbs[0].Signature != got[0].sig {
		t.Errorf("Callbacks() = %+v", cbs)
	}
}

func TestCallbacksUndeliveredAndFailed(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, secret)
	srv := callbackServer(t, rc, proxytest.CallbackConfig{Undelivered: 1, ErrorCodes: []int{30005}})
	if err := srv.Fake.ScriptDelivery(proxytest.DeliveryPlan{Final: "failed", ErrorCode: 30007}, 1); err != nil {
		t.Fatal(err)
	}
	failed := mustCreate(t, srv, kp, "one")
	undelivered := mustCreate(t, srv, kp, "two")
	waitCallbacks(t, srv.Fake)

	if st := rc.statuses(failed.SID); !slices.Equal(st, []string{"queued", "failed"}) {
		t.Errorf("failed: statuses %v", st)
	}
	if st := rc.statuses(undelivered.SID); !slices.Equal(st, []string{"queued", "sent", "undelivered"}) {
		t.Errorf("undelivered: statuses %v", st)
	}
	for _, tc := range []struct {
		r      resource
		status string
		code   float64
		msg    string
	}{
		{failed, "failed", 30007, "Message filtered"},
		{undelivered, "undelivered", 30005, "Unknown destination handset"},
	} {
		st, _ := srv.Fake.MessageStatus(tc.r.SID)
		if st.Status != tc.status || st.ErrorCode != int(tc.code) || st.ErrorMessage != tc.msg {
			t.Errorf("MessageStatus = %+v", st)
		}
		_, b := mustDo(t, srv, http.MethodGet, tc.r.OutboundResourceURL, acct, nil)
		raw := decode[map[string]any](t, b)
		if raw["status"] != tc.status || raw["error_code"] != tc.code || raw["error_message"] != tc.msg {
			t.Errorf("message %s", b)
		}
		if tc.status == "failed" && raw["date_sent"] != nil {
			t.Errorf("failed message has date_sent %v", raw["date_sent"])
		}
	}
	if err := srv.Fake.ScriptDelivery(proxytest.DeliveryPlan{Final: "read"}, 1); err == nil {
		t.Error("ScriptDelivery accepted an unknown final status")
	}
}

func TestCallbacksDuplicatesAndOutOfOrder(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, secret)
	srv := callbackServer(t, rc, proxytest.CallbackConfig{Duplicates: 1})
	dup := mustCreate(t, srv, kp, "dup")
	waitCallbacks(t, srv.Fake)
	got := rc.all()
	if len(got) != 6 {
		t.Fatalf("%d callbacks, want 6 (3 statuses twice)", len(got))
	}
	byIdem := map[string][]received{}
	for _, g := range got {
		if !g.valid {
			t.Errorf("invalid signature on %v", g.form.Get("outboundResourceStatus"))
		}
		byIdem[g.idem] = append(byIdem[g.idem], g)
	}
	if len(byIdem) != 3 {
		t.Errorf("%d idempotency tokens, want 3", len(byIdem))
	}
	for _, pair := range byIdem {
		if len(pair) != 2 || pair[0].sig != pair[1].sig || pair[0].form.Encode() != pair[1].form.Encode() {
			t.Errorf("duplicate differs: %+v", pair)
		}
	}
	if s := srv.Fake.CallbackStats(); s.Duplicates != 3 || s.Delivered != 6 {
		t.Errorf("stats %+v", s)
	}
	_ = dup

	rc2 := newReceiver(t, secret)
	srv2 := callbackServer(t, rc2, proxytest.CallbackConfig{OutOfOrder: 1})
	r := mustCreate(t, srv2, kp, "ooo")
	waitCallbacks(t, srv2.Fake)
	if st := rc2.statuses(r.SID); !slices.Equal(st, []string{"delivered", "sent", "queued"}) {
		t.Errorf("out of order statuses %v, want delivered, sent, queued", st)
	}
	if st, _ := srv2.Fake.MessageStatus(r.SID); !slices.Equal(st.History, []string{"queued", "sent", "delivered"}) {
		t.Errorf("history %v: the message itself moves in order", st.History)
	}
	if s := srv2.Fake.CallbackStats(); s.OutOfOrder != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestCallbacksBeforeAnswer(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, secret)
	rc.hold = make(chan struct{})
	srv := callbackServer(t, rc, proxytest.CallbackConfig{BeforeAnswer: true, Delay: time.Hour})
	done := make(chan resource)
	go func() { done <- mustCreate(t, srv, kp, "early") }()
	// The create does not answer while the receiver holds the first callback.
	eventually(t, "the first callback arrives", func() bool { return len(rc.all()) == 1 })
	select {
	case <-done:
		t.Fatal("create answered before its first callback was answered")
	case <-time.After(50 * time.Millisecond):
	}
	close(rc.hold)
	r := <-done
	got := rc.all()
	if len(got) != 1 || got[0].form.Get("interactionSid") != r.SID || got[0].form.Get("outboundResourceStatus") != "queued" || !got[0].valid {
		t.Fatalf("before the answer: %+v", got)
	}
}

func TestCallbacksRetries(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, secret)
	rc.answer = func(n int) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	}
	srv := callbackServer(t, rc, proxytest.CallbackConfig{Failed: 1, RetryBackoff: time.Millisecond, Delay: 200 * time.Millisecond})
	r := mustCreate(t, srv, kp, "retry")
	waitCallbacks(t, srv.Fake)
	if st := rc.statuses(r.SID); !slices.Equal(st, []string{"queued", "queued", "queued", "failed"}) {
		t.Errorf("statuses %v: want the first callback retried twice", st)
	}
	s := srv.Fake.CallbackStats()
	if s.Attempts != 4 || s.Retries != 2 || s.Delivered != 2 || s.Answers[500] != 2 || s.Answers[204] != 2 {
		t.Errorf("stats %+v", s)
	}

	// A receiver that always fails: given up after Attempts.
	rc2 := newReceiver(t, secret)
	rc2.answer = func(int) int { return http.StatusForbidden }
	srv2 := callbackServer(t, rc2, proxytest.CallbackConfig{Failed: 1, Attempts: 2, RetryBackoff: time.Millisecond})
	mustCreate(t, srv2, kp, "forbidden")
	waitCallbacks(t, srv2.Fake)
	if s := srv2.Fake.CallbackStats(); s.Failed != 2 || s.Attempts != 4 || s.Answers[403] != 4 || s.Delivered != 0 {
		t.Errorf("stats %+v", s)
	}
	for _, cb := range srv2.Fake.Callbacks() {
		if cb.State != "failed" || cb.Attempts != 2 || cb.StatusCode != 403 {
			t.Errorf("callback %+v", cb)
		}
	}
}

func TestCallbacksSigningURLAndTokens(t *testing.T) {
	t.Parallel()
	// Behind a proxy: the Fake posts to the internal URL and signs the public one.
	rc := newReceiver(t, "per-account-token")
	rc.signURL = "https://hooks.example.com/v1/twilio/proxy/callbacks?tenant=a%20b&x=1"
	srv := newServer(t, proxytest.Config{Callbacks: proxytest.CallbackConfig{
		URL: rc.URL, SigningURL: rc.signURL, Delay: 10 * time.Millisecond,
		AuthTokens: map[string]string{acct: "per-account-token"},
	}})
	mustCreate(t, srv, kp, "signed")
	waitCallbacks(t, srv.Fake)
	for _, g := range rc.all() {
		if !g.valid {
			t.Errorf("signature over the public URL with the account's token does not verify")
		}
	}

	// An API key without a known Auth Token: no callbacks, counted.
	rc2 := newReceiver(t, secret)
	srv2 := callbackServer(t, rc2, proxytest.CallbackConfig{})
	resp, b := mustDo(t, srv2, http.MethodPost, srv2.URL+messagesPath(ks, kc, kp), apiKey, url.Values{"Body": {"key"}})
	if resp.StatusCode != 201 {
		t.Fatalf("create: %d %s", resp.StatusCode, b)
	}
	waitCallbacks(t, srv2.Fake)
	if len(rc2.all()) != 0 || srv2.Fake.CallbackStats().Skipped != 3 {
		t.Errorf("got %d callbacks, stats %+v", len(rc2.all()), srv2.Fake.CallbackStats())
	}
	// With the account's token configured, they are signed with it.
	derived := decode[resource](t, b).AccountSID
	rc2.token = "account-token"
	if err := srv2.Fake.SetCallbackConfig(proxytest.CallbackConfig{URL: rc2.URL, Delay: 10 * time.Millisecond,
		AuthTokens: map[string]string{derived: "account-token"}}); err != nil {
		t.Fatal(err)
	}
	mustDo(t, srv2, http.MethodPost, srv2.URL+messagesPath(ks, kc, kp), apiKey, url.Values{"Body": {"key"}})
	waitCallbacks(t, srv2.Fake)
	if got := rc2.all(); len(got) != 3 || !got[0].valid || got[0].form.Get("interactionAccountSid") != derived {
		t.Errorf("callbacks %+v", got)
	}
}

func TestCallbacksOffAndSetURL(t *testing.T) {
	t.Parallel()
	srv := newServer(t, proxytest.Config{Callbacks: proxytest.CallbackConfig{Delay: 10 * time.Millisecond}})
	r := mustCreate(t, srv, kp, "quiet")
	time.Sleep(50 * time.Millisecond)
	// No URL and no Advance: nothing moves, nothing is sent (the Fake's old behaviour).
	if st, _ := srv.Fake.MessageStatus(r.SID); st.Status != "queued" {
		t.Errorf("status %q without callbacks or Advance", st.Status)
	}
	if s := srv.Fake.CallbackStats(); s.Scheduled != 0 {
		t.Errorf("stats %+v", s)
	}
	// The receiver starts after the Fake.
	rc := newReceiver(t, secret)
	if err := srv.Fake.SetCallbackURL(rc.URL); err != nil {
		t.Fatal(err)
	}
	r2 := mustCreate(t, srv, kp, "loud")
	waitCallbacks(t, srv.Fake)
	if st := rc.statuses(r2.SID); len(st) != 3 {
		t.Errorf("statuses %v after SetCallbackURL", st)
	}
	if err := srv.Fake.SetCallbackURL("ftp://x"); err == nil {
		t.Error("SetCallbackURL accepted ftp")
	}
	var ce *proxytest.ConfigError
	if err := srv.Fake.SetCallbackURL("/relative"); !errors.As(err, &ce) || ce.Field != "Callbacks.URL" {
		t.Errorf("SetCallbackURL(relative) = %v", err)
	}
	// Off again: planned callbacks are skipped when due.
	if err := srv.Fake.SetCallbackConfig(proxytest.CallbackConfig{URL: rc.URL, Delay: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, srv, kp, "cut")
	before := len(rc.all())
	_ = srv.Fake.SetCallbackURL("")
	waitCallbacks(t, srv.Fake)
	if n := len(rc.all()) - before; n > 1 {
		t.Errorf("%d callbacks after the URL was cleared", n)
	}
	if srv.Fake.CallbackStats().Skipped < 2 {
		t.Errorf("stats %+v", srv.Fake.CallbackStats())
	}

	// Advance without a URL: a poller sees the status move.
	srv3 := newServer(t, proxytest.Config{Callbacks: proxytest.CallbackConfig{Advance: true, Delay: 10 * time.Millisecond}})
	r3 := mustCreate(t, srv3, kp, "polled")
	eventually(t, "the message is delivered", func() bool {
		st, _ := srv3.Fake.MessageStatus(r3.SID)
		return st.Status == "delivered"
	})
}

func TestCallbacksMaxPending(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, secret)
	srv := callbackServer(t, rc, proxytest.CallbackConfig{MaxPending: 2, Delay: time.Hour})
	mustCreate(t, srv, kp, "bounded")
	// queued and sent fit; delivered is dropped. queued is then sent at once.
	eventually(t, "the first callback is delivered", func() bool { return srv.Fake.CallbackStats().Delivered == 1 })
	s := srv.Fake.CallbackStats()
	if s.Scheduled != 3 || s.Dropped != 1 || s.Pending != 1 || len(rc.all()) != 1 {
		t.Errorf("stats %+v", s)
	}
	if cbs := srv.Fake.Callbacks(); len(cbs) != 3 || cbs[2].State != "dropped" || cbs[1].State != "pending" {
		t.Errorf("callbacks %+v", cbs)
	}
}

func TestCallbackConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg   proxytest.CallbackConfig
		field string
	}{
		{proxytest.CallbackConfig{URL: "localhost:8080/cb"}, "Callbacks.URL"},
		{proxytest.CallbackConfig{URL: "http://u:p@h/cb"}, "Callbacks.URL"},
		{proxytest.CallbackConfig{SigningURL: "x"}, "Callbacks.SigningURL"},
		{proxytest.CallbackConfig{Undelivered: 1.5}, "Callbacks.Undelivered"},
		{proxytest.CallbackConfig{Undelivered: 0.6, Failed: 0.6}, "Callbacks.Undelivered"},
		{proxytest.CallbackConfig{Duplicates: -0.1}, "Callbacks.Duplicates"},
		{proxytest.CallbackConfig{OutOfOrder: 2}, "Callbacks.OutOfOrder"},
		{proxytest.CallbackConfig{ErrorCodes: []int{0}}, "Callbacks.ErrorCodes"},
		{proxytest.CallbackConfig{Delay: -1}, "Callbacks.Delay"},
		{proxytest.CallbackConfig{AuthTokens: map[string]string{"SK00112233445566778899aabbccddeeff": "x"}}, "Callbacks.AuthTokens"},
		{proxytest.CallbackConfig{AuthTokens: map[string]string{acct: ""}}, "Callbacks.AuthTokens"},
		{proxytest.CallbackConfig{Workers: -1}, "Callbacks.Workers"},
	} {
		err := proxytest.Config{Callbacks: tc.cfg}.Validate()
		var ce *proxytest.ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("%+v: err = %v, want field %s", tc.cfg, err, tc.field)
		}
		if err != nil && strings.Contains(err.Error(), "u:p") {
			t.Errorf("error quotes the URL: %v", err)
		}
	}
}

func TestMessagingRoute(t *testing.T) {
	t.Parallel()
	srv := newServer(t, proxytest.Config{Credentials: map[string]string{acct: secret, acct2: secret}})
	r := mustCreate(t, srv, kp, "hello")
	u := srv.URL + "/2010-04-01/Accounts/" + acct + "/Messages/" + r.OutboundResourceSID + ".json"
	if r.OutboundResourceURL != u {
		t.Errorf("outbound_resource_url %q, want %q", r.OutboundResourceURL, u)
	}
	resp, b := mustDo(t, srv, http.MethodGet, u, acct, nil)
	raw := decode[map[string]any](t, b)
	if resp.StatusCode != 200 || raw["status"] != "queued" || raw["error_code"] != nil || raw["body"] != "hello" ||
		raw["account_sid"] != acct || raw["date_sent"] != nil || raw["uri"] != strings.TrimPrefix(u, srv.URL) {
		t.Errorf("message %d %s", resp.StatusCode, b)
	}
	// Another account's credentials, a path naming another account, an unknown message, no
	// credentials, a wrong method.
	resp, b = mustDo(t, srv, http.MethodGet, u, acct2, nil)
	wantError(t, resp, b, 404, 20404)
	resp, b = mustDo(t, srv, http.MethodGet, strings.Replace(u, acct, acct2, 1), acct2, nil)
	wantError(t, resp, b, 404, 20404)
	resp, b = mustDo(t, srv, http.MethodGet, strings.Replace(u, r.OutboundResourceSID[2:], strings.Repeat("0", 32), 1), acct, nil)
	wantError(t, resp, b, 404, 20404)
	resp, b = mustDo(t, srv, http.MethodGet, u, "", nil)
	wantError(t, resp, b, 401, 20003)
	resp, b = mustDo(t, srv, http.MethodPost, u, acct, url.Values{"Body": {"x"}})
	wantError(t, resp, b, 405, 20004)
	resp, b = mustDo(t, srv, http.MethodGet, strings.TrimSuffix(u, ".json"), acct, nil)
	wantError(t, resp, b, 404, 20404)

	// Scripted failures of the fetch, in order, then normal answers again.
	if err := srv.Fake.FailMessageFetches(http.StatusTooManyRequests, 1); err != nil {
		t.Fatal(err)
	}
	if err := srv.Fake.FailMessageFetches(http.StatusBadGateway, 1); err != nil {
		t.Fatal(err)
	}
	if err := srv.Fake.FailMessageFetches(http.StatusTeapot, 1); err == nil {
		t.Error("FailMessageFetches accepted 418")
	}
	before := srv.Fake.CallbackStats().MessageFetches
	resp, b = mustDo(t, srv, http.MethodGet, u, acct, nil)
	wantError(t, resp, b, 429, 20429)
	if resp.Header.Get("Retry-After") != "1" {
		t.Errorf("429 without Retry-After")
	}
	resp, b = mustDo(t, srv, http.MethodGet, u, acct, nil)
	if resp.StatusCode != 502 || !strings.Contains(string(b), "<html>") {
		t.Errorf("want a gateway's 502 page, got %d %s", resp.StatusCode, b)
	}
	resp, _ = mustDo(t, srv, http.MethodGet, u, acct, nil)
	if resp.StatusCode != 200 {
		t.Errorf("after the scripted failures: %d", resp.StatusCode)
	}
	if s := srv.Fake.CallbackStats(); s.MessageFetches-before != 3 || s.MessageFetchFaults != 2 {
		t.Errorf("stats %+v", s)
	}
}

// TestCallbacksCloseStops is not parallel: it checks that no callback goroutine outlives Close.
func TestCallbacksCloseStops(t *testing.T) {
	rc := newReceiver(t, secret)
	rc.hold = make(chan struct{}) // the receiver never answers: POSTs hang until canceled
	defer close(rc.hold)
	srv := proxytest.NewServer(proxytest.Config{Callbacks: proxytest.CallbackConfig{URL: rc.URL, Delay: 100 * time.Millisecond, Timeout: time.Minute}})
	for i := 0; i < 3; i++ {
		mustCreate(t, srv, kp, "hang "+itoa(i))
	}
	eventually(t, "POSTs are in progress", func() bool { return len(rc.all()) >= 3 })
	start := time.Now()
	srv.Close()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %s with POSTs hanging", d)
	}
	s := srv.Fake.CallbackStats()
	if s.Pending != 0 || s.Canceled == 0 {
		t.Errorf("after Close: stats %+v", s)
	}
	// A POST written just before Close may still reach the handler; then nothing more, though
	// "sent" and "delivered" were due 100 and 200 ms after the creates.
	time.Sleep(50 * time.Millisecond)
	n := len(rc.all())
	time.Sleep(300 * time.Millisecond)
	if len(rc.all()) != n {
		t.Errorf("callbacks sent after Close")
	}
	buf := make([]byte, 1<<20)
	if stacks := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stacks, "proxytest.(*callbacks)") {
		t.Errorf("callback goroutines still running after Close:\n%s", stacks)
	}
}

func TestCallbacksReset(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, secret)
	srv := callbackServer(t, rc, proxytest.CallbackConfig{Delay: time.Hour})
	r := mustCreate(t, srv, kp, "reset")
	srv.Fake.Reset()
	if _, ok := srv.Fake.MessageStatus(r.SID); ok {
		t.Error("message survived Reset")
	}
	if s := srv.Fake.CallbackStats(); s.Pending != 0 || s.Scheduled != 0 || len(srv.Fake.Callbacks()) != 0 {
		t.Errorf("after Reset: %+v", s)
	}
	waitCallbacks(t, srv.Fake)
}
