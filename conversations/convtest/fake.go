package convtest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/proxyq/proxyq/proxyclient/proxytest"
)

// Fault is a failure served instead of a normal create answer: the Proxy fake's kinds, so
// chaos and dev configurations name faults the same way for both APIs (429, 429-retry-after,
// 503, 500-before-create, 500-after-create, 502-after-create, 504-after-create,
// reset-after-create, hang-after-create).
type Fault = proxytest.Fault

// DefaultHangLimit bounds a hang-after-create when no client deadline or Close ends it.
const DefaultHangLimit = 2 * time.Minute

// Config configures a Fake. The zero value is valid: any well-formed AC/SK user with a
// non-empty secret is accepted, messages stay "sent", no callbacks.
type Config struct {
	// Credentials maps a Basic-auth user (AC… or SK…) to its secret. Nil accepts any
	// well-formed user with a non-empty secret.
	Credentials map[string]string
	// AccountSID is reported as account_sid for API-key users (an AC user is its own account).
	// Default "AC" + 32 zeros.
	AccountSID string
	// Seed seeds the RNG that draws random faults (SetFaultRates), so a seed gives one sequence.
	Seed uint64
	// HangLimit bounds hang-after-create (then 504 with a gateway's HTML). Default 2m.
	HangLimit time.Duration
	// Delivery simulates what happens to each message's SMS and posts onDeliveryUpdated.
	Delivery DeliveryConfig
	// MaxConcurrentPerAccount is Twilio's per-account concurrency limit: a request beyond it is
	// answered 429 code 20429 at once and not processed. 0 means no limit.
	MaxConcurrentPerAccount int
}

// Fake is an in-process fake of the Conversations v1 message endpoints. Use NewServer, or
// Mount it in your own server. Safe for concurrent use.
type Fake struct {
	cfg  Config
	done chan struct{}
	once sync.Once

	mu      sync.Mutex
	rng     *mrand.Rand
	queue   []Fault
	rates   map[Fault]float64
	convs   map[convKey]*conversation
	bySID   map[string]*Message
	closed  map[convKey]bool
	unknown map[convKey]bool
	stats   Stats
	plans   []Outcome
	active  map[string]int // requests in progress per account
	pending sync.WaitGroup // delivery goroutines
	cbs     []Callback
}

type convKey struct{ account, service, sid string }

type conversation struct{ messages []*Message }

// Message is a message as the Fake stores it (tests read Body and WebhookEnabled here; the
// client never decodes bodies).
type Message struct {
	SID, AccountSID, ServiceSID, ConversationSID string
	Index                                        int64
	Author, Body, Attributes, MediaSID           string
	ContentSID, ContentVariables                 string
	// WebhookEnabled is the X-Twilio-Webhook-Enabled header as sent ("" when absent).
	WebhookEnabled string
	DateCreated    time.Time
	Receipts       []*Receipt

	signingToken string // the Auth Token an AC user created it with: signs its webhooks
}

// Receipt is one recipient's delivery receipt.
type Receipt struct {
	SID, ParticipantSID, ChannelMessageSID, Status string
	ErrorCode                                      int
	DateCreated, DateUpdated                       time.Time
}

// Stats counts what the Fake did.
type Stats struct {
	Creates int            // messages stored (including those answered with an after-create fault)
	Faults  map[string]int // faults served, by name
	Lists   int            // list pages served (messages and receipts)
	Fetches int
}

// New returns a Fake. It returns an error for an invalid Config.
func New(cfg Config) (*Fake, error) {
	if cfg.AccountSID == "" {
		cfg.AccountSID = "AC" + strings.Repeat("0", 32)
	}
	if cfg.HangLimit == 0 {
		cfg.HangLimit = DefaultHangLimit
	}
	if err := cfg.Delivery.validate(); err != nil {
		return nil, err
	}
	cfg.Delivery = cfg.Delivery.withDefaults()
	return &Fake{cfg: cfg, done: make(chan struct{}),
		rng:   mrand.New(mrand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		convs: map[convKey]*conversation{}, bySID: map[string]*Message{},
		closed: map[convKey]bool{}, unknown: map[convKey]bool{}, active: map[string]int{},
		stats: Stats{Faults: map[string]int{}}}, nil
}

// Close ends hangs and delivery simulations and waits for the latter.
func (f *Fake) Close() {
	f.once.Do(func() { close(f.done) })
	f.pending.Wait()
}

// Inject queues n faults of kind for the next creates that would succeed (FIFO, before the
// random rates). Requests refused for another reason do not consume faults.
func (f *Fake) Inject(kind Fault, n int) error {
	if !kind.Valid() {
		return fmt.Errorf("%w: %d", proxytest.ErrUnknownFault, int(kind))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.queue = append(f.queue, kind)
	}
	return nil
}

// SetFaultRates sets the probability of each fault kind for creates that find the queue
// empty (seeded by Config.Seed). Rates must be in [0,1] and sum to at most 1.
func (f *Fake) SetFaultRates(rates map[Fault]float64) error {
	var sum float64
	cp := map[Fault]float64{}
	for k, r := range rates {
		if !k.Valid() {
			return fmt.Errorf("%w: %d", proxytest.ErrUnknownFault, int(k))
		}
		if math.IsNaN(r) || r < 0 || r > 1 {
			return fmt.Errorf("%w: %s has rate %v, want 0..1", proxytest.ErrInvalidFaultRate, k, r)
		}
		sum += r
		cp[k] = r
	}
	if sum > 1+1e-9 {
		return fmt.Errorf("%w: rates sum to %v, want at most 1", proxytest.ErrInvalidFaultRate, sum)
	}
	f.mu.Lock()
	f.rates = cp
	f.mu.Unlock()
	return nil
}

func (f *Fake) nextFault() Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	var k Fault
	if len(f.queue) > 0 {
		k, f.queue = f.queue[0], f.queue[1:]
	} else if len(f.rates) > 0 {
		u, cum := f.rng.Float64(), 0.0
		for _, kind := range proxytest.Faults() {
			if cum += f.rates[kind]; u < cum {
				k = kind
				break
			}
		}
	}
	if k != 0 {
		f.stats.Faults[k.String()]++
	}
	return k
}

// CloseConversation makes creates in the conversation answer 400 with code 50377
// (conversation closed). serviceSID "" is the default Service.
func (f *Fake) CloseConversation(account, serviceSID, conversationSID string) {
	f.mu.Lock()
	f.closed[convKey{account, serviceSID, conversationSID}] = true
	f.mu.Unlock()
}

// MarkConversationUnknown makes every request on the conversation answer 404 code 20404.
func (f *Fake) MarkConversationUnknown(account, serviceSID, conversationSID string) {
	f.mu.Lock()
	f.unknown[convKey{account, serviceSID, conversationSID}] = true
	f.mu.Unlock()
}

// Messages returns copies of the conversation's stored messages, oldest first.
func (f *Fake) Messages(account, serviceSID, conversationSID string) []Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.convs[convKey{account, serviceSID, conversationSID}]
	if c == nil {
		return nil
	}
	out := make([]Message, len(c.messages))
	for i, m := range c.messages {
		out[i] = m.copyLocked()
	}
	return out
}

// Message returns a copy of the message with the given SID.
func (f *Fake) Message(sid string) (Message, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.bySID[sid]
	if !ok {
		return Message{}, false
	}
	return m.copyLocked(), true
}

func (m *Message) copyLocked() Message {
	c := *m
	c.Receipts = make([]*Receipt, len(m.Receipts))
	for i, r := range m.Receipts {
		rc := *r
		c.Receipts[i] = &rc
	}
	return c
}

// Stats returns the counters.
func (f *Fake) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.stats
	s.Faults = map[string]int{}
	for k, v := range f.stats.Faults {
		s.Faults[k] = v
	}
	return s
}

// Mount serves the Fake under prefix (e.g. "/twilio"); other paths get Twilio's 404.
func (f *Fake) Mount(prefix string) http.Handler {
	prefix = strings.TrimRight(prefix, "/")
	if prefix != "" && !strings.HasPrefix(prefix, "/") {
		prefix = "/" + prefix
	}
	if prefix == "" {
		return f
	}
	strip := http.StripPrefix(prefix, f)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, prefix+"/") {
			r = r.WithContext(withPrefix(r.Context(), prefix))
			strip.ServeHTTP(w, r)
			return
		}
		writeError(w, http.StatusNotFound, 20404, "The requested resource "+r.URL.Path+" was not found")
	})
}

// route is a parsed API path.
type route struct {
	service, conversation, message string
	receipts                       bool
}

// parseRoute reads /v1/[Services/{IS}/]Conversations/{CH}/Messages[/{IM}[/Receipts]].
func parseRoute(path string) (route, bool) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	var rt route
	if len(parts) < 1 || parts[0] != "v1" {
		return rt, false
	}
	parts = parts[1:]
	if len(parts) >= 2 && parts[0] == "Services" {
		if !validSID("IS", parts[1]) {
			return rt, false
		}
		rt.service, parts = parts[1], parts[2:]
	}
	if len(parts) < 3 || parts[0] != "Conversations" || !validSID("CH", parts[1]) || parts[2] != "Messages" {
		return rt, false
	}
	rt.conversation, parts = parts[1], parts[3:]
	switch {
	case len(parts) == 0:
	case len(parts) >= 1 && validSID("IM", parts[0]) && len(parts) <= 2:
		rt.message = parts[0]
		if len(parts) == 2 {
			if parts[1] != "Receipts" {
				return rt, false
			}
			rt.receipts = true
		}
	default:
		return rt, false
	}
	return rt, true
}

// ServeHTTP implements http.Handler.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Twilio-Request-Id", newSID("RQ"))
	rt, ok := parseRoute(r.URL.Path)
	if !ok {
		writeError(w, http.StatusNotFound, 20404, "The requested resource "+r.URL.Path+" was not found")
		return
	}
	account, ok := f.authenticate(r)
	if !ok {
		writeError(w, http.StatusUnauthorized, 20003, "Authenticate")
		return
	}
	key := convKey{account, rt.service, rt.conversation}
	f.mu.Lock()
	unknown, closed := f.unknown[key], f.closed[key]
	if limit := f.cfg.MaxConcurrentPerAccount; limit > 0 && f.active[account] >= limit {
		f.stats.Faults["concurrency-limit"]++
		f.mu.Unlock()
		writeError(w, http.StatusTooManyRequests, 20429, "Too Many Requests")
		return
	}
	f.active[account]++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.active[account]--
		f.mu.Unlock()
	}()
	if unknown {
		writeError(w, http.StatusNotFound, 20404, "The requested resource "+r.URL.Path+" was not found")
		return
	}
	switch {
	case r.Method == http.MethodPost && rt.message == "":
		if closed {
			writeError(w, http.StatusBadRequest, 50377, "Can't update conversation as it's in final closed state")
			return
		}
		f.create(w, r, key)
	case r.Method == http.MethodGet && rt.message == "":
		f.listMessages(w, r, key)
	case r.Method == http.MethodGet && rt.receipts:
		f.listReceipts(w, r, key, rt.message)
	case r.Method == http.MethodGet:
		f.fetch(w, r, key, rt.message)
	default:
		writeError(w, http.StatusMethodNotAllowed, 20004, "Method not allowed")
	}
}

func (f *Fake) authenticate(r *http.Request) (string, bool) {
	user, secret, ok := r.BasicAuth()
	if !ok || secret == "" || !(validSID("AC", user) || validSID("SK", user)) {
		return "", false
	}
	if f.cfg.Credentials != nil && f.cfg.Credentials[user] != secret {
		return "", false
	}
	if validSID("AC", user) {
		return user, true
	}
	return f.cfg.AccountSID, true
}

// createParams are the form fields Twilio's description lists for a message create.
var createParams = map[string]bool{"Author": true, "Body": true, "DateCreated": true, "DateUpdated": true,
	"Attributes": true, "MediaSid": true, "ContentSid": true, "ContentVariables": true, "Subject": true}

func (f *Fake) create(w http.ResponseWriter, r *http.Request, key convKey) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		writeError(w, http.StatusBadRequest, 20001, "Content-Type must be application/x-www-form-urlencoded")
		return
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, 20001, "Invalid form")
		return
	}
	form := r.PostForm
	for k, vs := range form {
		// Unknown or repeated parameters are refused: Twilio would ignore or take one, and a
		// client that relies on either is wrong.
		if !createParams[k] || len(vs) != 1 {
			writeError(w, http.StatusBadRequest, 20001, "Invalid parameter: "+k)
			return
		}
	}
	m := &Message{Author: form.Get("Author"), Body: form.Get("Body"), Attributes: form.Get("Attributes"),
		MediaSID: form.Get("MediaSid"), ContentSID: form.Get("ContentSid"), ContentVariables: form.Get("ContentVariables"),
		WebhookEnabled: r.Header.Get("X-Twilio-Webhook-Enabled")}
	switch {
	case m.WebhookEnabled != "" && m.WebhookEnabled != "true" && m.WebhookEnabled != "false":
		writeError(w, http.StatusBadRequest, 20001, "X-Twilio-Webhook-Enabled must be true or false")
		return
	case m.MediaSID != "" && !validSID("ME", m.MediaSID):
		writeError(w, http.StatusBadRequest, 20001, "Invalid MediaSid")
		return
	case m.ContentSID != "" && !validSID("HX", m.ContentSID):
		writeError(w, http.StatusBadRequest, 20001, "Invalid ContentSid")
		return
	case m.Attributes != "" && !json.Valid([]byte(m.Attributes)):
		writeError(w, http.StatusBadRequest, 20001, "Attributes must be valid JSON")
		return
	case m.ContentVariables != "" && !json.Valid([]byte(m.ContentVariables)):
		writeError(w, http.StatusBadRequest, 20001, "ContentVariables must be valid JSON")
		return
	case utf8.RuneCountInString(m.Body) > 1600:
		writeError(w, http.StatusBadRequest, 20001, "Body must be at most 1600 characters")
		return
	case m.Body == "" && m.MediaSID == "" && m.ContentSID == "":
		writeError(w, http.StatusBadRequest, 20001, "Body, MediaSid or ContentSid is required")
		return
	}
	if m.Author == "" {
		m.Author = "system"
	}
	if m.Attributes == "" {
		m.Attributes = "{}"
	}
	fault := f.nextFault()
	switch fault {
	case proxytest.Fault429:
		writeError(w, http.StatusTooManyRequests, 20429, "Too Many Requests")
		return
	case proxytest.Fault429RetryAfter:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, 20429, "Too Many Requests")
		return
	case proxytest.Fault503:
		writeError(w, http.StatusServiceUnavailable, 20503, "Service unavailable")
		return
	case proxytest.Fault500BeforeCreate:
		writeError(w, http.StatusInternalServerError, 20500, "Internal Server Error")
		return
	}
	if u, secret, _ := r.BasicAuth(); validSID("AC", u) {
		m.signingToken = secret
	}
	f.store(key, m)
	switch fault {
	case proxytest.Fault500AfterCreate:
		writeError(w, http.StatusInternalServerError, 20500, "Internal Server Error")
	case proxytest.Fault502AfterCreate:
		writeGatewayHTML(w, http.StatusBadGateway)
	case proxytest.Fault504AfterCreate:
		writeGatewayHTML(w, http.StatusGatewayTimeout)
	case proxytest.FaultResetAfterCreate:
		resetConnection(w)
	case proxytest.FaultHangAfterCreate:
		t := time.NewTimer(f.cfg.HangLimit)
		defer t.Stop()
		select {
		case <-r.Context().Done():
		case <-f.done:
			writeError(w, http.StatusServiceUnavailable, 20503, "Service unavailable")
		case <-t.C:
			writeGatewayHTML(w, http.StatusGatewayTimeout)
		}
	default:
		f.mu.Lock()
		body := f.renderLocked(r, m)
		f.mu.Unlock()
		writeJSON(w, http.StatusCreated, body)
	}
}

// store adds m to its conversation, with one receipt per recipient, and starts its delivery.
func (f *Fake) store(key convKey, m *Message) {
	now := time.Now().UTC().Truncate(time.Second)
	f.mu.Lock()
	c := f.convs[key]
	if c == nil {
		c = &conversation{}
		f.convs[key] = c
	}
	m.SID, m.AccountSID, m.ServiceSID, m.ConversationSID = newSID("IM"), key.account, key.service, key.sid
	m.Index, m.DateCreated = int64(len(c.messages)), now
	for range f.cfg.Delivery.Recipients {
		m.Receipts = append(m.Receipts, &Receipt{SID: newSID("DY"), ParticipantSID: newSID("MB"),
			ChannelMessageSID: newSID("SM"), Status: "sent", DateCreated: now, DateUpdated: now})
	}
	c.messages = append(c.messages, m)
	f.bySID[m.SID] = m
	f.stats.Creates++
	outcome := f.nextOutcomeLocked()
	f.mu.Unlock()
	f.startDelivery(m, outcome)
}

func (f *Fake) fetch(w http.ResponseWriter, r *http.Request, key convKey, sid string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats.Fetches++
	m, ok := f.bySID[sid]
	if !ok || m.AccountSID != key.account || m.ServiceSID != key.service || m.ConversationSID != key.sid {
		writeError(w, http.StatusNotFound, 20404, "The requested resource "+r.URL.Path+" was not found")
		return
	}
	writeJSON(w, http.StatusOK, f.renderLocked(r, m))
}

// pageQuery reads PageSize (1..max, default 50), Page and PageToken. The token is opaque to
// clients: here it is the offset of the page's first item, encoded.
func pageQuery(q url.Values, max int) (size, page, offset int, err error) {
	size, page = 50, 0
	if v := q.Get("PageSize"); v != "" {
		if size, err = strconv.Atoi(v); err != nil || size < 1 || size > max {
			return 0, 0, 0, fmt.Errorf("PageSize must be between 1 and %d", max)
		}
	}
	if v := q.Get("Page"); v != "" {
		if page, err = strconv.Atoi(v); err != nil || page < 0 {
			return 0, 0, 0, errors.New("Page must be a non-negative integer")
		}
	}
	if v := q.Get("PageToken"); v != "" {
		raw, derr := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(v, "PT"))
		if derr != nil || !strings.HasPrefix(v, "PT") {
			return 0, 0, 0, errors.New("Invalid PageToken")
		}
		if offset, err = strconv.Atoi(string(raw)); err != nil || offset < 0 {
			return 0, 0, 0, errors.New("Invalid PageToken")
		}
	} else if page > 0 {
		return 0, 0, 0, errors.New("Page needs the PageToken of that page")
	}
	return size, page, offset, nil
}

func pageToken(offset int) string {
	return "PT" + base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(offset)))
}

func (f *Fake) listMessages(w http.ResponseWriter, r *http.Request, key convKey) {
	q := r.URL.Query()
	order := strings.ToLower(q.Get("Order"))
	if order == "" {
		order = "asc"
	}
	if order != "asc" && order != "desc" {
		writeError(w, http.StatusBadRequest, 20001, "Order must be asc or desc")
		return
	}
	size, page, offset, err := pageQuery(q, 100)
	if err != nil {
		writeError(w, http.StatusBadRequest, 20001, err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats.Lists++
	var all []*Message
	if c := f.convs[key]; c != nil {
		all = append(all, c.messages...)
	}
	if order == "desc" {
		for i, j := 0, len(all)-1; i < j; i, j = i+1, j-1 {
			all[i], all[j] = all[j], all[i]
		}
	}
	items := []any{}
	end := min(offset+size, len(all))
	for _, m := range all[min(offset, len(all)):end] {
		items = append(items, f.renderLocked(r, m))
	}
	extra := url.Values{"Order": {order}}
	writeJSON(w, http.StatusOK, map[string]any{"messages": items,
		"meta": meta(r, "messages", size, page, offset, end < len(all), extra)})
}

func (f *Fake) listReceipts(w http.ResponseWriter, r *http.Request, key convKey, sid string) {
	size, page, offset, err := pageQuery(r.URL.Query(), 50)
	if err != nil {
		writeError(w, http.StatusBadRequest, 20001, err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats.Lists++
	m, ok := f.bySID[sid]
	if !ok || m.AccountSID != key.account || m.ServiceSID != key.service || m.ConversationSID != key.sid {
		writeError(w, http.StatusNotFound, 20404, "The requested resource "+r.URL.Path+" was not found")
		return
	}
	items := []any{}
	end := min(offset+size, len(m.Receipts))
	for _, rc := range m.Receipts[min(offset, len(m.Receipts)):end] {
		items = append(items, renderReceipt(r, m, rc))
	}
	writeJSON(w, http.StatusOK, map[string]any{"delivery_receipts": items,
		"meta": meta(r, "delivery_receipts", size, page, offset, end < len(m.Receipts), nil)})
}

// meta is Twilio's list envelope with absolute page URLs; next_page_url is null on the last page.
func meta(r *http.Request, key string, size, page, offset int, more bool, extra url.Values) map[string]any {
	pageURL := func(p, off int) string {
		q := url.Values{"PageSize": {strconv.Itoa(size)}, "Page": {strconv.Itoa(p)}}
		for k, v := range extra {
			q[k] = v
		}
		if p > 0 {
			q.Set("PageToken", pageToken(off))
		}
		return absURL(r, r.URL.Path) + "?" + q.Encode()
	}
	m := map[string]any{"page": page, "page_size": size, "first_page_url": pageURL(0, 0),
		"url": pageURL(page, offset), "next_page_url": nil, "previous_page_url": nil, "key": key}
	if more {
		m["next_page_url"] = pageURL(page+1, offset+size)
	}
	if page > 0 {
		m["previous_page_url"] = pageURL(page-1, max(offset-size, 0))
	}
	return m
}

// renderLocked is the Message JSON Twilio returns (f.mu held).
func (f *Fake) renderLocked(r *http.Request, m *Message) map[string]any {
	base := "/v1/Conversations/" + m.ConversationSID + "/Messages/" + m.SID
	if m.ServiceSID != "" {
		base = "/v1/Services/" + m.ServiceSID + base[len("/v1"):]
	}
	out := map[string]any{
		"sid": m.SID, "account_sid": m.AccountSID, "conversation_sid": m.ConversationSID,
		"index": m.Index, "author": m.Author, "body": nullable(m.Body), "media": nil,
		"attributes": m.Attributes, "participant_sid": nil, "content_sid": nullable(m.ContentSID),
		"date_created": m.DateCreated.Format(time.RFC3339), "date_updated": m.DateCreated.Format(time.RFC3339),
		"delivery": deliverySummary(m.Receipts), "url": absURL(r, base),
		"links": map[string]string{"delivery_receipts": absURL(r, base+"/Receipts"), "channel_metadata": absURL(r, base+"/ChannelMetadata")},
	}
	if m.ServiceSID != "" {
		out["chat_service_sid"] = m.ServiceSID
	}
	if m.MediaSID != "" {
		out["media"] = []map[string]any{{"sid": m.MediaSID, "size": 42056, "content_type": "image/jpeg", "filename": "media.jpg"}}
	}
	return out
}

// deliverySummary aggregates receipts as Twilio's delivery object does: each status is "all",
// "some" or "none" of the recipients (a delivered or read one also counts as sent).
func deliverySummary(rs []*Receipt) any {
	if len(rs) == 0 {
		return nil
	}
	count := func(ok func(string) bool) string {
		n := 0
		for _, r := range rs {
			if ok(r.Status) {
				n++
			}
		}
		switch n {
		case 0:
			return "none"
		case len(rs):
			return "all"
		}
		return "some"
	}
	is := func(ss ...string) func(string) bool {
		return func(s string) bool {
			for _, x := range ss {
				if s == x {
					return true
				}
			}
			return false
		}
	}
	return map[string]any{"total": len(rs), "sent": count(is("sent", "delivered", "read")),
		"delivered": count(is("delivered", "read")), "read": count(is("read")),
		"failed": count(is("failed")), "undelivered": count(is("undelivered"))}
}

func renderReceipt(r *http.Request, m *Message, rc *Receipt) map[string]any {
	out := map[string]any{"sid": rc.SID, "account_sid": m.AccountSID, "conversation_sid": m.ConversationSID,
		"message_sid": m.SID, "channel_message_sid": rc.ChannelMessageSID, "participant_sid": rc.ParticipantSID,
		"status": rc.Status, "error_code": nil,
		"date_created": rc.DateCreated.Format(time.RFC3339), "date_updated": rc.DateUpdated.Format(time.RFC3339),
		"url": absURL(r, r.URL.Path+"/"+rc.SID)}
	if rc.ErrorCode != 0 {
		out["error_code"] = rc.ErrorCode
	}
	if m.ServiceSID != "" {
		out["chat_service_sid"] = m.ServiceSID
	}
	return out
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes Twilio's error document.
func writeError(w http.ResponseWriter, status, code int, msg string) {
	writeJSON(w, status, map[string]any{"code": code, "message": msg,
		"more_info": "https://www.twilio.com/docs/errors/" + strconv.Itoa(code), "status": status})
}

func writeGatewayHTML(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<html><head><title>%d %s</title></head><body><center><h1>%d %s</h1></center></body></html>",
		status, http.StatusText(status), status, http.StatusText(status))
}

// resetConnection drops the connection with SO_LINGER 0: the client sees a reset, no answer.
func resetConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	raw := conn
	if nc, ok := conn.(interface{ NetConn() net.Conn }); ok {
		raw = nc.NetConn()
	}
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = raw.Close()
}

func validSID(prefix, s string) bool {
	if len(s) != 34 || s[:2] != prefix {
		return false
	}
	_, err := hex.DecodeString(s[2:])
	return err == nil
}

func newSID(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}
