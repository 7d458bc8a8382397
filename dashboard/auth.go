package dashboard

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/proxyq/proxyq/console"
)

// realm is what a browser shows in its login prompt.
const realm = "proxyq dashboard"

// authenticator checks HTTP Basic and bearer credentials. Secrets are kept as SHA-256 digests
// and compared with subtle.ConstantTimeCompare: hashing first makes every comparison the same
// length, so neither the content nor the length of a secret leaks through timing.
type authenticator struct {
	user, password, token [sha256.Size]byte
	basic, bearer         bool
	readOnly              bool
	log                   *zap.Logger
}

func newAuthenticator(cfg Config, log *zap.Logger) *authenticator {
	a := &authenticator{log: log, readOnly: cfg.ReadOnly}
	if cfg.User != "" {
		a.basic = true
		a.user = sha256.Sum256([]byte(cfg.User))
		a.password = sha256.Sum256([]byte(cfg.Password))
	}
	if cfg.Token != "" {
		a.bearer = true
		a.token = sha256.Sum256([]byte(cfg.Token))
	}
	return a
}

func (a *authenticator) enabled() bool { return a.basic || a.bearer }

// check reports whether r carries valid credentials, and whether it carried any at all.
func (a *authenticator) check(r *http.Request) (ok, presented bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return false, false
	}
	scheme, rest, _ := strings.Cut(h, " ")
	switch {
	case strings.EqualFold(scheme, "Basic"):
		user, pass, parsed := r.BasicAuth()
		if !parsed || !a.basic {
			return false, true
		}
		u := sha256.Sum256([]byte(user))
		p := sha256.Sum256([]byte(pass))
		// Both comparisons always run: & rather than &&.
		match := subtle.ConstantTimeCompare(u[:], a.user[:]) & subtle.ConstantTimeCompare(p[:], a.password[:])
		return match == 1, true
	case strings.EqualFold(scheme, "Bearer"):
		if !a.bearer {
			return false, true
		}
		t := sha256.Sum256([]byte(strings.TrimSpace(rest)))
		return subtle.ConstantTimeCompare(t[:], a.token[:]) == 1, true
	}
	return false, true
}

// wrap refuses requests without valid credentials with 401 and a challenge for each scheme
// that is configured (Basic first, so browsers show their login prompt).
func (a *authenticator) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok, presented := a.check(r)
		if ok {
			next.ServeHTTP(w, r.WithContext(console.WithIdentity(r.Context(), a.identity(r))))
			return
		}
		if presented {
			// Never the credentials themselves: who, where, and that they were wrong.
			a.log.Warn("dashboard: rejected credentials", zap.String("remote", r.RemoteAddr),
				zap.String("method", r.Method), zap.String("path", r.URL.Path))
		}
		if a.basic {
			w.Header().Add("WWW-Authenticate", `Basic realm="`+realm+`", charset="UTF-8"`)
		}
		if a.bearer {
			w.Header().Add("WWW-Authenticate", `Bearer realm="`+realm+`"`)
		}
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "401 Unauthorized: the proxyq dashboard requires credentials", http.StatusUnauthorized)
	})
}

// identity is who an authenticated request comes from, for the console's audit log and
// actions: the Basic user name, or "token" for the bearer token. Every authenticated caller is
// an operator unless the dashboard is read-only (then a viewer): run a second, read-only
// dashboard with its own credentials for people who should only look.
func (a *authenticator) identity(r *http.Request) console.Identity {
	id := console.Identity{Name: "token", Role: console.RoleOperator}
	if user, _, ok := r.BasicAuth(); ok {
		id.Name = user
	}
	if a.readOnly {
		id.Role = console.RoleViewer
	}
	return id
}

// anonymous marks requests to a dashboard running without authentication (AllowNoAuth; or
// mounted behind another check, as `proxyq serve --dashboard` is behind the API's tokens).
func anonymous(next http.Handler, readOnly bool) http.Handler {
	id := console.Identity{Name: "unauthenticated", Role: console.RoleOperator}
	if readOnly {
		id.Role = console.RoleViewer
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(console.WithIdentity(r.Context(), id)))
	})
}
