package sandbox

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/proxyq/proxyq/conversations/convtest"
)

// ConversationsPrefix is where the sandbox serves the fake Conversations API (convtest), beside
// the Proxy fake: PROXYQ_CONVERSATIONS_BASE_URL is the sandbox's root URL + this prefix.
const ConversationsPrefix = "/conversations"

// NewConversationsFake builds the Conversations fake from the same settings as the Proxy one:
// the fault rates (--rate-*, --fault-rate), --seed, --max-concurrent, the --account
// credentials, and, with ReceiptsURL, signed onDeliveryUpdated receipts POSTed there (keyed with
// the one --callback-auth-token given as TOKEN, else the secret the worker authenticates with).
// Call it after NewFake, which reports the settings' errors.
func (f Settings) NewConversationsFake() (*convtest.Fake, error) {
	cfg := convtest.Config{Seed: uint64(f.Seed), MaxConcurrentPerAccount: f.MaxConcurrent}
	for _, kv := range f.Limits.Accounts {
		if user, secret, ok := strings.Cut(kv, "="); ok {
			if cfg.Credentials == nil {
				cfg.Credentials = map[string]string{}
			}
			cfg.Credentials[user] = secret
		}
	}
	if f.ReceiptsURL != "" {
		cfg.Delivery = convtest.DeliveryConfig{URL: f.ReceiptsURL, Delay: f.CallbackDelay}
		for _, tok := range f.CallbackAuthTokens {
			if !strings.Contains(tok, "=") {
				cfg.Delivery.AuthToken = tok
			}
		}
	} else if f.AdvanceStatus {
		cfg.Delivery = convtest.DeliveryConfig{Advance: true, Delay: f.CallbackDelay}
	}
	fake, err := convtest.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("--receipts-url: %v", err)
	}
	rates, err := f.faultRates()
	if err != nil {
		return nil, err
	}
	if err := fake.SetFaultRates(rates); err != nil {
		return nil, fmt.Errorf("fault rates: %v (the rates of all fault flags together must be at most 1)", err)
	}
	return fake, nil
}

// WithConversations serves conv under ConversationsPrefix and everything else with h.
func WithConversations(h http.Handler, conv *convtest.Fake) http.Handler {
	api := conv.Mount(ConversationsPrefix)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, ConversationsPrefix+"/") {
			api.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// WriteConversationsBanner prints the Conversations fake's base URL (root is the sandbox's
// http://host:port) and where its receipts go.
func (f Settings) WriteConversationsBanner(w io.Writer, root string) {
	fmt.Fprintf(w, "  PROXYQ_CONVERSATIONS_BASE_URL=%s%s   (the fake Conversations API)\n", root, ConversationsPrefix)
	if f.ReceiptsURL != "" {
		fmt.Fprintf(w, "  receipts:    onDeliveryUpdated POSTed to %s\n", RedactQuery(f.ReceiptsURL))
	} else {
		fmt.Fprintf(w, "  receipts:    none (--receipts-url)\n")
	}
	fmt.Fprintln(w)
}
