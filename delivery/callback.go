package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/internal/interaction"
)

// CallbackPath is the route of Twilio Proxy's status callbacks: set the Proxy Service's
// callback_url to PROXYQ_PUBLIC_URL + CallbackPath.
const CallbackPath = "/v1/twilio/proxy/callbacks"

// Callback handler limits.
const (
	DefaultCallbackMaxBody = 64 << 10 // a callback is a few hundred bytes of form fields
	DefaultCallbackTimeout = 10 * time.Second
)

// CallbackConfig configures the callback route.
type CallbackConfig struct {
	// PublicURL is the base URL Twilio calls (scheme, host, port, and any path prefix a proxy
	// strips), e.g. https://proxyq.example.com: the signature covers the URL Twilio used,
	// which TLS terminators and proxies hide from the server.
	PublicURL string
	// Tokens gives the Auth Token of the account named in interactionAccountSid. That account
	// is then the only one whose interactions the callback may change.
	Tokens TokenSource
	// MaxBodyBytes (default 64 KiB) and Timeout (the Redis work of one callback, default 10s).
	MaxBodyBytes int64
	Timeout      time.Duration
}

// Validate checks the configuration; the route is never served without a way to check
// signatures.
func (c CallbackConfig) Validate() error {
	u, err := url.Parse(c.PublicURL)
	switch {
	case c.PublicURL == "":
		return errors.New("the public URL (PROXYQ_PUBLIC_URL) is required: the signature covers the URL Twilio called")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return errors.New("the public URL (PROXYQ_PUBLIC_URL) must be an absolute http(s) URL such as https://proxyq.example.com")
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return errors.New("the public URL (PROXYQ_PUBLIC_URL) must be a base URL without query, fragment or credentials")
	case c.Tokens == nil:
		return errors.New("callbacks need the account's Auth Token (TWILIO_AUTH_TOKEN) to check X-Twilio-Signature, also when REST calls use an API key")
	case c.MaxBodyBytes < 0 || c.Timeout < 0:
		return errors.New("callback limits must not be negative")
	}
	return nil
}

// CallbackHandler returns the http.Handler of POST CallbackPath. It is public (Twilio cannot
// send a bearer token): every request must carry a valid X-Twilio-Signature, else 403 and
// nothing changes. A signed callback gets 200 whether or not its interaction is known yet
// (unknown ones are kept for PendingTTL, unless they cannot be ours), and whether or not it
// may change it (see HandleCallback); only a Redis failure answers 503.
func (s *Service) CallbackHandler(cfg CallbackConfig) (http.Handler, error) {
	return s.signedHandler(cfg, signedForm{kind: "callback", accountParam: "interactionAccountSid",
		sidParam: "interactionSid", sidField: "interaction_sid", handle: s.HandleCallback})
}

// signedForm is what differs between Twilio's signed form webhooks that proxyq receives (Proxy
// status callbacks, Conversations delivery receipts): which parameter names the account whose
// Auth Token signs it, which names the SID for logs, and what to do with a verified one.
type signedForm struct {
	kind         string // "callback", "receipt": for logs
	accountParam string
	sidParam     string
	sidField     string // the log field of the SID
	handle       func(ctx context.Context, params url.Values) (string, error)
}

// signedHandler serves one signedForm: POST only, form-encoded, bounded body, X-Twilio-Signature
// checked with the Auth Token of the account the form names (403 and nothing changes
// otherwise), handled within cfg.Timeout; 200 once handled, 503 only when Redis failed.
func (s *Service) signedHandler(cfg CallbackConfig, form signedForm) (http.Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultCallbackMaxBody
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultCallbackTimeout
	}
	return &signedFormHandler{s: s, cfg: cfg, form: form}, nil
}

type signedFormHandler struct {
	s    *Service
	cfg  CallbackConfig
	form signedForm
}

func (h *signedFormHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/x-www-form-urlencoded" {
		http.Error(w, "want application/x-www-form-urlencoded", http.StatusUnsupportedMediaType)
		return
	}
	// Only the body's parameters are signed as parameters; the query is part of the URL. The
	// body is parsed here rather than by r.ParseForm, which would also parse the query and copy
	// both into r.Form on every callback.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "unreadable body", http.StatusBadRequest)
		return
	}
	params, err := url.ParseQuery(string(body))
	if err != nil {
		http.Error(w, "malformed form body", http.StatusBadRequest)
		return
	}
	account := params.Get(h.form.accountParam)
	token, ok := h.cfg.Tokens.AuthToken(account)
	if !ok {
		h.s.metrics.Callbacks.WithLabelValues(ResultUnknownAccount).Inc()
		http.Error(w, "invalid signature", http.StatusForbidden)
		return
	}
	full := CallbackURL(h.cfg.PublicURL, r.URL.EscapedPath(), r.URL.RawQuery)
	if !ValidSignature(token, full, params, r.Header.Get("X-Twilio-Signature")) {
		h.s.metrics.Callbacks.WithLabelValues(ResultBadSignature).Inc()
		h.s.log.Warn(h.form.kind+" refused: bad X-Twilio-Signature", zap.String("account_sid", account),
			zap.String(h.form.sidField, params.Get(h.form.sidParam)), zap.String("remote", r.RemoteAddr))
		http.Error(w, "invalid signature", http.StatusForbidden)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.Timeout)
	defer cancel()
	res, err := h.form.handle(ctx, params)
	h.s.metrics.Callbacks.WithLabelValues(res).Inc()
	if err != nil {
		h.s.log.Error(h.form.kind+" not recorded", zap.String(h.form.sidField, params.Get(h.form.sidParam)), zap.Error(err))
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// HandleCallback records a callback whose signature was checked with the Auth Token of its
// interactionAccountSid, and returns its result (one of the Result* constants). The error is
// non-nil only when Redis failed.
//
// The signing account is the callback's authority: it applies only to an interaction recorded
// under that account (ResultWrongAccount otherwise, changing nothing), and an early callback
// keeps it, so the same check is made when the send is recorded. A callback of an interaction
// proxyq never creates (neverOurs) is applied if its interaction is indexed — it never is —
// and otherwise answered without taking room in the early set (ResultNotOurs).
func (s *Service) HandleCallback(ctx context.Context, params url.Values) (string, error) {
	ki := params.Get("interactionSid")
	status := strings.ToLower(strings.TrimSpace(params.Get("outboundResourceStatus")))
	if ki == "" || status == "" {
		return ResultIgnored, nil
	}
	signer := params.Get("interactionAccountSid")
	u := Update{Status: status, At: s.now().UTC()}
	if neverOurs(params) {
		return s.applyIfIndexed(ctx, ki, signer, u, ResultNotOurs)
	}
	ref, res, err := s.keepUnlessIndexed(ctx, ki, signer, u)
	if ref == nil {
		return res, err
	}
	return s.applyUpdates(ctx, *ref, signer, []Update{u}, "callback")
}

// keepUnlessIndexed returns the message sid (a KI… or IM…) is indexed under, for the caller to
// apply u to; or, when sid is not indexed yet, keeps u with its signer as an early update
// (ResultPending: applied when the send is recorded, dropped after PendingTTL). When the early
// set is full only an indexed sid gets through (ResultDropped otherwise).
//
// The common case, a callback for a recorded message, is one GET. A miss looks again after
// each of s.indexWaits, and only a callback still unmatched then pays for the early set's size
// and the script that checks the index again and keeps u atomically.
func (s *Service) keepUnlessIndexed(ctx context.Context, sid, signer string, u Update) (*msgRef, string, error) {
	ref, err := s.lookup(ctx, sid)
	for _, d := range s.indexWaits {
		if err != nil || ref != nil {
			break
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, ResultError, ctx.Err()
		}
		ref, err = s.lookup(ctx, sid)
	}
	switch {
	case err != nil:
		return nil, ResultError, err
	case ref != nil:
		return ref, "", nil
	}
	if n, err := s.rdb.ZCard(ctx, earlyKey).Result(); err == nil && n >= int64(s.cfg.PendingMax) {
		// Full: only an interaction recorded since the GET above gets through.
		ref, err := s.lookup(ctx, sid)
		switch {
		case err != nil:
			return nil, ResultError, err
		case ref == nil:
			return nil, ResultDropped, nil
		}
		return ref, "", nil
	}
	entry, _ := json.Marshal(earlyCallback{Update: u, Signer: signer})
	v, err := earlyScript.Run(ctx, s.rdb, []string{interaction.Key(sid), interaction.EarlyList(sid)}, string(entry), pendingPerInteraction,
		(s.cfg.PendingTTL + s.cfg.SweepInterval*2 + time.Minute).Milliseconds()).Text()
	if errors.Is(err, redis.Nil) {
		// Kept for PendingTTL; the list itself lives a little longer so that the sweeper
		// can count what it drops.
		expiry := s.now().Add(s.cfg.PendingTTL).UnixMilli()
		if err := s.rdb.ZAdd(ctx, earlyKey, redis.Z{Score: float64(expiry), Member: sid}).Err(); err != nil {
			return nil, ResultError, fmt.Errorf("schedule the pending update's expiry: %w", err)
		}
		return nil, ResultPending, nil
	}
	if err != nil {
		return nil, ResultError, err
	}
	if ref, err = decodeRef(sid, v); err != nil {
		return nil, ResultError, err
	}
	return ref, "", nil
}

// neverOurs reports whether a callback belongs to an interaction proxyq never creates: proxyq
// creates message interactions towards one participant, which have no inbound leg. A voice
// interaction, or one with an inbound resource (a participant's message or call that Proxy
// relays), cannot be one of ours, so it must not take room in the early set, where it would
// wait PendingTTL for a send that never comes.
func neverOurs(params url.Values) bool {
	return strings.EqualFold(strings.TrimSpace(params.Get("interactionType")), "voice") ||
		params.Get("inboundResourceSid") != ""
}

// applyIfIndexed applies u when ki is indexed, else returns notIndexed without keeping it.
func (s *Service) applyIfIndexed(ctx context.Context, ki, signer string, u Update, notIndexed string) (string, error) {
	ref, err := s.lookup(ctx, ki)
	if err != nil {
		return ResultError, err
	}
	if ref == nil {
		if notIndexed == ResultDropped {
			s.log.Warn("early callback dropped: too many interactions waiting", zap.String("interaction_sid", ki), zap.Int("pending_max", s.cfg.PendingMax))
		}
		return notIndexed, nil
	}
	return s.applyUpdates(ctx, *ref, signer, []Update{u}, "callback")
}

// applyUpdates applies ups (what one callback or receipt means) to a recorded message, if the
// account that signed it is the message's (ResultWrongAccount otherwise, changing nothing).
func (s *Service) applyUpdates(ctx context.Context, ref msgRef, signer string, ups []Update, source string) (string, error) {
	if !ref.signedBy(signer) {
		s.wrongAccount(ref, signer, 1)
		return ResultWrongAccount, nil
	}
	res, err := s.apply(ctx, ref, ups, source)
	switch {
	case errors.Is(err, errGone):
		return ResultUnknownInteraction, nil
	case err != nil:
		return ResultError, err
	case res.change == Advanced || res.change == ErrorAdded:
		return ResultAccepted, nil
	}
	return ResultDuplicateOrStale, nil
}

// wrongAccount logs n callbacks signed by another account than ref's: someone holding one
// account's Auth Token named an interaction of another account. The caller changes nothing
// and counts them (callbacks result="wrong_account").
func (s *Service) wrongAccount(ref msgRef, signer string, n int) {
	s.log.Warn("callback refused: signed by another account than the interaction's",
		zap.String("interaction_sid", ref.KI), zap.String("account_sid", ref.AccountSID),
		zap.String("signed_by", signer), zap.Int("callbacks", n))
}
