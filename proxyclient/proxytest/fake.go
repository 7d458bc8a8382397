package proxytest

import (
	"cmp"
	"crypto/subtle"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// maxFormBytes bounds a create request's body; far above anything Twilio would accept.
const maxFormBytes = 1 << 20

// toolPrefix is the path of the Fake's own read-only endpoints, outside Twilio's /v1.
const toolPrefix = "/_proxytest/"

// Fake is an in-process fake of Twilio Proxy v1's message-interaction API. It is an
// http.Handler serving paths relative to where it is mounted ("/v1/Services/…"); mount it
// under a prefix with Mount or http.StripPrefix and it still builds correct absolute URLs,
// because it recovers the prefix from the request line. Safe for concurrent use.
type Fake struct {
	cfg  Config
	log  *zap.Logger
	done chan struct{} // closed by Close: ends latency and hangs
	once sync.Once

	mu                  sync.Mutex
	latency             time.Duration
	queue               []Fault
	rates               map[Fault]float64
	rng                 *rand.Rand
	records             []*record // creation order
	seq                 uint64    // creation number of the last record, for ListShuffled
	byBody              map[string]int
	inFlight            map[string]int // not cleared by Reset: those requests are still running
	maxSeen             map[string]int
	unknownParticipants map[string]bool
	closedSessions      map[string]bool
	stats               counters
	windows             atomic.Pointer[serviceWindows]    // per-Service limits (limits.go); nil: none
	creds               atomic.Pointer[map[string]string] // SetCredentials; nil: cfg.Credentials

	cb *callbacks // message delivery and status callbacks (callbacks.go); own mutex
}

// New returns a Fake configured by cfg (defaults applied). It panics with a *ConfigError if
// cfg.Validate fails: a fake with a broken configuration is a bug in the test that made it.
// Callers building cfg from user input (proxyq sandbox) should call cfg.Validate first.
func New(cfg Config) *Fake {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	cfg = cfg.WithDefaults()
	cfg.Credentials = maps.Clone(cfg.Credentials) // later edits by the caller must not race with requests
	f := &Fake{
		cfg:      cfg,
		log:      cfg.Logger,
		done:     make(chan struct{}),
		inFlight: make(map[string]int),
	}
	if f.log == nil {
		f.log = zap.NewNop()
	}
	f.cb = newCallbacks(cfg.Callbacks, cfg.Seed, f.log)
	f.resetLocked()
	if cfg.ServiceLimits.Rate > 0 || len(cfg.ServiceLimits.Services) > 0 {
		f.SetServiceLimits(cfg.ServiceLimits)
	}
	return f
}

func newRNG(seed int64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
}

// Close ends every latency wait and hang in progress (they answer 503) and makes later API
// requests answer 503. It does not close any listener (Server.Close does). Safe to call twice.
func (f *Fake) Close() {
	f.once.Do(func() { close(f.done) })
	f.cb.stop()
}

func (f *Fake) closed() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// Mount returns a handler serving the Fake under prefix (e.g. "/twilio"): paths below it go
// to the Fake with the prefix stripped; any other path gets Twilio's 404 JSON. An empty
// prefix returns the Fake itself. A missing leading slash is added, a trailing one dropped.
func (f *Fake) Mount(prefix string) http.Handler {
	prefix = cleanPrefix(prefix)
	if prefix == "" {
		return f
	}
	strip := http.StripPrefix(prefix, f)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, prefix+"/") {
			strip.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Twilio-Request-Id", newSID("RQ"))
		notFound(w, r.URL.Path)
	})
}

func cleanPrefix(p string) string {
	p = strings.TrimRight(p, "/")
	if p != "" && !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return p
}

// exchange is one request's state, read by the log line.
type exchange struct {
	w       *statusWriter
	r       *http.Request
	id      string
	account string
	fault   string // fault served, "concurrency-limit", or "client-gone"
}

// ServeHTTP implements http.Handler.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	x := &exchange{w: &statusWriter{ResponseWriter: w}, r: r, id: newSID("RQ")}
	x.w.Header().Set("Twilio-Request-Id", x.id)
	// Deferred so that the line is written even when a reset fault aborts the handler.
	defer func() {
		f.log.Info("proxytest request",
			zap.String("method", r.Method),
			zap.String("path", r.URL.Path),
			zap.Int("status", x.w.status),
			zap.String("fault", x.fault),
			zap.String("account", x.account),
			zap.String("request_id", x.id),
			zap.Duration("duration", time.Since(start)))
	}()
	if strings.HasPrefix(r.URL.Path, toolPrefix) {
		f.serveTool(x)
		return
	}
	f.serveAPI(x)
}

type account struct {
	user string // Basic-auth user: the key for per-account accounting
	sid  string // AC… reported as account_sid; scopes what the user can read
}

func (f *Fake) serveAPI(x *exchange) {
	f.mu.Lock()
	f.stats.requests++
	f.mu.Unlock()

	if f.closed() {
		unavailable(x.w)
		return
	}
	acct, ok := f.authenticate(x.r)
	if !ok {
		x.w.Header().Set("WWW-Authenticate", `Basic realm="Twilio API"`)
		writeJSON(x.w, http.StatusUnauthorized, errorJSON{
			Code:     codeAuthenticate,
			Message:  "Authenticate",
			MoreInfo: "https://www.twilio.com/docs/errors/20003",
			Status:   http.StatusUnauthorized,
			Detail:   "Your AccountSid or AuthToken was incorrect.",
		})
		return
	}
	x.account = acct.user

	release, ok := f.enter(acct.user)
	if !ok {
		x.fault = "concurrency-limit"
		writeError(x.w, http.StatusTooManyRequests, codeTooManyRequests, "Too Many Requests")
		return
	}
	defer release()

	if x.r.Method == http.MethodPost {
		// Read the form now: only once the body is consumed does net/http notice a client
		// that hangs up, which latency and hangs rely on to end.
		x.r.Body = http.MaxBytesReader(x.w, x.r.Body, maxFormBytes)
		if err := x.r.ParseForm(); err != nil {
			writeError(x.w, http.StatusBadRequest, codeInvalidParameter, "Unable to parse the request body")
			return
		}
	}

	if rt, ok := parseRoute(x.r.URL.Path); ok && f.serviceLimited(x, rt, acct) {
		return
	}

	f.mu.Lock()
	latency := f.latency
	f.mu.Unlock()
	if !f.wait(x, latency) {
		return
	}

	if ac, sm, ok := parseMessageRoute(x.r.URL.Path); ok {
		f.serveMessage(x, acct, ac, sm)
		return
	}
	rt, ok := parseRoute(x.r.URL.Path)
	if !ok {
		notFound(x.w, x.r.URL.Path)
		return
	}
	if rt.participant != "" && f.participantUnknown(rt.participant) {
		notFound(x.w, x.r.URL.Path)
		return
	}
	switch {
	case rt.kind == routeMessages && x.r.Method == http.MethodPost:
		f.create(x, rt, acct)
	case x.r.Method != http.MethodGet && x.r.Method != http.MethodHead:
		allow := "GET"
		if rt.kind == routeMessages {
			allow = "GET, POST"
		}
		x.w.Header().Set("Allow", allow)
		writeError(x.w, http.StatusMethodNotAllowed, codeMethodNotAllowed, "Method not allowed")
	case rt.interaction != "":
		f.fetch(x, rt, acct)
	default:
		f.list(x, rt, acct)
	}
}

func (f *Fake) authenticate(r *http.Request) (account, bool) {
	user, secret, ok := r.BasicAuth()
	if !ok || user == "" || secret == "" {
		return account{}, false
	}
	if creds := f.credentials(); creds != nil {
		want, found := creds[user]
		if !found || subtle.ConstantTimeCompare([]byte(want), []byte(secret)) != 1 {
			return account{}, false
		}
	} else if !isSID(user, "AC") && !isSID(user, "SK") {
		return account{}, false
	}
	a := account{user: user, sid: user}
	if !isSID(user, "AC") {
		a.sid = derivedAccountSID(user)
	}
	return a, true
}

// enter admits one request of the account, or reports false when that would exceed
// MaxConcurrentPerAccount (the request is then counted as a 429).
func (f *Fake) enter(user string) (release func(), ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.inFlight[user] + 1
	if limit := f.concurrencyLimit(user); limit > 0 && n > limit {
		f.stats.tooMany++
		f.stats.concurrency++
		return nil, false
	}
	f.inFlight[user] = n
	if n > f.maxSeen[user] {
		f.maxSeen[user] = n
	}
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.inFlight[user]--; f.inFlight[user] <= 0 {
			delete(f.inFlight, user)
		}
	}, true
}

// wait sleeps d unless the client goes away (nothing is written) or the Fake is closed (503).
// It reports whether the request should go on.
func (f *Fake) wait(x *exchange, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-x.r.Context().Done():
		x.fault = "client-gone"
		return false
	case <-f.done:
		unavailable(x.w)
		return false
	}
}

func (f *Fake) participantUnknown(kp string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.unknownParticipants[kp]
}

func (f *Fake) sessionClosed(kc string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closedSessions[kc]
}

func (f *Fake) create(x *exchange, rt route, acct account) {
	if f.sessionClosed(rt.session) {
		writeError(x.w, http.StatusBadRequest, codeSessionClosed, "Session is closed")
		return
	}
	body := x.r.PostForm.Get("Body")
	var media []string
	for _, u := range x.r.PostForm["MediaUrl"] {
		if u != "" {
			media = append(media, u)
		}
	}
	if body == "" && len(media) == 0 {
		writeError(x.w, http.StatusBadRequest, codeBodyRequired, "Message body is required")
		return
	}

	fault := f.nextFault()
	if fault != 0 {
		x.fault = fault.String()
	}
	switch fault {
	case Fault429:
		writeError(x.w, http.StatusTooManyRequests, codeTooManyRequests, "Too Many Requests")
		return
	case Fault429RetryAfter:
		x.w.Header().Set("Retry-After", "1")
		writeError(x.w, http.StatusTooManyRequests, codeTooManyRequests, "Too Many Requests")
		return
	case Fault503:
		unavailable(x.w)
		return
	case Fault500BeforeCreate:
		internalError(x.w)
		return
	}

	rec := f.store(acct, rt, body, media)
	f.afterCreate(x, rec)
	switch fault {
	case Fault500AfterCreate:
		internalError(x.w)
	case Fault502AfterCreate:
		writeGatewayHTML(x.w, http.StatusBadGateway)
	case Fault504AfterCreate:
		writeGatewayHTML(x.w, http.StatusGatewayTimeout)
	case FaultResetAfterCreate:
		resetConnection(x.w)
	case FaultHangAfterCreate:
		f.hang(x)
	default:
		writeJSON(x.w, f.cfg.CreateStatus, f.render(x.r, rec, false))
	}
}

func (f *Fake) store(acct account, rt route, body string, media []string) *record {
	rec := &record{
		Interaction: Interaction{
			SID:                 newSID("KI"),
			Account:             acct.user,
			AccountSID:          acct.sid,
			Service:             rt.service,
			Session:             rt.session,
			Participant:         rt.participant,
			Body:                body,
			MediaURLs:           media,
			OutboundResourceSID: newSID("SM"),
			CreatedAt:           f.cfg.Now(),
		},
		data: string(marshal(dataJSON{Body: body, MediaURLs: media})),
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	rec.seq = f.seq
	f.records = append(f.records, rec)
	f.byBody[body]++
	f.stats.creates++
	return rec
}

// hang answers nothing until the client goes away, the Fake closes (503) or HangLimit
// passes (504 from the "load balancer").
func (f *Fake) hang(x *exchange) {
	t := time.NewTimer(f.cfg.HangLimit)
	defer t.Stop()
	select {
	case <-x.r.Context().Done():
	case <-f.done:
		unavailable(x.w)
	case <-t.C:
		writeGatewayHTML(x.w, http.StatusGatewayTimeout)
	}
}

// resetConnection drops the connection so the client sees a TCP reset and no response:
// SO_LINGER 0 makes close send RST instead of FIN.
func resetConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable (HTTP/2): aborting the handler still breaks the stream with no answer.
		panic(http.ErrAbortHandler)
	}
	raw := conn
	if nc, ok := conn.(interface{ NetConn() net.Conn }); ok { // TLS: skip close_notify
		raw = nc.NetConn()
	}
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = raw.Close()
}

func (f *Fake) fetch(x *exchange, rt route, acct account) {
	f.mu.Lock()
	var found *record
	for _, rec := range f.records {
		if rec.SID == rt.interaction {
			found = rec
			break
		}
	}
	f.mu.Unlock()
	if found == nil || !rt.matches(found, acct) {
		notFound(x.w, x.r.URL.Path)
		return
	}
	writeJSON(x.w, http.StatusOK, f.render(x.r, found, rt.participant == ""))
}

const (
	defaultPageSize = 50
	maxPageSize     = 1000
)

func (f *Fake) list(x *exchange, rt route, acct account) {
	q := x.r.URL.Query()
	size := defaultPageSize
	if s := q.Get("PageSize"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPageSize {
			writeError(x.w, http.StatusBadRequest, codeInvalidParameter, "PageSize must be an integer between 1 and 1000")
			return
		}
		size = n
	}
	page := 0
	if s := q.Get("Page"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			writeError(x.w, http.StatusBadRequest, codeInvalidParameter, "Page must be a non-negative integer")
			return
		}
		page = n
	}
	token := q.Get("PageToken")

	items := f.matching(rt, acct)
	index := func(sid string) int {
		return slices.IndexFunc(items, func(r *record) bool { return r.SID == sid })
	}
	var start, end int
	switch {
	case token == "":
		start = len(items)
		if page <= len(items)/size { // guards page*size against overflow
			start = min(page*size, len(items))
		}
		end = min(start+size, len(items))
	case strings.HasPrefix(token, "PA") && index(token[2:]) >= 0: // the page after this SID
		start = index(token[2:]) + 1
		end = min(start+size, len(items))
	case strings.HasPrefix(token, "PB") && index(token[2:]) >= 0: // the page before this SID
		end = index(token[2:])
		start = max(end-size, 0)
	default:
		writeError(x.w, http.StatusBadRequest, codeInvalidParameter, "Invalid PageToken")
		return
	}

	base := absBase(x.r) + x.r.URL.Path
	pageURL := func(p int, tok string) string {
		u := base + "?PageSize=" + strconv.Itoa(size) + "&Page=" + strconv.Itoa(p)
		if tok != "" {
			u += "&PageToken=" + url.QueryEscape(tok)
		}
		return u
	}
	out := listJSON{
		Interactions: make([]interactionJSON, 0, end-start),
		Meta: metaJSON{
			FirstPageURL: pageURL(0, ""),
			Key:          "interactions",
			Page:         page,
			PageSize:     size,
			URL:          pageURL(page, token),
		},
	}
	for _, rec := range items[start:end] {
		out.Interactions = append(out.Interactions, f.render(x.r, rec, rt.participant == ""))
	}
	if end < len(items) && end > start {
		next := pageURL(page+1, "PA"+items[end-1].SID)
		out.Meta.NextPageURL = &next
	}
	if start > 0 {
		prev := pageURL(max(page-1, 0), "")
		if start < len(items) {
			prev = pageURL(max(page-1, 0), "PB"+items[start].SID)
		}
		out.Meta.PreviousPageURL = &prev
	}
	writeJSON(x.w, http.StatusOK, out)
}

// matching returns the account's interactions under the route's parent, in ListOrder.
func (f *Fake) matching(rt route, acct account) []*record {
	f.mu.Lock()
	var items []*record
	for _, rec := range f.records {
		if rt.matches(rec, acct) {
			items = append(items, rec)
		}
	}
	f.mu.Unlock()
	switch f.cfg.ListOrder {
	case ListNewestFirst:
		slices.Reverse(items)
	case ListShuffled:
		// The key depends on the seed and the creation number only (SIDs are random), so a
		// seed and a sequence of creates always give the same order.
		key := func(r *record) uint64 { return splitmix64(uint64(f.cfg.Seed) ^ splitmix64(r.seq)) }
		slices.SortStableFunc(items, func(a, b *record) int {
			return cmp.Or(cmp.Compare(key(a), key(b)), cmp.Compare(a.seq, b.seq))
		})
	}
	return items
}

// splitmix64 is a bijective 64-bit mixer (Steele, Lea, Flood): neighbouring inputs give
// unrelated outputs, which is what a shuffle key needs.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// render builds the resource for rec. Session-level Interaction resources have no
// participant_sid and live at …/Sessions/{KC}/Interactions/{KI}.
func (f *Fake) render(r *http.Request, rec *record, sessionLevel bool) interactionJSON {
	created := formatTime(rec.CreatedAt)
	status, updated := f.cb.currentStatus(rec.SID, rec.CreatedAt)
	parent := absBase(r) + "/v1/Services/" + rec.Service + "/Sessions/" + rec.Session
	out := interactionJSON{
		SID:                    rec.SID,
		SessionSID:             rec.Session,
		ServiceSID:             rec.Service,
		AccountSID:             rec.AccountSID,
		Data:                   rec.data,
		Type:                   "message",
		OutboundParticipantSID: rec.Participant,
		OutboundResourceSID:    rec.OutboundResourceSID,
		OutboundResourceStatus: status,
		OutboundResourceType:   "Message",
		OutboundResourceURL: absBase(r) + "/2010-04-01/Accounts/" + rec.AccountSID +
			"/Messages/" + rec.OutboundResourceSID + ".json",
		DateCreated: created,
		DateUpdated: formatTime(updated),
	}
	if sessionLevel {
		out.URL = parent + "/Interactions/" + rec.SID
	} else {
		kp := rec.Participant
		out.ParticipantSID = &kp
		out.URL = parent + "/Participants/" + rec.Participant + "/MessageInteractions/" + rec.SID
	}
	return out
}

// absBase returns scheme://host plus the prefix the Fake is mounted under. The prefix is
// what the request line has before the path the Fake saw (http.StripPrefix leaves
// RequestURI untouched), so absolute URLs are right however the Fake is mounted.
func absBase(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + mountPrefix(r)
}

func mountPrefix(r *http.Request) string {
	if r.RequestURI == "" {
		return ""
	}
	u, err := url.ParseRequestURI(r.RequestURI)
	if err != nil {
		return ""
	}
	full, rel := u.EscapedPath(), r.URL.EscapedPath()
	if strings.HasSuffix(full, rel) {
		return full[:len(full)-len(rel)]
	}
	return ""
}

func (f *Fake) serveTool(x *exchange) {
	var v any
	switch x.r.URL.Path {
	case toolPrefix + "interactions":
		v = f.Created()
	case toolPrefix + "stats":
		v = f.Stats()
	case toolPrefix + "callbacks":
		v = struct {
			Stats     CallbackStats `json:"stats"`
			Callbacks []Callback    `json:"callbacks"`
		}{f.CallbackStats(), f.Callbacks()}
	default:
		notFound(x.w, x.r.URL.Path)
		return
	}
	if x.r.Method != http.MethodGet && x.r.Method != http.MethodHead {
		x.w.Header().Set("Allow", "GET")
		writeError(x.w, http.StatusMethodNotAllowed, codeMethodNotAllowed, "Method not allowed")
		return
	}
	writeJSON(x.w, http.StatusOK, v)
}

func notFound(w http.ResponseWriter, path string) {
	writeError(w, http.StatusNotFound, codeNotFound, "The requested resource "+path+" was not found")
}

func unavailable(w http.ResponseWriter) {
	writeError(w, http.StatusServiceUnavailable, codeUnavailable, "Service Unavailable")
}

func internalError(w http.ResponseWriter) {
	writeError(w, http.StatusInternalServerError, codeInternal, "Internal Server Error")
}

type routeKind int

const (
	routeMessages            routeKind = iota + 1 // …/Participants/{KP}/MessageInteractions
	routeMessage                                  // …/Participants/{KP}/MessageInteractions/{KI}
	routeSessionInteractions                      // …/Sessions/{KC}/Interactions
	routeSessionInteraction                       // …/Sessions/{KC}/Interactions/{KI}
)

type route struct {
	kind                                       routeKind
	service, session, participant, interaction string
}

// matches reports whether rec is visible at this route to acct: same account, same parents.
func (rt route) matches(rec *record, acct account) bool {
	return rec.AccountSID == acct.sid && rec.Service == rt.service && rec.Session == rt.session &&
		(rt.participant == "" || rec.Participant == rt.participant)
}

// parseRoute matches the four resource paths. A path of the right shape with a malformed SID
// does not match: Twilio answers both with 404 code 20404.
func parseRoute(path string) (route, bool) {
	s := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(s) < 6 || s[0] != "v1" || s[1] != "Services" || !isSID(s[2], "KS") ||
		s[3] != "Sessions" || !isSID(s[4], "KC") {
		return route{}, false
	}
	rt := route{service: s[2], session: s[4]}
	switch {
	case len(s) == 6 && s[5] == "Interactions":
		rt.kind = routeSessionInteractions
	case len(s) == 7 && s[5] == "Interactions" && isSID(s[6], "KI"):
		rt.kind, rt.interaction = routeSessionInteraction, s[6]
	case len(s) == 8 && s[5] == "Participants" && isSID(s[6], "KP") && s[7] == "MessageInteractions":
		rt.kind, rt.participant = routeMessages, s[6]
	case len(s) == 9 && s[5] == "Participants" && isSID(s[6], "KP") && s[7] == "MessageInteractions" &&
		isSID(s[8], "KI"):
		rt.kind, rt.participant, rt.interaction = routeMessage, s[6], s[8]
	default:
		return route{}, false
	}
	return rt, true
}

// statusWriter remembers the status for the log line. Unwrap lets
// http.ResponseController reach the connection for the reset fault.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
