package devmode

import (
	"crypto/rand"
	"net/http"
	"time"

	"github.com/proxyq/proxyq/conversations/convtest"
	"github.com/proxyq/proxyq/dashboard"
	"github.com/proxyq/proxyq/delivery"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
)

// DefaultDashboardUser is the user of the login dev generates when none is set.
const DefaultDashboardUser = "admin"

// DashboardLogin gives cfg a generated login, user DefaultDashboardUser and a random
// 16-character password (the banner prints it), when the user set no PROXYQ_DASHBOARD_*
// credentials. It reports whether it did.
func DashboardLogin(cfg *dashboard.Config) (generated bool) {
	if cfg.User != "" || cfg.Password != "" || cfg.Token != "" {
		return false
	}
	cfg.User, cfg.Password = DefaultDashboardUser, rand.Text()[:16]
	return true
}

// MountFake serves the fake Twilio API on mux under FakePrefix, its read-only endpoints at
// /_proxytest/, and serve's status callback route (delivery.CallbackPath) of svc, to which the
// fake's Service posts its callbacks signed with FakeAuthToken. base is the dev server's URL.
func MountFake(mux *http.ServeMux, fake *proxytest.Fake, svc *delivery.Service, base string) error {
	callbacks, err := svc.CallbackHandler(delivery.CallbackConfig{PublicURL: base,
		Tokens: delivery.StaticToken{AccountSID: FakeAccountSID, Token: FakeAuthToken}})
	if err != nil {
		return err
	}
	mux.Handle(FakePrefix+"/", fake.Mount(FakePrefix))
	mux.Handle("/_proxytest/", fake) // also at the root
	mux.Handle("POST "+delivery.CallbackPath, callbacks)
	return fake.SetCallbackConfig(proxytest.CallbackConfig{URL: base + delivery.CallbackPath, AuthToken: FakeAuthToken})
}

// NewConversationsFake is dev mode's Conversations fake: its onDeliveryUpdated receipts go to
// the receipts route (delivery.ReceiptsPath) of the dev server at base, signed with
// FakeAuthToken, and advance to a final status (delivered, some undelivered) as Twilio's do.
func NewConversationsFake(base string, seed uint64) (*convtest.Fake, error) {
	return convtest.New(convtest.Config{Seed: seed, Delivery: convtest.DeliveryConfig{
		URL: base + delivery.ReceiptsPath, AuthToken: FakeAuthToken, Delay: 150 * time.Millisecond}})
}

// MountConversationsFake serves the Conversations fake on mux under ConversationsPrefix and
// serve's receipts route of svc, which checks the fake's signatures with FakeAuthToken.
func MountConversationsFake(mux *http.ServeMux, fake *convtest.Fake, svc *delivery.Service, base string) error {
	receipts, err := svc.ReceiptsHandler(delivery.CallbackConfig{PublicURL: base,
		Tokens: delivery.StaticToken{AccountSID: FakeAccountSID, Token: FakeAuthToken}})
	if err != nil {
		return err
	}
	mux.Handle(ConversationsPrefix+"/", fake.Mount(ConversationsPrefix))
	mux.Handle("POST "+delivery.ReceiptsPath, receipts)
	return nil
}
