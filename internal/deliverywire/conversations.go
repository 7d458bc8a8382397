package deliverywire

import (
	"context"

	"github.com/proxyq/proxyq/accounts"
	"github.com/proxyq/proxyq/conversations"
	"github.com/proxyq/proxyq/worker"
)

// ConversationsAccounts adapts the accounts registry to worker.ConversationsAccounts: the
// Conversations client of a message's account (built with that account's credentials from the
// accounts file; see envconfig.WorkerAccounts).
type ConversationsAccounts struct{ Accounts *accounts.Registry }

// ConversationsClient implements worker.ConversationsAccounts.
func (a ConversationsAccounts) ConversationsClient(accountSID string) (worker.ConversationsAPI, bool) {
	if a.Accounts == nil {
		return nil, false
	}
	c, ok := a.Accounts.ConversationsClient(accountSID)
	if !ok {
		return nil, false
	}
	return c, true
}

// ReceiptsLister is the part of the Conversations client the receipts poll uses.
type ReceiptsLister interface {
	ListReceipts(ctx context.Context, conv conversations.Conversation, messageSID string, opt conversations.ListOptions) (*conversations.ReceiptPage, error)
}

// Receipts implements delivery.ReceiptLister (the poll fallback of Conversations messages):
// it lists a message's receipts with the Conversations client of the message's account in the
// accounts file, else with Default (the TWILIO_* account's), as Messages does for Proxy.
type Receipts struct {
	Default  ReceiptsLister
	Accounts *accounts.Registry // nil: one account
}

// ListReceipts implements delivery.ReceiptLister.
func (r Receipts) ListReceipts(ctx context.Context, accountSID string, conv conversations.Conversation, messageSID string) ([]conversations.Receipt, error) {
	var c ReceiptsLister = r.Default
	if r.Accounts != nil {
		if ac, ok := r.Accounts.ConversationsClient(accountSID); ok {
			c = ac
		}
	}
	page, err := c.ListReceipts(ctx, conv, messageSID, conversations.ListOptions{})
	if err != nil {
		return nil, err
	}
	return page.Receipts, nil
}
