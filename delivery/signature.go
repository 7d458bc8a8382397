package delivery

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"net/url"
	"sort"
	"strings"
)

// TokenSource gives the Auth Token that signs an account's callbacks. Twilio keys
// X-Twilio-Signature with the account's Auth Token, also when the REST calls use an API key.
type TokenSource interface {
	// AuthToken returns the token of accountSID, or false when the account is not ours.
	AuthToken(accountSID string) (string, bool)
}

// StaticToken is the TokenSource of a single account (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN).
type StaticToken struct {
	AccountSID string
	Token      string
}

// AuthToken implements TokenSource. The account comparison ignores case (SIDs are hex).
func (s StaticToken) AuthToken(accountSID string) (string, bool) {
	if s.Token == "" || !strings.EqualFold(s.AccountSID, accountSID) {
		return "", false
	}
	return s.Token, true
}

// Tokens is a TokenSource that asks each of its sources in turn (the default account, then the
// accounts file); nil sources are skipped.
type Tokens []TokenSource

// AuthToken implements TokenSource: the first source that knows the account answers.
func (ts Tokens) AuthToken(accountSID string) (string, bool) {
	for _, t := range ts {
		if t == nil {
			continue
		}
		if token, ok := t.AuthToken(accountSID); ok {
			return token, true
		}
	}
	return "", false
}

// Signature computes X-Twilio-Signature: base64(HMAC-SHA1(token, url + name1 + value1 + …)),
// names sorted bytewise and, for a repeated name, every value, sorted bytewise, as Twilio's
// Node and Python helpers compute it. (twilio-go keeps only the first value of a repeated
// name: a known bug; the Python helper also drops identical repeats, which ValidSignature
// accepts too.)
func Signature(token, fullURL string, params url.Values) string {
	return sign(token, fullURL, signedParams(params, false))
}

// signedParams is the part of the signed string after the URL: name + value for each value,
// names sorted and each name's values sorted, bytewise; with dedupe, a value repeated under
// one name is written once.
func signedParams(params url.Values, dedupe bool) []byte {
	names := make([]string, 0, len(params))
	size := 0
	for k, vs := range params {
		names = append(names, k)
		for _, v := range vs {
			size += len(k) + len(v)
		}
	}
	sort.Strings(names)
	b := make([]byte, 0, size)
	for _, k := range names {
		values := params[k]
		if len(values) > 1 {
			values = append([]string(nil), values...)
			sort.Strings(values)
		}
		for i, v := range values {
			if dedupe && i > 0 && values[i-1] == v {
				continue
			}
			b = append(append(b, k...), v...)
		}
	}
	return b
}

func sign(token, fullURL string, signed []byte) string {
	mac := hmac.New(sha1.New, []byte(token))
	mac.Write([]byte(fullURL))
	mac.Write(signed)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// ValidSignature reports whether sig signs params for fullURL, trying the URL as given and
// with its default port added or removed (":443" for https, ":80" for http), as Twilio's SDKs
// do: which form Twilio signed depends on how the callback URL was written. Every candidate
// is compared in constant time. The parameters are put in order once; the form without
// repeated values is a candidate of its own only when the callback repeats a value (a fact
// about the request, not the secret), so a usual callback costs one HMAC (two when Twilio
// signed the URL's other form), not four.
func ValidSignature(token, fullURL string, params url.Values, sig string) bool {
	if token == "" || sig == "" {
		return false
	}
	forms := [][]byte{signedParams(params, false)}
	for _, vs := range params {
		if len(vs) > 1 {
			if deduped := signedParams(params, true); len(deduped) != len(forms[0]) {
				forms = append(forms, deduped)
			}
			break
		}
	}
	// The first candidate that matches ends the search: which form Twilio signed is no secret,
	// and a forged signature still pays for every candidate.
	for _, u := range urlVariants(fullURL) {
		for _, signed := range forms {
			if subtle.ConstantTimeCompare([]byte(sign(token, u, signed)), []byte(sig)) == 1 {
				return true
			}
		}
	}
	return false
}

// urlVariants returns fullURL and the same URL with the default port toggled.
func urlVariants(fullURL string) []string {
	u, err := url.Parse(fullURL)
	if err != nil || u.Host == "" {
		return []string{fullURL}
	}
	def := map[string]string{"https": "443", "http": "80"}[strings.ToLower(u.Scheme)]
	if def == "" {
		return []string{fullURL}
	}
	// Rebuild by string surgery on the authority only, so the path and query stay byte-exact.
	schemeEnd := strings.Index(fullURL, "://") + 3
	rest := fullURL[schemeEnd:]
	hostEnd := strings.IndexAny(rest, "/?#")
	if hostEnd < 0 {
		hostEnd = len(rest)
	}
	authority, tail := rest[:hostEnd], rest[hostEnd:]
	var other string
	if strings.HasSuffix(authority, ":"+def) {
		other = strings.TrimSuffix(authority, ":"+def)
	} else if u.Port() == "" {
		other = authority + ":" + def
	} else {
		return []string{fullURL}
	}
	return []string{fullURL, fullURL[:schemeEnd] + other + tail}
}

// CallbackURL is the URL Twilio called: the configured public base (scheme, host, port and
// any path prefix a proxy strips) followed by the request's path and its query exactly.
func CallbackURL(publicBase, path, rawQuery string) string {
	u := strings.TrimRight(publicBase, "/") + path
	if rawQuery != "" {
		u += "?" + rawQuery
	}
	return u
}
