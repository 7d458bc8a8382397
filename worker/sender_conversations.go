package worker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/conversations"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/tasks"
)

// Conversations messages (conversations:send_message): the send policy's operations on Twilio
// Conversations (see sender.go).
//
// The stamp. Every create carries proxyq's stamp, {"proxyq":{"id":"<task id>"}}, merged into
// the producer's Attributes (conversations.StampAttributes: the stamp always wins). After an
// answer we never saw, reconciliation lists the conversation's messages newest first
// (conversations.FindStamped) and looks for the stamp alone, never the body: two messages with
// identical bodies to one conversation are never confused, and no claims are needed (the
// ledger records the send without the claims hash). The search stops at the first message
// created before the message's first run minus ReconcileSkew; "not found" counts only when
// the search was complete (it reached that point or the conversation's start) and the settle
// window has passed — then the request created nothing and the message is sent. A search cut
// short by ReconcileMaxPages pages of newer messages proves nothing: the message is archived
// as unknown, never resent blindly. Caveat (conversations package doc): a message imported
// with a back-dated date_created after ours could end the search early.
//
// Limits. A create takes the account's permit (in-flight cap and rate, as for Proxy) and a
// place in its conversation's window (ServiceLimits.ConversationRate, Twilio's 30 actions per
// second per conversation), keyed by the CH… SID on the per-scope limiter. A 429 with
// Twilio's account code 20429 slows the account; any other 429 (Twilio documents no
// conversation-level code) slows both the conversation and the account.

// ConversationsAPI is the part of the Conversations client the worker uses;
// *conversations.Client implements it.
type ConversationsAPI interface {
	AccountKey() string
	CreateMessage(ctx context.Context, p conversations.CreateParams) (*conversations.Message, error)
	FindStamped(ctx context.Context, conv conversations.Conversation, id string, opt conversations.FindOptions) (conversations.FindResult, error)
}

// ConversationsAccounts gives the Conversations client of an account named by a message
// (payload account_sid), as Accounts does for Proxy.
type ConversationsAccounts interface {
	ConversationsClient(accountSID string) (ConversationsAPI, bool)
}

// conversationsClients are the handler's Conversations clients: the default account's and,
// optionally, the accounts file's.
type conversationsClients struct {
	api      ConversationsAPI
	accounts ConversationsAccounts
}

// SetConversations makes the handler send conversations:send_message tasks with api (the
// default account's client) and, for messages naming another account, accounts (may be nil).
func (h *Handler) SetConversations(api ConversationsAPI, accounts ConversationsAccounts) {
	h.conv = conversationsClients{api: api, accounts: accounts}
}

// AttrConversationSID and AttrMessageSID are the span attributes of a Conversations message.
const (
	AttrConversationSID = attribute.Key("proxyq.conversation_sid")
	AttrMessageSID      = attribute.Key("proxyq.message_sid")
	AttrAPI             = attribute.Key("proxyq.api") // proxy or conversations
)

type conversationMessage struct {
	p      tasks.ConversationPayload
	client ConversationsAPI // bound by bind
	cfg    Config
}

func (h *Handler) decodeConversation(data []byte) (message, error) {
	p, err := tasks.DecodeConversation(data)
	if err != nil {
		return nil, err
	}
	return &conversationMessage{p: p, cfg: h.cfg}, nil
}

func (m *conversationMessage) api() string { return apiConversations }

func (m *conversationMessage) shared() tasks.Payload {
	return tasks.Payload{SendBefore: m.p.SendBefore, OrderingKey: m.p.OrderingKey, AccountSID: m.p.AccountSID}
}

func (m *conversationMessage) conv() conversations.Conversation {
	return conversations.Conversation{ServiceSID: m.p.ServiceSID, ConversationSID: m.p.ConversationSID}
}

// bind resolves the client as clientFor does for Proxy: the default client when the message
// names no account (or the default one), else the accounts' own.
func (m *conversationMessage) bind(h *Handler) (accountClient, error) {
	c := h.conv
	if c.api == nil {
		return nil, fmt.Errorf("%w: this worker has no Conversations client (the message was not sent)", ErrUnknownAccount)
	}
	if m.p.AccountSID == "" || m.p.AccountSID == c.api.AccountKey() {
		m.client = c.api
		return c.api, nil
	}
	if c.accounts != nil {
		if api, ok := c.accounts.ConversationsClient(m.p.AccountSID); ok {
			m.client = api
			return api, nil
		}
	}
	return nil, fmt.Errorf("account %s: %w (add it to PROXYQ_ACCOUNTS_FILE; the message was not sent)", m.p.AccountSID, ErrUnknownAccount)
}

func (m *conversationMessage) create(ctx context.Context, stampID string) (created, error) {
	attrs, err := conversations.StampAttributes(string(m.p.Attributes), stampID)
	if err != nil {
		// Validated at decode: this is a bug, and nothing was sent.
		return created{}, &proxyclient.ValidationError{Field: "Attributes", Rule: err.Error()}
	}
	msg, err := m.client.CreateMessage(ctx, conversations.CreateParams{
		Conversation: m.conv(), Author: m.p.Author, Body: m.p.Body, MediaSID: m.p.MediaSID,
		ContentSID: m.p.ContentSID, ContentVariables: string(m.p.ContentVariables),
		Attributes: attrs, WebhookEnabled: m.p.WebhookEnabled,
	})
	if err != nil {
		return created{}, err
	}
	return messageCreated(msg), nil
}

func messageCreated(msg *conversations.Message) created {
	return created{SID: msg.SID, AccountSID: msg.AccountSID, Status: deliveryStatus(msg.Delivery), DateCreated: msg.DateCreated}
}

// deliveryStatus reads a message's aggregate delivery summary as an outbound status: the
// furthest every recipient has reached ("all"), else "" (not known yet).
func deliveryStatus(d *conversations.Delivery) string {
	if d == nil || d.Total == 0 {
		return ""
	}
	for _, s := range []struct{ name, v string }{{"failed", d.Failed}, {"undelivered", d.Undelivered}, {"delivered", d.Delivered}, {"sent", d.Sent}} {
		if s.v == "all" {
			return s.name
		}
	}
	return ""
}

func (m *conversationMessage) find(ctx context.Context, r *run) (found, error) {
	opt := conversations.FindOptions{
		PageSize:  min(r.cfg.ReconcilePageSize, conversations.MaxMessagePageSize),
		MaxPages:  r.cfg.ReconcileMaxPages,
		NotBefore: r.own.FirstSeen.Add(-r.cfg.ReconcileSkew),
	}
	if r.services != nil {
		opt.BeforePage = r.beforeListPage // each page is one request on the conversation's list budget
	}
	res, err := m.client.FindStamped(ctx, m.conv(), r.id, opt)
	if err != nil {
		return found{}, err
	}
	if res.Message != nil {
		return found{Candidates: []created{messageCreated(res.Message)}}, nil
	}
	if !res.Complete {
		return found{Inconclusive: fmt.Sprintf("the conversation has more than %d pages of messages newer than this message's first run and none carried its stamp", r.cfg.ReconcileMaxPages)}, nil
	}
	return found{}, nil
}

func (m *conversationMessage) classify(err error) proxyclient.Class {
	return conversations.Classify(err)
}

func (m *conversationMessage) retryAfter(err error) (time.Duration, bool) {
	return conversations.RetryAfter(err)
}

func (m *conversationMessage) handling(err error) (failure, mayBeInProgress bool) {
	info, ok := conversations.Explain(err)
	if !ok {
		return true, false
	}
	return info.Handling != proxyclient.HandlingRetryLater, false
}

// scopeThrottled: 20429 is the account's concurrency cap; any other 429 may be the
// conversation's 30 actions per second (Twilio documents no code for it), so it slows both.
func (m *conversationMessage) scopeThrottled(err error) (scope, slowAccount bool) {
	var he *proxyclient.Error
	if errors.As(err, &he) && he.StatusCode == http.StatusTooManyRequests && he.Code != 20429 {
		return true, true
	}
	return false, true
}

func (m *conversationMessage) limitScope() string      { return m.p.ConversationSID }
func (m *conversationMessage) claimsInteraction() bool { return false }

func (m *conversationMessage) record(c created, o *tasks.Outcome) {
	o.API, o.MessageSID, o.OutboundStatus = apiConversations, c.SID, c.Status
	o.ConversationSID, o.ChatServiceSID = m.p.ConversationSID, m.p.ServiceSID
}

func (m *conversationMessage) logFields() []zap.Field {
	f := []zap.Field{zap.String("api", apiConversations), zap.String("conversation_sid", m.p.ConversationSID)}
	if m.p.ServiceSID != "" {
		f = append(f, zap.String("conversation_service_sid", m.p.ServiceSID))
	}
	return f
}

func (m *conversationMessage) trace(span trace.Span) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(AttrAPI.String(apiConversations), AttrConversationSID.String(m.p.ConversationSID))
}
