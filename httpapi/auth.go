package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// tokenSet holds the SHA-256 digests of the accepted tokens. Comparing fixed-length digests
// keeps the comparison's time independent of the presented token's length and content
// (subtle.ConstantTimeCompare returns early on a length mismatch, digests never mismatch in
// length), and the raw tokens are not kept in memory.
type tokenSet [][sha256.Size]byte

func newTokenSet(tokens []string) tokenSet {
	set := make(tokenSet, len(tokens))
	for i, t := range tokens {
		set[i] = sha256.Sum256([]byte(t))
	}
	return set
}

// match compares the presented token with every accepted one, without stopping at the
// first match, so timing does not tell which token (or how many) exist.
func (s tokenSet) match(presented string) bool {
	d := sha256.Sum256([]byte(presented))
	ok := 0
	for i := range s {
		ok |= subtle.ConstantTimeCompare(d[:], s[i][:])
	}
	return ok == 1
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

// authenticate answers 401 and returns false unless r carries an accepted bearer token.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) bool {
	token, present := bearerToken(r)
	if present && token != "" && s.tokens.match(token) {
		return true
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
	return false
}
