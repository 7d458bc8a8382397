package delivery

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/proxyq/proxyq/conversations"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/tasks"
)

// Conversations delivery receipts: the second trip of a Conversations message.
//
//	Twilio ──signed POST onDeliveryUpdated to the Conversation Service's post-event webhook──▶
//	ReceiptsHandler (X-Twilio-Signature, keyed with the token of the AccountSid it names)
//	       ▼
//	MessageSid (IM…) → message index ─▶ the same outcome record and timeline as Proxy's
//	       ▼
//	the same status webhooks to the application (data.api "conversations", data.message_sid IM…)
//
// Set the Conversation Service's post-event webhook URL to PROXYQ_PUBLIC_URL + ReceiptsPath
// with the onDeliveryUpdated event (Twilio's parameters: AccountSid, ConversationSid,
// ChatServiceSid, MessageSid, DeliveryReceiptSid, ChannelMessageSid, ParticipantSid, Status,
// ErrorCode, DateCreated, DateUpdated).
//
// It reuses the Proxy machinery with the IM… SID where Proxy has the KI…: the index, the early
// list, the poll schedule and the sweeper are keyed by the SID, whose prefix tells the API
// (keys proxyq:{ki:IM…}:msg and :early; the hash tag's "ki" is historical). What differs:
//
//   - The account rule: a receipt applies only to a message recorded under the account whose
//     token signed it (AccountSid); one signed by another account changes nothing. An early
//     receipt keeps its signing account and is checked when the send is recorded.
//   - Statuses: sent < delivered|undelivered|failed, as Proxy's; "read" implies delivered (a
//     read receipt that comes alone also records delivered) and is kept in status_history
//     (a final status never moves). ErrorCode comes with the receipt, with its meaning.
//   - One timeline per message: for a conversation with one SMS participant (the Proxy shape)
//     it is that recipient's; with several, the first final receipt ends it.
//   - The poll fallback lists the message's Receipts (ReceiptLister) under the account's
//     limits instead of fetching an SMS.

// ReceiptsPath is the route of Conversations' onDeliveryUpdated webhooks.
const ReceiptsPath = "/v1/twilio/conversations/receipts"

// StatusRead is the receipt status of a message the recipient read (WhatsApp, chat).
const StatusRead = "read"

// deliveryErrors are the meanings of the delivery error codes receipts carry most, from
// Twilio's error dictionary (www.twilio.com/docs/api/errors/<code>); others are recorded
// without a meaning.
var deliveryErrors = map[int]string{
	30003: "Unreachable destination handset",
	30004: "Message blocked",
	30005: "Unknown destination handset",
	30006: "Landline or unreachable carrier",
	30007: "Message filtered (carrier)",
	30008: "Unknown error",
}

// DeliveryErrorMeaning returns the meaning of a delivery error code, "" when unknown.
func DeliveryErrorMeaning(code int) string { return deliveryErrors[code] }

// isConversationMessage reports whether an indexed SID is a Conversations message (IM…).
func isConversationMessage(sid string) bool {
	return strings.HasPrefix(sid, conversations.PrefixMessage)
}

// recordedConversation indexes a recorded Conversations message by its IM… SID, applies the
// receipts that came early (those signed by its account), and schedules the poll fallback.
// The worker's hook (Recorded) calls it for an outcome with a MessageSID; it is Recorded's
// track with receipts' meaning of a status. Where its receipts are listed (conversation,
// Conversation Service) the poll reads from the record.
func (s *Service) recordedConversation(ctx context.Context, queue, taskID, accountSID string, o *tasks.Outcome) error {
	return s.track(ctx, s.newRef(queue, taskID, accountSID, o.MessageSID), o, receiptUpdates, false)
}

// receiptUpdates is what one receipt status means for the timeline: "read" also records
// delivered (a message read was delivered), at the same time.
func receiptUpdates(u Update) []Update {
	if u.ErrorCode != 0 && u.ErrorMessage == "" {
		u.ErrorMessage = DeliveryErrorMeaning(u.ErrorCode)
	}
	if strings.EqualFold(u.Status, StatusRead) {
		return []Update{{Status: StatusDelivered, At: u.At}, u}
	}
	return []Update{u}
}

// ReceiptsHandler returns the http.Handler of POST ReceiptsPath: Conversations'
// onDeliveryUpdated webhook. Like CallbackHandler it is public and every request must carry a
// valid X-Twilio-Signature keyed with the Auth Token of the AccountSid it names, else 403 and
// nothing changes. A signed receipt gets 200 whether or not its message is recorded yet
// (early ones are kept for PendingTTL); only a Redis failure answers 503.
func (s *Service) ReceiptsHandler(cfg CallbackConfig) (http.Handler, error) {
	return s.signedHandler(cfg, signedForm{kind: "receipt", accountParam: "AccountSid",
		sidParam: "MessageSid", sidField: "message_sid", handle: s.HandleReceipt})
}

// HandleReceipt records an onDeliveryUpdated webhook whose signature was checked (by the
// token of params' AccountSid), and returns its result (one of the Result* constants). The
// error is non-nil only when Redis failed.
func (s *Service) HandleReceipt(ctx context.Context, params url.Values) (string, error) {
	im := params.Get("MessageSid")
	account := params.Get("AccountSid")
	status := strings.ToLower(strings.TrimSpace(params.Get("Status")))
	if !conversations.ValidSID(conversations.PrefixMessage, im) || status == "" {
		return ResultIgnored, nil
	}
	u := Update{Status: status, At: s.now().UTC()}
	if t, err := time.Parse(time.RFC3339, params.Get("DateUpdated")); err == nil {
		u.At = t.UTC()
	}
	if c := params.Get("ErrorCode"); c != "" && c != "0" {
		if n, err := strconv.Atoi(c); err == nil && n > 0 {
			u.ErrorCode = n
		}
	}
	ref, res, err := s.keepUnlessIndexed(ctx, im, account, u)
	if ref == nil {
		return res, err
	}
	return s.applyUpdates(ctx, *ref, account, receiptUpdates(u), "receipt")
}

// ReceiptLister lists a Conversations message's delivery receipts with the client of
// accountSID (the poll fallback). cmd adapts the per-account conversations clients to it.
type ReceiptLister interface {
	ListReceipts(ctx context.Context, accountSID string, conv conversations.Conversation, messageSID string) ([]conversations.Receipt, error)
}

// SetReceiptLister gives the worker side the poll fallback of Conversations messages; without
// one they end at their last receipt (or delivery-unknown after MaxAge).
func (w *Worker) SetReceiptLister(l ReceiptLister) { w.receipts = l }

// pollConversation is pollOne's fetch for a Conversations message (ref, whose record is o):
// its receipts, under the account's limits. stop is true when the account has no room.
func (w *Worker) pollConversation(ctx context.Context, ref msgRef, o *tasks.Outcome) (stop bool, err error) {
	s := w.s
	ki := ref.KI
	if w.receipts == nil || w.limit == nil {
		s.metrics.Polls.WithLabelValues("no_fetcher").Inc()
		return false, nil
	}
	release, err := w.limit.Acquire(ctx, ref.AccountSID, 0)
	if err != nil {
		s.metrics.Polls.WithLabelValues("limited").Inc()
		return true, nil
	}
	fctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	receipts, err := w.receipts.ListReceipts(fctx, ref.AccountSID,
		conversations.Conversation{ServiceSID: o.ChatServiceSID, ConversationSID: o.ConversationSID}, ki)
	cancel()
	var apiErr *proxyclient.Error
	is429 := errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusTooManyRequests
	release(is429)
	switch {
	case is429:
		s.metrics.Polls.WithLabelValues("limited").Inc()
		return true, nil
	case apiErr != nil && apiErr.StatusCode == http.StatusNotFound:
		s.metrics.Polls.WithLabelValues("unscheduled").Inc()
		return false, s.rdb.ZRem(ctx, pollKey, ki).Err()
	case err != nil:
		return false, err
	}
	var ups []Update
	for _, rc := range receipts {
		at := rc.DateUpdated
		if at.IsZero() {
			at = s.now().UTC()
		}
		ups = append(ups, receiptUpdates(Update{Status: strings.ToLower(rc.Status), At: at, ErrorCode: rc.ErrorCode})...)
	}
	if len(ups) == 0 {
		s.metrics.Polls.WithLabelValues("unchanged").Inc()
		return false, nil
	}
	return false, s.applyPolled(ctx, ref, ups)
}
