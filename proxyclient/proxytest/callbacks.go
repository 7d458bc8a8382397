package proxytest

import (
	"container/heap"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Defaults applied to CallbackConfig by Config.WithDefaults.
const (
	// DefaultCallbackDelay is the time between a message's statuses (queued, sent, final).
	DefaultCallbackDelay = 250 * time.Millisecond
	// DefaultCallbackTimeout bounds one callback POST.
	DefaultCallbackTimeout = 5 * time.Second
	// DefaultCallbackAttempts is how many times one callback is POSTed at most (first try
	// included) while it is answered non-2xx or not at all.
	DefaultCallbackAttempts = 3
	// DefaultCallbackRetryBackoff is the wait before the second attempt; it doubles after.
	DefaultCallbackRetryBackoff = 100 * time.Millisecond
	// DefaultCallbackWorkers is how many callback POSTs run at once.
	DefaultCallbackWorkers = 4
	// DefaultCallbackMaxPending bounds the callbacks waiting for their time or a worker;
	// beyond it new callbacks are dropped and counted.
	DefaultCallbackMaxPending = 10000
	// maxCallbackLog bounds the list Callbacks returns (oldest forgotten first).
	maxCallbackLog = 10000
)

// DefaultErrorCodes are the Messaging error codes drawn for undelivered and failed messages:
// 30003 unreachable handset, 30005 unknown destination, 30006 landline or unreachable
// carrier, 30007 carrier filtering.
var DefaultErrorCodes = []int{30003, 30005, 30006, 30007}

// Message statuses the Fake moves a message through.
const (
	StatusQueued      = "queued"
	StatusSent        = "sent"
	StatusDelivered   = "delivered"
	StatusUndelivered = "undelivered"
	StatusFailed      = "failed"
)

// errorMessages are Twilio's texts for the codes the Fake draws; others get a generic one.
var errorMessages = map[int]string{
	30001: "Queue overflow",
	30002: "Account suspended",
	30003: "Unreachable destination handset",
	30004: "Message blocked",
	30005: "Unknown destination handset",
	30006: "Landline or unreachable carrier",
	30007: "Message filtered",
	30008: "Unknown error",
	30034: "Message from an unregistered number",
}

// CallbackConfig makes the Fake simulate what happens to each SMS after a create, and tell a
// Proxy Service's callback_url about it as Twilio does. The zero value sends no callbacks and
// keeps every message "queued" forever (the Fake's behaviour before callbacks existed).
//
// With URL set (or Advance), every created interaction's message moves queued → sent →
// delivered, Delay apart (or queued → sent → undelivered, or queued → failed, with an
// error code), and fetch, list and the Messaging fetch route show the current status. With
// URL set, each status change is POSTed there, signed, asynchronously.
type CallbackConfig struct {
	// URL is the Service's callback_url: an absolute http(s) URL the callbacks are POSTed
	// to. Empty sends none. SetCallbackURL changes it at run time; a callback reads the URL
	// when it is sent.
	URL string
	// SigningURL is the URL the signature is computed over when it is not URL, e.g. the
	// public https URL of a receiver behind a TLS terminator while the Fake posts to its
	// internal address. Empty means URL.
	SigningURL string
	// AuthTokens maps an Account SID (AC…) to the Auth Token its callbacks are signed with.
	// An account not in it uses AuthToken; failing that, the secret of Config.Credentials
	// for that AC user; failing that, the secret the create request authenticated with when
	// its user was that AC (in lenient mode, whatever the client sent is the "Auth Token").
	// An interaction created with an API key whose account has no token gets no callbacks
	// (counted as Skipped).
	AuthTokens map[string]string
	// AuthToken signs callbacks of accounts not in AuthTokens.
	AuthToken string

	// Advance moves messages through their statuses even with no URL, so a client that
	// polls sees them progress. A URL implies it.
	Advance bool
	// Delay is the time between a message's statuses. Default 250ms.
	Delay time.Duration
	// Undelivered and Failed are the fractions (0..1, together at most 1) of messages that
	// end undelivered (queued → sent → undelivered) or failed (queued → failed) instead of
	// delivered, with an error code drawn from ErrorCodes.
	Undelivered, Failed float64
	// ErrorCodes are the Messaging error codes drawn for undelivered and failed messages;
	// default DefaultErrorCodes.
	ErrorCodes []int
	// Duplicates is the fraction (0..1) of callbacks POSTed twice (same parameters,
	// signature and I-Twilio-Idempotency-Token), as Twilio sometimes does.
	Duplicates float64
	// OutOfOrder is the fraction (0..1) of messages whose callbacks arrive out of order:
	// they are held back until the final status, then sent newest first. The message's own
	// status still changes in order.
	OutOfOrder float64
	// BeforeAnswer POSTs each message's first callback ("queued") and waits for its answer
	// (up to Timeout) before the create request is answered, so the callback reaches the
	// receiver before the sender knows the interaction's SID, as happens with Twilio.
	BeforeAnswer bool

	// Timeout bounds one POST. Default 5s.
	Timeout time.Duration
	// Attempts is how many times a callback is POSTed at most while the answer is not 2xx
	// (or there is none). Default 3.
	Attempts int
	// RetryBackoff is the wait before the second attempt, doubling after. Default 100ms.
	RetryBackoff time.Duration
	// Workers is how many POSTs run at once. Default 4.
	Workers int
	// MaxPending bounds callbacks waiting to be sent; beyond it they are dropped (counted).
	// Default 10000.
	MaxPending int
	// HTTPClient sends the callbacks (its redirect policy is replaced: redirects are not
	// followed). Nil means a private client.
	HTTPClient *http.Client
}

func (c CallbackConfig) withDefaults() CallbackConfig {
	if c.Delay == 0 {
		c.Delay = DefaultCallbackDelay
	}
	if len(c.ErrorCodes) == 0 {
		c.ErrorCodes = DefaultErrorCodes
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultCallbackTimeout
	}
	if c.Attempts == 0 {
		c.Attempts = DefaultCallbackAttempts
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = DefaultCallbackRetryBackoff
	}
	if c.Workers == 0 {
		c.Workers = DefaultCallbackWorkers
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultCallbackMaxPending
	}
	return c
}

func (c CallbackConfig) validate() error {
	bad := func(field, rule string, args ...any) error {
		return &ConfigError{Field: "Callbacks." + field, Rule: fmt.Sprintf(rule, args...)}
	}
	if err := checkCallbackURL(c.URL); err != nil {
		return bad("URL", "%v", err)
	}
	if err := checkCallbackURL(c.SigningURL); err != nil {
		return bad("SigningURL", "%v", err)
	}
	for sid, tok := range c.AuthTokens {
		if !isSID(sid, "AC") {
			return bad("AuthTokens", "keys must be Account SIDs (AC + 32 hex), got %q", sid)
		}
		if tok == "" {
			return bad("AuthTokens", "token for %s must not be empty", sid)
		}
	}
	for _, fr := range []struct {
		name string
		v    float64
	}{{"Undelivered", c.Undelivered}, {"Failed", c.Failed}, {"Duplicates", c.Duplicates}, {"OutOfOrder", c.OutOfOrder}} {
		if math.IsNaN(fr.v) || fr.v < 0 || fr.v > 1 {
			return bad(fr.name, "must be a fraction between 0 and 1, got %v", fr.v)
		}
	}
	if c.Undelivered+c.Failed > 1+1e-9 {
		return bad("Undelivered", "and Failed must add up to at most 1, got %v", c.Undelivered+c.Failed)
	}
	for _, code := range c.ErrorCodes {
		if code <= 0 {
			return bad("ErrorCodes", "must be positive Twilio error codes, got %d", code)
		}
	}
	switch {
	case c.Delay < 0:
		return bad("Delay", "must not be negative, got %s", c.Delay)
	case c.Timeout < 0:
		return bad("Timeout", "must not be negative, got %s", c.Timeout)
	case c.Attempts < 0:
		return bad("Attempts", "must not be negative, got %d", c.Attempts)
	case c.RetryBackoff < 0:
		return bad("RetryBackoff", "must not be negative, got %s", c.RetryBackoff)
	case c.Workers < 0:
		return bad("Workers", "must not be negative, got %d", c.Workers)
	case c.MaxPending < 0:
		return bad("MaxPending", "must not be negative, got %d", c.MaxPending)
	}
	return nil
}

// checkCallbackURL accepts "" or an absolute http(s) URL without user info or fragment. Its
// errors do not quote the URL (it may carry a token in its query).
func checkCallbackURL(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return errors.New("must be an absolute http or https URL")
	case u.User != nil:
		return errors.New("must not contain user info")
	case u.Fragment != "":
		return errors.New("must not contain a fragment")
	}
	return nil
}

// DeliveryPlan scripts what happens to the message of one future create (see ScriptDelivery).
type DeliveryPlan struct {
	// Final is the last status: StatusDelivered (default), StatusUndelivered or StatusFailed.
	Final string
	// ErrorCode is the Messaging error code of an undelivered or failed message; 0 draws one
	// from CallbackConfig.ErrorCodes.
	ErrorCode int
	// Duplicate POSTs every callback of this message twice.
	Duplicate bool
	// OutOfOrder holds the callbacks back until the final status, then sends them newest first.
	OutOfOrder bool
}

// ScriptDelivery makes the messages of the next n creates follow plan, in FIFO order, before
// the random fractions of CallbackConfig (Undelivered, Failed, Duplicates, OutOfOrder) are
// consulted again: a scripted message takes none of them. It returns an error for an
// unknown Final status.
func (f *Fake) ScriptDelivery(plan DeliveryPlan, n int) error {
	switch plan.Final {
	case "", StatusDelivered:
		plan.Final = StatusDelivered
		plan.ErrorCode = 0
	case StatusUndelivered, StatusFailed:
	default:
		return fmt.Errorf("proxytest: DeliveryPlan.Final must be %q, %q or %q, got %q",
			StatusDelivered, StatusUndelivered, StatusFailed, plan.Final)
	}
	if plan.ErrorCode < 0 {
		return fmt.Errorf("proxytest: DeliveryPlan.ErrorCode must not be negative, got %d", plan.ErrorCode)
	}
	c := f.cb
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := 0; i < n; i++ {
		c.plans = append(c.plans, plan)
	}
	return nil
}

// MessageState is what the Fake knows of one message (the SMS behind an interaction) now.
type MessageState struct {
	InteractionSID string    `json:"interaction_sid"` // KI…
	MessageSID     string    `json:"message_sid"`     // SM…
	AccountSID     string    `json:"account_sid"`     // AC…
	Status         string    `json:"status"`          // current status
	Final          string    `json:"final"`           // the status it ends in
	ErrorCode      int       `json:"error_code"`      // 0 unless the current status is undelivered or failed
	ErrorMessage   string    `json:"error_message"`   // "" when ErrorCode is 0
	History        []string  `json:"history"`         // statuses reached so far, in order
	DateCreated    time.Time `json:"date_created"`    // from Config.Now, like Interaction.CreatedAt
	DateUpdated    time.Time `json:"date_updated"`    // when Status was reached (on Config.Now's scale)
}

// MessageStatus returns the current state of the message of an interaction, by interaction
// SID (KI…) or message SID (SM…). ok is false when the Fake created no such interaction.
func (f *Fake) MessageStatus(sid string) (st MessageState, ok bool) {
	c := f.cb
	c.mu.Lock()
	m := c.msgs[sid]
	c.mu.Unlock()
	if m == nil {
		return MessageState{}, false
	}
	return m.state(time.Now()), true
}

// Callback is one callback the Fake sent, or is sending (see Callbacks).
type Callback struct {
	InteractionSID string `json:"interaction_sid"`
	MessageSID     string `json:"message_sid"`
	AccountSID     string `json:"account_sid"`
	Status         string `json:"status"` // outboundResourceStatus
	// Duplicate is true for the second copy of a duplicated callback.
	Duplicate bool `json:"duplicate"`
	// State is "pending", "delivered" (a 2xx answer), "failed" (attempts exhausted),
	// "dropped" (MaxPending reached), "skipped" (no URL or no Auth Token when due) or
	// "canceled" (Close or Reset).
	State string `json:"state"`
	// Attempts is how many POSTs were made; StatusCode the last answer's status (0 when no
	// answer came), Error the last transport error.
	Attempts   int    `json:"attempts"`
	StatusCode int    `json:"status_code"`
	Error      string `json:"error,omitempty"`
	// URL is where it was last POSTed; Signature its X-Twilio-Signature; IdempotencyToken
	// its I-Twilio-Idempotency-Token (shared by a duplicate and its original).
	URL              string `json:"url"`
	Signature        string `json:"signature"`
	IdempotencyToken string `json:"idempotency_token"`
	// Params are the form parameters, exactly as sent (interactionData holds the body).
	Params url.Values `json:"params"`
	// SentAt is when the last attempt started (zero before the first).
	SentAt time.Time `json:"sent_at"`
}

// CallbackStats counts callbacks since New or Reset.
type CallbackStats struct {
	Scheduled int `json:"scheduled"` // callbacks planned (duplicates included)
	Attempts  int `json:"attempts"`  // POSTs made
	Delivered int `json:"delivered"` // callbacks answered 2xx
	Failed    int `json:"failed"`    // callbacks given up after Attempts
	Retries   int `json:"retries"`   // attempts after the first
	Dropped   int `json:"dropped"`   // not scheduled: MaxPending reached
	Skipped   int `json:"skipped"`   // not sent: no URL or no Auth Token when due
	Canceled  int `json:"canceled"`  // pending at Close or Reset
	// Duplicates counts duplicate copies scheduled; OutOfOrder messages whose callbacks were
	// reordered.
	Duplicates int `json:"duplicates"`
	OutOfOrder int `json:"out_of_order"`
	// Answers counts POST answers by HTTP status; key 0 counts attempts with no answer.
	Answers map[int]int `json:"answers"`
	// Pending is how many callbacks wait for their time, a worker, or their answer.
	Pending int `json:"pending"`
	// MessageFetches counts requests to the Messaging route that passed authentication (a
	// poller's load); MessageFetchFaults those answered by FailMessageFetches.
	MessageFetches     int `json:"message_fetches"`
	MessageFetchFaults int `json:"message_fetch_faults"`
}

// Callbacks returns a copy of the callbacks sent or scheduled, in the order they were planned
// (at most the last 10000).
func (f *Fake) Callbacks() []Callback {
	c := f.cb
	c.mu.Lock()
	defer c.mu.Unlock()
	entries := c.entries[max(0, len(c.entries)-maxCallbackLog):]
	out := make([]Callback, len(entries))
	for i, cb := range entries {
		out[i] = *cb
		out[i].Params = cloneValues(cb.Params)
	}
	return out
}

// CallbackStats returns a snapshot of the callback counters.
func (f *Fake) CallbackStats() CallbackStats {
	c := f.cb
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Answers = make(map[int]int, len(c.stats.Answers))
	for k, v := range c.stats.Answers {
		s.Answers[k] = v
	}
	s.Pending = c.pending
	return s
}

// WaitCallbacks blocks until no callback is pending (every planned one delivered, failed,
// skipped or dropped) or ctx ends (its error is returned). Messages whose statuses are still
// ahead count as pending.
func (f *Fake) WaitCallbacks(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		f.cb.mu.Lock()
		n := f.cb.pending
		f.cb.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("proxytest: %d callbacks still pending: %w", n, ctx.Err())
		case <-t.C:
		}
	}
}

// SetCallbackURL sets the Service's callback_url from now on ("" turns callbacks off) and
// clears SigningURL. Callbacks already planned are sent to the URL current when they are due;
// interactions created while the URL was empty get none. It returns a *ConfigError for a URL
// that is not absolute http(s).
func (f *Fake) SetCallbackURL(u string) error {
	if err := checkCallbackURL(u); err != nil {
		return &ConfigError{Field: "Callbacks.URL", Rule: err.Error()}
	}
	c := f.cb
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cfg.URL, c.cfg.SigningURL = u, ""
	return nil
}

// SetCallbackConfig replaces the callback configuration from now on (defaults applied).
// Messages already created keep their plan and delay; the worker count and HTTP client
// chosen when the first callback was sent stay. It returns a *ConfigError when cfg is invalid.
func (f *Fake) SetCallbackConfig(cfg CallbackConfig) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	cfg = cfg.withDefaults()
	cfg.AuthTokens = cloneMap(cfg.AuthTokens)
	cfg.ErrorCodes = slices.Clone(cfg.ErrorCodes)
	c := f.cb
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cfg = cfg
	return nil
}

// CallbackSignature computes Twilio's X-Twilio-Signature for a POST to fullURL with the given
// form parameters: base64(HMAC-SHA1(authToken, fullURL + name1 + value1 + name2 + value2 …)),
// names in byte order and, for a repeated name, its values in byte order. fullURL is used
// exactly as given (scheme, host, port, path and query).
func CallbackSignature(authToken, fullURL string, params url.Values) string {
	names := make([]string, 0, len(params))
	for k := range params {
		names = append(names, k)
	}
	sort.Strings(names)
	mac := hmac.New(sha1.New, []byte(authToken))
	_, _ = io.WriteString(mac, fullURL)
	for _, k := range names {
		vs := slices.Clone(params[k])
		sort.Strings(vs)
		for _, v := range vs {
			_, _ = io.WriteString(mac, k)
			_, _ = io.WriteString(mac, v)
		}
	}
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// message is the SMS behind one interaction: what it will do, decided at create.
type message struct {
	ki, sm, accountSID, service, session, participant string
	body, data                                        string
	base                                              string // scheme://host/prefix of the create request
	created                                           time.Time
	start                                             time.Time // wall clock of the create, for progress
	delay                                             time.Duration
	advance                                           bool
	steps                                             []string // queued, [sent,] final
	errorCode                                         int
	token                                             string // "" when none is known: no callbacks
	// chain holds the message's callbacks not yet handed to the scheduler, in sending
	// order: one callback of a message is in flight at a time, so the receiver sees them in
	// the order planned (callbacks.mu).
	chain []*delivery
}

// stepAt is the index in steps reached at now.
func (m *message) stepAt(now time.Time) int {
	if !m.advance || m.delay <= 0 {
		if m.advance {
			return len(m.steps) - 1
		}
		return 0
	}
	k := int(now.Sub(m.start) / m.delay)
	return max(0, min(k, len(m.steps)-1))
}

func (m *message) state(now time.Time) MessageState {
	k := m.stepAt(now)
	st := MessageState{
		InteractionSID: m.ki,
		MessageSID:     m.sm,
		AccountSID:     m.accountSID,
		Status:         m.steps[k],
		Final:          m.steps[len(m.steps)-1],
		History:        slices.Clone(m.steps[:k+1]),
		DateCreated:    m.created,
		DateUpdated:    m.created.Add(time.Duration(k) * m.delay),
	}
	if k == len(m.steps)-1 && m.errorCode != 0 {
		st.ErrorCode = m.errorCode
		st.ErrorMessage = errorMessage(m.errorCode)
	}
	return st
}

func errorMessage(code int) string {
	if s, ok := errorMessages[code]; ok {
		return s
	}
	return "Message delivery failed (error " + strconv.Itoa(code) + ")"
}

// messageURL is the Messaging API URL of the message on the Fake.
func (m *message) messageURL() string {
	return m.base + "/2010-04-01/Accounts/" + m.accountSID + "/Messages/" + m.sm + ".json"
}

// params are the form parameters of the callback for step k, as Twilio's Proxy sends them.
func (m *message) params(k int) url.Values {
	updated := m.created.Add(time.Duration(k) * m.delay)
	return url.Values{
		"interactionSid":         {m.ki},
		"interactionSessionSid":  {m.session},
		"interactionServiceSid":  {m.service},
		"interactionAccountSid":  {m.accountSID},
		"interactionType":        {"message"},
		"interactionData":        {m.data},
		"interactionDateCreated": {formatTime(m.created)},
		"interactionDateUpdated": {formatTime(updated)},
		"inboundParticipantSid":  {""},
		"inboundResourceSid":     {""},
		"inboundResourceStatus":  {""},
		"inboundResourceType":    {""},
		"inboundResourceUrl":     {""},
		"outboundParticipantSid": {m.participant},
		"outboundResourceSid":    {m.sm},
		"outboundResourceStatus": {m.steps[k]},
		"outboundResourceType":   {"Message"},
		"outboundResourceUrl":    {m.messageURL()},
	}
}

// delivery is one callback waiting for its time or a worker.
type delivery struct {
	due     time.Time
	msg     *message
	step    int
	log     *Callback
	attempt int // attempts made so far
	gen     uint64
	index   int // in the heap
}

type deliveryHeap []*delivery

func (h deliveryHeap) Len() int           { return len(h) }
func (h deliveryHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h deliveryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *deliveryHeap) Push(x any) { d := x.(*delivery); d.index = len(*h); *h = append(*h, d) }
func (h *deliveryHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return d
}

// callbacks is the Fake's delivery simulation. Its mutex is never held while taking Fake.mu.
type callbacks struct {
	logger *zap.Logger
	seed   int64
	// ctx is canceled by stop (Fake.Close): it ends the scheduler, the workers and every
	// POST in progress.
	ctx       context.Context
	cancelAll context.CancelFunc

	mu    sync.Mutex
	cfg   CallbackConfig
	rng   *rand.Rand
	plans []DeliveryPlan
	// fetchFaults are the statuses the next Message fetches answer (FailMessageFetches).
	fetchFaults []int
	msgs        map[string]*message // by KI and by SM
	queue       deliveryHeap
	pending     int
	gen         uint64 // bumped by reset: completions of older deliveries are not counted
	entries     []*Callback
	stats       CallbackStats
	started     bool

	wake   chan struct{}
	work   chan *delivery
	client *http.Client
	wg     sync.WaitGroup
}

func newCallbacks(cfg CallbackConfig, seed int64, logger *zap.Logger) *callbacks {
	cfg.AuthTokens = cloneMap(cfg.AuthTokens)
	cfg.ErrorCodes = slices.Clone(cfg.ErrorCodes)
	ctx, cancel := context.WithCancel(context.Background())
	return &callbacks{
		logger:    logger,
		seed:      seed,
		ctx:       ctx,
		cancelAll: cancel,
		cfg:       cfg,
		wake:      make(chan struct{}, 1),
		work:      make(chan *delivery),
	}
}

// reset forgets messages, plans, the log and the counters and cancels pending callbacks.
func (c *callbacks) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rng = rand.New(rand.NewPCG(uint64(c.seed), 0x5851f42d4c957f2d))
	c.plans = nil
	c.fetchFaults = nil
	for _, d := range c.queue {
		d.log.State = "canceled"
	}
	for key, m := range c.msgs {
		if key == m.ki {
			for _, d := range m.chain {
				d.log.State = "canceled"
			}
		}
	}
	c.msgs = make(map[string]*message)
	c.queue = nil
	c.pending = 0
	c.gen++
	c.entries = nil
	c.stats = CallbackStats{Answers: map[int]int{}}
}

// stop cancels every POST in progress, waits for the scheduler and workers to end and
// cancels the callbacks still waiting. Safe to call twice.
func (c *callbacks) stop() {
	c.cancelAll()
	c.wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range c.queue {
		c.cancelLocked(d)
	}
	c.queue = nil
}

// currentStatus is the interaction's outbound_resource_status and date_updated now.
func (c *callbacks) currentStatus(ki string, created time.Time) (string, time.Time) {
	c.mu.Lock()
	m := c.msgs[ki]
	c.mu.Unlock()
	if m == nil {
		return StatusQueued, created
	}
	k := m.stepAt(time.Now())
	return m.steps[k], m.created.Add(time.Duration(k) * m.delay)
}

// afterCreate plans the message of a stored interaction and its callbacks. It runs in the
// create handler before the answer is written; with BeforeAnswer it sends the first callback
// and waits for its answer.
func (f *Fake) afterCreate(x *exchange, rec *record) {
	c := f.cb
	c.mu.Lock()
	cfg := c.cfg
	plan, scripted := c.nextPlanLocked()
	dupRate := cfg.Duplicates
	if scripted {
		dupRate = 0 // a scripted plan says itself whether to duplicate
	}
	m := &message{
		ki: rec.SID, sm: rec.OutboundResourceSID, accountSID: rec.AccountSID,
		service: rec.Service, session: rec.Session, participant: rec.Participant,
		body: rec.Body, data: rec.data, base: absBase(x.r),
		created: rec.CreatedAt, start: time.Now(), delay: cfg.Delay,
		advance: cfg.Advance || cfg.URL != "",
	}
	switch plan.Final {
	case StatusFailed:
		m.steps = []string{StatusQueued, StatusFailed}
	case StatusUndelivered:
		m.steps = []string{StatusQueued, StatusSent, StatusUndelivered}
	default:
		m.steps = []string{StatusQueued, StatusSent, StatusDelivered}
	}
	if plan.Final != StatusDelivered {
		m.errorCode = plan.ErrorCode
		if m.errorCode == 0 {
			m.errorCode = cfg.ErrorCodes[c.rng.IntN(len(cfg.ErrorCodes))]
		}
	}
	m.token = f.callbackToken(cfg, x.r, rec.AccountSID)
	c.msgs[m.ki], c.msgs[m.sm] = m, m
	if cfg.URL == "" {
		c.mu.Unlock()
		return
	}
	if m.token == "" {
		c.stats.Skipped += len(m.steps)
		c.mu.Unlock()
		f.log.Warn("proxytest callbacks skipped: no Auth Token for the account (set CallbackConfig.AuthTokens)",
			zap.String("account_sid", m.accountSID), zap.String("interaction_sid", m.ki))
		return
	}

	// Plan each step's callbacks in sending order: due when the status is reached, or, out
	// of order, all after the final status, newest first. With BeforeAnswer the first one is
	// sent by this handler.
	first := 0
	var chain []*delivery
	if cfg.BeforeAnswer {
		chain = c.planLocked(m, 0, m.start, plan.Duplicate, dupRate)
		first = 1
	}
	last := len(m.steps) - 1
	finalAt := m.start.Add(time.Duration(last) * m.delay)
	if plan.OutOfOrder && last-first >= 1 {
		c.stats.OutOfOrder++
		for k := last; k >= first; k-- {
			chain = append(chain, c.planLocked(m, k, finalAt, plan.Duplicate, dupRate)...)
		}
	} else {
		for k := first; k <= last; k++ {
			chain = append(chain, c.planLocked(m, k, m.start.Add(time.Duration(k)*m.delay), plan.Duplicate, dupRate)...)
		}
	}
	if len(chain) == 0 {
		c.mu.Unlock()
		return
	}
	head := chain[0]
	m.chain = chain[1:]
	c.startLocked()
	if !cfg.BeforeAnswer || head.step != 0 { // step 0 may have been dropped (MaxPending)
		c.pushLocked(head)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.attempt(x.r.Context(), head)
}

// nextPlanLocked takes the next scripted plan (scripted is then true), or draws one from
// the fractions.
func (c *callbacks) nextPlanLocked() (plan DeliveryPlan, scripted bool) {
	if len(c.plans) > 0 {
		p := c.plans[0]
		c.plans = c.plans[1:]
		return p, true
	}
	p := DeliveryPlan{Final: StatusDelivered}
	u := c.rng.Float64()
	switch {
	case u < c.cfg.Undelivered:
		p.Final = StatusUndelivered
	case u < c.cfg.Undelivered+c.cfg.Failed:
		p.Final = StatusFailed
	}
	p.OutOfOrder = c.cfg.OutOfOrder > 0 && c.rng.Float64() < c.cfg.OutOfOrder
	return p, false
}

// planLocked logs the callback(s) of step k due at due: one, or two when duplicated. Those
// beyond MaxPending are logged as dropped and not returned.
func (c *callbacks) planLocked(m *message, k int, due time.Time, duplicate bool, dupRate float64) []*delivery {
	n := 1
	if duplicate || (dupRate > 0 && c.rng.Float64() < dupRate) {
		n = 2
	}
	token := newSID("ID")
	out := make([]*delivery, 0, n)
	for i := 0; i < n; i++ {
		cb := &Callback{
			InteractionSID: m.ki, MessageSID: m.sm, AccountSID: m.accountSID,
			Status: m.steps[k], Duplicate: i == 1, State: "pending",
			IdempotencyToken: token, Params: m.params(k),
		}
		c.entries = append(c.entries, cb)
		if len(c.entries) >= 2*maxCallbackLog {
			// Forgotten a half at a time: trimming one entry per callback moved the whole
			// log on every callback once it was full, the fake's largest cost in a bench.
			c.entries = slices.Delete(c.entries, 0, len(c.entries)-maxCallbackLog)
		}
		c.stats.Scheduled++
		if i == 1 {
			c.stats.Duplicates++
		}
		if c.pending >= c.cfg.MaxPending {
			cb.State = "dropped"
			c.stats.Dropped++
			continue
		}
		c.pending++
		// The copy follows its original at once (the chain sends it after the original).
		out = append(out, &delivery{due: due, msg: m, step: k, log: cb, gen: c.gen})
	}
	return out
}

// pushLocked queues a delivery for the scheduler, or cancels it once the Fake is closed
// (nothing would send it).
func (c *callbacks) pushLocked(d *delivery) {
	if c.ctx.Err() != nil {
		c.cancelLocked(d)
		return
	}
	heap.Push(&c.queue, d)
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// finishLocked ends d (delivered, failed or skipped) and queues the next callback of its
// message, not earlier than now.
func (c *callbacks) finishLocked(d *delivery, state string) {
	d.log.State = state
	c.pending--
	m := d.msg
	if len(m.chain) == 0 {
		return
	}
	next := m.chain[0]
	m.chain = m.chain[1:]
	if now := time.Now(); next.due.Before(now) {
		next.due = now
	}
	c.pushLocked(next)
}

// cancelLocked cancels d and the rest of its message's chain (Close).
func (c *callbacks) cancelLocked(d *delivery) {
	for _, x := range append([]*delivery{d}, d.msg.chain...) {
		x.log.State = "canceled"
		c.stats.Canceled++
		c.pending--
	}
	d.msg.chain = nil
}

// startLocked starts the scheduler and workers once, unless the Fake is closed.
func (c *callbacks) startLocked() {
	if c.started {
		return
	}
	if c.ctx.Err() != nil {
		return
	}
	c.started = true
	if c.cfg.HTTPClient != nil {
		hc := *c.cfg.HTTPClient
		c.client = &hc
	} else {
		// One kept-alive connection per worker: with the default two per host, the other
		// workers' connections are closed after every callback and dialled again, which costs
		// both the fake and the receiving endpoint far more than the callback itself.
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = c.cfg.Workers
		c.client = &http.Client{Transport: t}
	}
	c.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.wg.Add(1 + c.cfg.Workers)
	go c.schedule()
	for i := 0; i < c.cfg.Workers; i++ {
		go c.worker()
	}
}

// schedule hands due deliveries to the workers until the Fake is closed.
func (c *callbacks) schedule() {
	defer c.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		c.mu.Lock()
		var d *delivery
		wait := time.Hour
		if len(c.queue) > 0 {
			if w := time.Until(c.queue[0].due); w <= 0 {
				d = heap.Pop(&c.queue).(*delivery)
			} else {
				wait = w
			}
		}
		c.mu.Unlock()
		if d != nil {
			select {
			case c.work <- d:
			case <-c.ctx.Done():
				c.cancel(d)
				return
			}
			continue
		}
		timer.Reset(wait)
		select {
		case <-c.wake:
		case <-timer.C:
		case <-c.ctx.Done():
			return
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

func (c *callbacks) cancel(d *delivery) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d.gen == c.gen {
		c.cancelLocked(d)
	}
}

func (c *callbacks) worker() {
	defer c.wg.Done()
	for {
		select {
		case d := <-c.work:
			c.attempt(c.ctx, d)
		case <-c.ctx.Done():
			return
		}
	}
}

// attempt POSTs one callback once and records the outcome: delivered, rescheduled, or given up.
func (c *callbacks) attempt(parent context.Context, d *delivery) {
	c.mu.Lock()
	if d.gen != c.gen {
		c.mu.Unlock()
		return
	}
	cfg := c.cfg
	client := c.client
	target, signURL := cfg.URL, cfg.SigningURL
	if signURL == "" {
		signURL = target
	}
	if target == "" {
		c.stats.Skipped++
		c.finishLocked(d, "skipped")
		c.mu.Unlock()
		return
	}
	d.attempt++
	cb := d.log
	sig := CallbackSignature(d.msg.token, signURL, cb.Params)
	cb.URL, cb.Signature, cb.Attempts, cb.SentAt = target, sig, d.attempt, time.Now()
	body := cb.Params.Encode()
	idem := cb.IdempotencyToken
	c.stats.Attempts++
	if d.attempt > 1 {
		c.stats.Retries++
	}
	c.mu.Unlock()

	status, err := c.post(parent, client, cfg.Timeout, target, body, sig, idem)

	c.mu.Lock()
	defer c.mu.Unlock()
	if d.gen != c.gen {
		return
	}
	cb.StatusCode = status
	cb.Error = ""
	if err != nil {
		cb.Error = err.Error()
	}
	c.stats.Answers[status]++
	c.logger.Info("proxytest callback",
		zap.String("interaction_sid", d.msg.ki), zap.String("status", cb.Status),
		zap.Int("attempt", d.attempt), zap.Int("answer", status), zap.Bool("duplicate", cb.Duplicate))
	switch {
	case status >= 200 && status <= 299:
		c.stats.Delivered++
		c.finishLocked(d, "delivered")
	case d.attempt >= cfg.Attempts || c.ctx.Err() != nil:
		c.stats.Failed++
		c.finishLocked(d, "failed")
	default:
		d.due = time.Now().Add(cfg.RetryBackoff << (d.attempt - 1))
		c.pushLocked(d)
	}
}

// post sends one callback; it returns the answer's status (0 when none) and the transport
// error, whose text never holds the URL's query.
func (c *callbacks) post(parent context.Context, client *http.Client, timeout time.Duration, target, body, sig, idem string) (int, error) {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	// A POST made in a create handler has the request's context: Close must end it too.
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(body))
	if err != nil {
		return 0, errors.New("invalid callback URL")
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", sig)
	req.Header.Set("I-Twilio-Idempotency-Token", idem)
	req.Header.Set("User-Agent", "TwilioProxy/1.1")
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// callbackToken finds the Auth Token that signs the account's callbacks (see
// CallbackConfig.AuthTokens); "" when none is known.
func (f *Fake) callbackToken(cfg CallbackConfig, r *http.Request, accountSID string) string {
	if t := cfg.AuthTokens[accountSID]; t != "" {
		return t
	}
	if cfg.AuthToken != "" {
		return cfg.AuthToken
	}
	if t := f.cfg.Credentials[accountSID]; t != "" {
		return t
	}
	if user, secret, ok := r.BasicAuth(); ok && user == accountSID {
		return secret
	}
	return ""
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
