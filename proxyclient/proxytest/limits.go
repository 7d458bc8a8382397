package proxytest

import (
	"net/http"
	"sync"
	"time"
)

// ServiceLimits is Twilio's per-Service rate limit as the Fake enforces it: at most
// Rate × Window requests per (account, Service, endpoint) within any Window (a sliding
// window: 30/s over 5 s lets a burst of 150 through). A request beyond it is answered 429
// with code 80621 and is not counted. Endpoints are: create (POST MessageInteractions), list
// (GET MessageInteractions), fetch (GET one interaction), session-list and session-fetch.
type ServiceLimits struct {
	// Rate is requests per second per endpoint; 0 disables the limit.
	Rate float64
	// Window is the averaging window; default 5s.
	Window time.Duration
	// Services gives Services their own rate (raised limits).
	Services map[string]float64
}

// CodeServiceRateLimited is Twilio's 80621 "Requests Rate Limited on Endpoint".
const CodeServiceRateLimited = 80621

// serviceWindows is the Fake's sliding-window state; its own mutex keeps the Fake's lock
// out of the hot path.
type serviceWindows struct {
	mu      sync.Mutex
	lim     ServiceLimits
	times   map[string][]time.Time // account|service|endpoint → arrival times in the window, oldest first
	limited map[string]int         // service → 429s served
	served  map[string]int         // service → requests admitted
}

func newServiceWindows(lim ServiceLimits) *serviceWindows {
	if lim.Window == 0 {
		lim.Window = 5 * time.Second
	}
	return &serviceWindows{lim: lim, times: map[string][]time.Time{}, limited: map[string]int{}, served: map[string]int{}}
}

// admit reports whether a request may proceed, recording it when it may.
func (w *serviceWindows) admit(account, service, endpoint string, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	rate := w.lim.Rate
	if r, ok := w.lim.Services[service]; ok {
		rate = r
	}
	if rate <= 0 {
		return true
	}
	limit := int(rate * w.lim.Window.Seconds())
	key := account + "|" + service + "|" + endpoint
	ts := w.times[key]
	cut := 0
	for cut < len(ts) && !ts[cut].After(now.Add(-w.lim.Window)) {
		cut++
	}
	ts = ts[cut:]
	if len(ts) >= limit {
		w.times[key] = ts
		w.limited[service]++
		return false
	}
	w.times[key] = append(ts, now)
	w.served[service]++
	return true
}

// SetServiceLimits replaces the per-Service limits (and forgets the windows).
func (f *Fake) SetServiceLimits(lim ServiceLimits) {
	f.windows.Store(newServiceWindows(lim))
}

// ServiceRateLimited returns how many requests to each Service were answered 429/80621.
func (f *Fake) ServiceRateLimited() map[string]int {
	w := f.windows.Load()
	if w == nil {
		return map[string]int{}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]int, len(w.limited))
	for k, v := range w.limited {
		out[k] = v
	}
	return out
}

// serviceLimited answers 429/80621 and reports true when the request is over its Service's
// limit. It runs after authentication and the account's concurrency check.
func (f *Fake) serviceLimited(x *exchange, rt route, acct account) bool {
	w := f.windows.Load()
	if w == nil {
		return false
	}
	endpoint := "fetch"
	switch {
	case rt.kind == routeMessages && x.r.Method == http.MethodPost:
		endpoint = "create"
	case rt.kind == routeMessages:
		endpoint = "list"
	case rt.kind == routeSessionInteractions:
		endpoint = "session-list"
	case rt.kind == routeSessionInteraction:
		endpoint = "session-fetch"
	}
	if w.admit(acct.sid, rt.service, endpoint, time.Now()) {
		return false
	}
	x.fault = "service-rate-limit"
	f.mu.Lock()
	f.stats.tooMany++
	f.mu.Unlock()
	writeError(x.w, http.StatusTooManyRequests, CodeServiceRateLimited, "Requests Rate Limited on Endpoint")
	return true
}

// SetCredentials replaces the accepted credentials (user → secret) at run time, e.g. to
// revoke an API key in a rotation test. Requests already authenticated are not affected.
func (f *Fake) SetCredentials(creds map[string]string) {
	c := make(map[string]string, len(creds))
	for k, v := range creds {
		c[k] = v
	}
	f.creds.Store(&c)
}

func (f *Fake) credentials() map[string]string {
	if p := f.creds.Load(); p != nil {
		return *p
	}
	return f.cfg.Credentials
}

// concurrencyLimit is the user's own cap (Config.AccountConcurrency), else
// MaxConcurrentPerAccount.
func (f *Fake) concurrencyLimit(user string) int {
	if n, ok := f.cfg.AccountConcurrency[user]; ok {
		return n
	}
	return f.cfg.MaxConcurrentPerAccount
}
