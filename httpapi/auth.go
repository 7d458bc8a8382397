package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"regexp"
	"strings"

	"github.com/proxyq/proxyq/tasks"
)

// tokenSet holds the SHA-256 digests of the accepted tokens, with each one's name ("" for
// an unnamed token). Comparing fixed-length digests keeps the comparison's time independent of
// the presented token's length and content (subtle.ConstantTimeCompare returns early on a
// length mismatch, digests never mismatch in length), and the raw tokens are not kept in memory.
type tokenSet struct {
	digests [][sha256.Size]byte
	names   []string
}

// newTokenSet takes Config.Tokens entries, which passed Validate ("token" or "name:token").
func newTokenSet(entries []string) tokenSet {
	set := tokenSet{digests: make([][sha256.Size]byte, len(entries)), names: make([]string, len(entries))}
	for i, e := range entries {
		name, tok := splitTokenEntry(e)
		set.digests[i], set.names[i] = sha256.Sum256([]byte(tok)), name
	}
	return set
}

// match compares the presented token with every accepted one, without stopping at the
// first match, so timing does not tell which token (or how many) exist. name is the matched
// token's name ("" for an unnamed one).
func (s tokenSet) match(presented string) (name string, ok bool) {
	d := sha256.Sum256([]byte(presented))
	found, at := 0, 0
	for i := range s.digests {
		eq := subtle.ConstantTimeCompare(d[:], s.digests[i][:])
		at = subtle.ConstantTimeSelect(eq, i, at)
		found |= eq
	}
	if found != 1 {
		return "", false
	}
	return s.names[at], true
}

// A token entry is "token" or "name:token": the name says which producer a message came
// through (the console's "HTTP API (proxyq serve), token billing"). ':' is not in a bearer
// token's alphabet (RFC 6750 b64token), so an entry with a ':' is named: the text before its
// first ':' is the name, the rest the token.
var tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,32}$`)

// splitTokenEntry returns an entry's name ("" for none) and token.
func splitTokenEntry(entry string) (name, token string) {
	if name, token, ok := strings.Cut(entry, ":"); ok {
		return name, token
	}
	return "", entry
}

// tokenEntryProblem returns the rule an entry breaks, or "" (never quoting it: it holds a secret).
func tokenEntryProblem(entry string) string {
	name, tok := splitTokenEntry(entry)
	if name != "" || strings.Contains(entry, ":") {
		if !tokenNameRE.MatchString(name) {
			return "has a name (the text before ':') that is not 1 to 32 of A-Z a-z 0-9 _ . -"
		}
	}
	return tokenProblem(tok)
}

type tokenNameKey struct{}

// via is what the enqueued messages' origin says they came through: "http", or
// "http:<token name>" for a named token.
func via(r *http.Request) tasks.Option {
	if name, _ := r.Context().Value(tokenNameKey{}).(string); name != "" {
		return tasks.Via("http:" + name)
	}
	return tasks.Via("http")
}

// bearerToken extracts the credentials of an "Authorization: Bearer <token>" header. The
// scheme is case-insensitive (RFC 9110 §11.1).
func bearerToken(r *http.Request) (token string, present bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false
	}
	scheme, rest, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", true
	}
	return strings.TrimSpace(rest), true
}

// authenticate answers 401 and returns nil unless r carries an accepted bearer token; else it
// returns r carrying the token's name (for via).
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) *http.Request {
	token, present := bearerToken(r)
	if present && token != "" {
		if name, ok := s.tokens.match(token); ok {
			return r.WithContext(context.WithValue(r.Context(), tokenNameKey{}, name))
		}
	}
	challenge := `Bearer realm="proxyq"`
	detail := "send Authorization: Bearer <token> with one of the configured API tokens"
	if present {
		// RFC 6750 §3.1: a credential was given and refused.
		challenge += `, error="invalid_token"`
		detail = "the bearer token is not one of the configured API tokens"
	}
	w.Header().Set("WWW-Authenticate", challenge)
	writeProblem(w, r, newProblem(http.StatusUnauthorized, ProblemUnauthorized, detail))
	return nil
}
