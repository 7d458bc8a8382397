package deliverywire_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/proxyq/proxyq/accounts"
	"github.com/proxyq/proxyq/conversations"
	"github.com/proxyq/proxyq/conversations/convtest"
	"github.com/proxyq/proxyq/internal/deliverywire"
)

type failingLister struct{}

func (failingLister) ListReceipts(context.Context, conversations.Conversation, string, conversations.ListOptions) (*conversations.ReceiptPage, error) {
	return nil, errors.New("the default account's client was used")
}

// A Conversations message of an account in the accounts file is sent, and its receipts
// listed, with that account's credentials; other accounts fall back to the default client.
func TestConversationsClientsPerAccount(t *testing.T) {
	t.Parallel()
	const sub = "AC00000000000000000000000000000062"
	srv, err := convtest.NewServer(convtest.Config{Delivery: convtest.DeliveryConfig{Advance: true, Delay: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	path := filepath.Join(t.TempDir(), "accounts.yaml")
	if err := os.WriteFile(path, []byte("accounts:\n  - account_sid: "+sub+"\n    auth_token: sub-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reg, err := accounts.New(accounts.Options{Path: path, Conversations: &conversations.Config{BaseURL: srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	clients := deliverywire.ConversationsAccounts{Accounts: reg}
	if _, ok := clients.ConversationsClient("AC00000000000000000000000000000063"); ok {
		t.Error("a client for an account not in the file")
	}
	c, ok := clients.ConversationsClient(sub)
	if !ok || c.AccountKey() != sub {
		t.Fatalf("client of %s: %v %v", sub, c, ok)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conv := conversations.Conversation{ConversationSID: "CH00000000000000000000000000000062"}
	m, err := c.CreateMessage(ctx, conversations.CreateParams{Conversation: conv, Body: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := srv.Fake.Message(m.SID); got.AccountSID != sub {
		t.Errorf("message created under %q, want %s", got.AccountSID, sub)
	}
	_ = srv.Fake.WaitDelivery(ctx)

	receipts := deliverywire.Receipts{Default: failingLister{}, Accounts: reg}
	got, err := receipts.ListReceipts(ctx, sub, conv, m.SID)
	if err != nil || len(got) == 0 {
		t.Fatalf("receipts of %s's message: %+v, %v", sub, got, err)
	}
	if _, err := receipts.ListReceipts(ctx, "AC00000000000000000000000000000063", conv, m.SID); err == nil {
		t.Error("an account not in the file did not use the default client")
	}
}
