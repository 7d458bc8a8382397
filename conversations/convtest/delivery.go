package convtest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/proxyq/proxyq/proxyclient/proxytest"
)

// Outcome is what becomes of a message's SMS, for every recipient.
type Outcome int

const (
	// Delivered: sent → delivered.
	Delivered Outcome = iota + 1
	// Read: sent → delivered → read (what WhatsApp reports; SMS never does).
	Read
	// Undelivered: sent → undelivered, error code 30003 (unreachable handset).
	Undelivered
	// Failed: failed, error code 30008 (unknown error), without "sent".
	Failed
)

func (o Outcome) steps() []string {
	switch o {
	case Read:
		return []string{"delivered", "read"}
	case Undelivered:
		return []string{"undelivered"}
	case Failed:
		return []string{"failed"}
	}
	return []string{"delivered"}
}

func (o Outcome) errorCode() int {
	switch o {
	case Undelivered:
		return 30003
	case Failed:
		return 30008
	}
	return 0
}

// DeliveryConfig simulates delivery receipts and Twilio's post-event onDeliveryUpdated webhook.
// Without Advance and URL, receipts stay "sent".
type DeliveryConfig struct {
	// Advance moves receipts through their Outcome, Delay apart, even without a URL (for
	// clients that poll Receipts or the delivery summary).
	Advance bool
	// URL, when set, receives each receipt status change as onDeliveryUpdated (implies Advance).
	URL string
	// SigningURL is the URL the X-Twilio-Signature is computed over (the public URL behind a
	// proxy); default URL.
	SigningURL string
	// AuthToken signs the webhooks. Default: the secret of Credentials[account], else the
	// secret an AC… user created the message with; an API-key create with neither gets no
	// webhooks (recorded in Callbacks with an error).
	AuthToken string
	// Delay between status steps. Default 50ms.
	Delay time.Duration
	// Default is the outcome of messages with no scripted one. Default Delivered.
	Default Outcome
	// Recipients is the number of non-chat participants (receipts per message). Default 1.
	Recipients int
	// Duplicates posts every webhook twice (same body, token and signature).
	Duplicates bool
	// OutOfOrder holds a message's webhooks until its last status, then posts them newest first.
	OutOfOrder bool
}

func (c DeliveryConfig) validate() error {
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("convtest: Delivery.URL must be an absolute http or https URL")
		}
	}
	if c.Delay < 0 || c.Recipients < 0 || c.Default < 0 || c.Default > Failed {
		return errors.New("convtest: Delivery.Delay, Recipients and Default must be valid")
	}
	return nil
}

func (c DeliveryConfig) withDefaults() DeliveryConfig {
	if c.Delay == 0 {
		c.Delay = 50 * time.Millisecond
	}
	if c.Default == 0 {
		c.Default = Delivered
	}
	if c.Recipients == 0 {
		c.Recipients = 1
	}
	if c.SigningURL == "" {
		c.SigningURL = c.URL
	}
	return c
}

// ScriptDelivery fixes the outcome of the next n created messages.
func (f *Fake) ScriptDelivery(o Outcome, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.plans = append(f.plans, o)
	}
}

func (f *Fake) nextOutcomeLocked() Outcome {
	if len(f.plans) > 0 {
		o := f.plans[0]
		f.plans = f.plans[1:]
		return o
	}
	return f.cfg.Delivery.Default
}

// Callback is one onDeliveryUpdated POST as sent.
type Callback struct {
	Params           url.Values
	Signature        string
	IdempotencyToken string
	Status           int   // receiver's HTTP status; 0 when the POST failed
	Err              error // transport error
}

// Callbacks returns the webhooks posted so far, in posting order.
func (f *Fake) Callbacks() []Callback {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Callback(nil), f.cbs...)
}

// WaitDelivery waits until every started delivery simulation has finished (or ctx ends).
func (f *Fake) WaitDelivery(ctx context.Context) error {
	done := make(chan struct{})
	go func() { f.pending.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// DeliveryParams are the onDeliveryUpdated parameters the Fake posts. The names are those of
// Twilio's Conversations webhook documentation (onDeliveryUpdated) and of its Event Streams
// schema for the same event (com.twilio.conversations.delivery.updated: AccountSid,
// ConversationSid, ChatServiceSid, MessageSid, DeliveryReceiptSid, ChannelMessageSid,
// ParticipantSid, Status, ErrorCode, DateCreated, DateUpdated), plus EventType, which every
// Conversations webhook carries.
var DeliveryParams = []string{"EventType", "AccountSid", "ConversationSid", "ChatServiceSid", "MessageSid",
	"DeliveryReceiptSid", "ChannelMessageSid", "ParticipantSid", "Status", "ErrorCode", "DateCreated", "DateUpdated"}

func (f *Fake) startDelivery(m *Message, o Outcome) {
	cfg := f.cfg.Delivery
	if !cfg.Advance && cfg.URL == "" {
		return
	}
	token := cfg.AuthToken
	if token == "" && f.cfg.Credentials != nil {
		token = f.cfg.Credentials[m.AccountSID]
	}
	if token == "" {
		token = m.signingToken
	}
	f.pending.Add(1)
	go func() {
		defer f.pending.Done()
		var held []url.Values
		client := &http.Client{Timeout: 5 * time.Second}
		for _, status := range o.steps() {
			select {
			case <-f.done:
				return
			case <-time.After(cfg.Delay):
			}
			now := time.Now().UTC()
			var batch []url.Values
			f.mu.Lock()
			for _, rc := range m.Receipts {
				rc.Status, rc.DateUpdated = status, now.Truncate(time.Second)
				if status == "undelivered" || status == "failed" {
					rc.ErrorCode = o.errorCode()
				}
				batch = append(batch, deliveryParams(m, rc, now))
			}
			f.mu.Unlock()
			if cfg.URL == "" {
				continue
			}
			if cfg.OutOfOrder {
				held = append(batch, held...) // newest first
				continue
			}
			for _, p := range batch {
				f.post(client, cfg, token, p)
			}
		}
		for _, p := range held {
			f.post(client, cfg, token, p)
		}
	}()
}

func deliveryParams(m *Message, rc *Receipt, now time.Time) url.Values {
	p := url.Values{
		"EventType": {"onDeliveryUpdated"}, "AccountSid": {m.AccountSID}, "ConversationSid": {m.ConversationSID},
		"MessageSid": {m.SID}, "DeliveryReceiptSid": {rc.SID}, "ChannelMessageSid": {rc.ChannelMessageSID},
		"ParticipantSid": {rc.ParticipantSID}, "Status": {rc.Status},
		"DateCreated": {rc.DateCreated.Format(time.RFC3339)}, "DateUpdated": {now.Format(time.RFC3339Nano)},
	}
	if m.ServiceSID != "" {
		p.Set("ChatServiceSid", m.ServiceSID)
	}
	if rc.ErrorCode != 0 {
		p.Set("ErrorCode", strconv.Itoa(rc.ErrorCode))
	}
	return p
}

// post sends one webhook (twice with Duplicates), signed as Twilio signs webhooks.
func (f *Fake) post(client *http.Client, cfg DeliveryConfig, token string, p url.Values) {
	if token == "" {
		f.mu.Lock()
		f.cbs = append(f.cbs, Callback{Params: p, Err: errors.New("convtest: no auth token to sign with: skipped")})
		f.mu.Unlock()
		return
	}
	sig := proxytest.CallbackSignature(token, cfg.SigningURL, p)
	idem := newSID("ID")
	n := 1
	if cfg.Duplicates {
		n = 2
	}
	for range n {
		cb := Callback{Params: p, Signature: sig, IdempotencyToken: idem}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-f.done:
				cancel()
			case <-ctx.Done():
			}
		}()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.URL, strings.NewReader(p.Encode()))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("X-Twilio-Signature", sig)
			req.Header.Set("I-Twilio-Idempotency-Token", idem)
			req.Header.Set("User-Agent", "TwilioProxy/1.1")
			var resp *http.Response
			if resp, err = client.Do(req); err == nil {
				cb.Status = resp.StatusCode
				_ = resp.Body.Close()
			}
		}
		cancel()
		if err != nil {
			cb.Err = fmt.Errorf("convtest: post onDeliveryUpdated: %w", err)
		}
		f.mu.Lock()
		f.cbs = append(f.cbs, cb)
		f.mu.Unlock()
	}
}
