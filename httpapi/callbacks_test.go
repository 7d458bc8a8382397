package httpapi

import (
	"net"
	"net/http"
	"net/url"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/delivery"
	"github.com/proxyq/proxyq/internal/redistest"
)

const (
	testCallbackToken   = "callback-auth-token"
	testCallbackAccount = "AC0123456789abcdef0123456789abcdef"
	testPublicURL       = "https://proxyq.example.com"
)

// deliveryCallbacks is the delivery package's callback handler on a Redis of its own.
func deliveryCallbacks(t *testing.T) http.Handler {
	t.Helper()
	svc, err := delivery.New(delivery.Config{}, redistest.NewDB(t).Client(t), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := svc.CallbackHandler(delivery.CallbackConfig{PublicURL: testPublicURL,
		Tokens: delivery.StaticToken{AccountSID: testCallbackAccount, Token: testCallbackToken}})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// signedCallback is a callback as Twilio sends it, signed with token ("" = unsigned), without
// a bearer token.
func signedCallback(t *testing.T, status, token string) req {
	t.Helper()
	p := url.Values{"interactionSid": {"KI0123456789abcdef0123456789abcdef"}, "interactionAccountSid": {testCallbackAccount},
		"outboundResourceStatus": {status}, "interactionType": {"message"}}
	r := req{method: http.MethodPost, path: delivery.CallbackPath, body: p.Encode(), token: "-",
		header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}
	if token != "" {
		r.header["X-Twilio-Signature"] = delivery.Signature(token, testPublicURL+delivery.CallbackPath, p)
	}
	return r
}

// The callback route is public (Twilio sends no bearer token) but not open: the signature
// check stands in for the token, and a bearer token does not replace it.
func TestCallbackRouteIsPublicButSigned(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.Callbacks = deliveryCallbacks(t) }))
	if w := e.do(signedCallback(t, "sent", testCallbackToken)); w.Code != http.StatusOK {
		t.Fatalf("signed, no bearer: %d %s", w.Code, w.Body.String())
	}
	r := signedCallback(t, "sent", "")
	r.token = ""
	if w := e.do(r); w.Code != http.StatusForbidden {
		t.Fatalf("bearer token but no signature: %d", w.Code)
	}
	off := newEnv(t)
	if w := off.do(signedCallback(t, "sent", testCallbackToken)); w.Code != http.StatusNotFound {
		t.Fatalf("not enabled: %d", w.Code)
	}
}

// deadCallbacksEnv is a server whose callback handler's Redis refuses connections.
func deadCallbacksEnv(t *testing.T) *env {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: deadAddr(t), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	svc, err := delivery.New(delivery.Config{}, rdb, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := svc.CallbackHandler(delivery.CallbackConfig{PublicURL: testPublicURL,
		Tokens: delivery.StaticToken{AccountSID: testCallbackAccount, Token: testCallbackToken}})
	if err != nil {
		t.Fatal(err)
	}
	return newEnv(t, withConfig(func(c *Config) { c.Callbacks = h }))
}

func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func deliveryReceipts(t *testing.T) http.Handler {
	t.Helper()
	svc, err := delivery.New(delivery.Config{}, redistest.NewDB(t).Client(t), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := svc.ReceiptsHandler(delivery.CallbackConfig{PublicURL: testPublicURL,
		Tokens: delivery.StaticToken{AccountSID: testCallbackAccount, Token: testCallbackToken}})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// signedReceipt is a Conversations onDeliveryUpdated webhook signed with token, without a
// bearer token.
func signedReceipt(t *testing.T, status, token string) req {
	t.Helper()
	p := url.Values{"EventType": {"onDeliveryUpdated"}, "AccountSid": {testCallbackAccount},
		"ConversationSid": {"CH0123456789abcdef0123456789abcdef"}, "MessageSid": {"IM0123456789abcdef0123456789abcdef"}, "Status": {status}}
	return req{method: http.MethodPost, path: delivery.ReceiptsPath, body: p.Encode(), token: "-",
		header: map[string]string{"Content-Type": "application/x-www-form-urlencoded",
			"X-Twilio-Signature": delivery.Signature(token, testPublicURL+delivery.ReceiptsPath, p)}}
}
