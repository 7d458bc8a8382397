package proxyclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ErrUnsafeNextPage is wrapped by the error ListMessageInteractions returns when a
// page's next_page_url points at a different scheme or host than the base URL. Following
// it would send the account's credentials there.
var ErrUnsafeNextPage = errors.New("next_page_url is not on the API host")

// errInvalidURL marks a request URL that cannot be sent (bad syntax or scheme). It only
// happens with a custom HTTPClient or a server-provided URL and never fixes itself.
var errInvalidURL = errors.New("invalid request URL")

// ValidationError says which field or argument broke which rule. Nothing was sent.
type ValidationError struct {
	Field string // Config field or argument name, e.g. "AccountSID", "ServiceSID"
	Rule  string // e.g. "must match ^AC[0-9a-fA-F]{32}$"
}

func (e *ValidationError) Error() string { return "proxyclient: " + e.Field + " " + e.Rule }

func invalid(field, rule string) error { return &ValidationError{Field: field, Rule: rule} }

// Error is a non-2xx HTTP answer from the API (or from a gateway in front of it).
// Error() contains the method and path only: no host, query, credentials or body.
type Error struct {
	Method     string // e.g. "POST"
	Path       string // escaped URL path, no query string
	StatusCode int    // HTTP status
	Code       int    // Twilio error code, e.g. 20429; 0 when the body was not Twilio JSON
	Message    string // Twilio's message, or a sanitised snippet / http.StatusText
	MoreInfo   string // Twilio's more_info URL
	RequestID  string // Twilio-Request-Id response header, for Twilio support
	// RetryAfter is the server's Retry-After (either form), capped by
	// Config.MaxRetryAfter; 0 when absent, invalid, zero or in the past.
	RetryAfter time.Duration
	Details    json.RawMessage // Twilio's optional "details" object, verbatim
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "proxyclient: %s %s: HTTP %d", e.Method, e.Path, e.StatusCode)
	if e.Code != 0 {
		fmt.Fprintf(&b, " (Twilio code %d)", e.Code)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, "; retry after %s", e.RetryAfter)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, "; request %s", e.RequestID)
	}
	return b.String()
}

// TransportError means no HTTP response was received: dial, DNS, TLS, timeout, reset,
// or a context ended. RequestWritten tells whether the whole request reached the
// connection first (net/http/httptrace WroteRequest without error): if it did, the
// server may have acted on it.
type TransportError struct {
	Method         string
	Path           string // escaped URL path, no query string
	Err            error  // the cause; never the *url.Error, whose text would quote the full URL
	RequestWritten bool
}

func (e *TransportError) Error() string {
	w := "not written"
	if e.RequestWritten {
		w = "written"
	}
	return fmt.Sprintf("proxyclient: %s %s: transport error (request %s): %v", e.Method, e.Path, w, e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// DecodeError means a 2xx answer arrived but its body could not be read or decoded.
// For a create, the interaction exists: the caller must not treat this as "not sent".
type DecodeError struct {
	Method     string
	Path       string
	StatusCode int
	Err        error // never includes the body: it holds message text
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("proxyclient: %s %s: HTTP %d response could not be decoded: %v", e.Method, e.Path, e.StatusCode, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Class is what a failure means for a caller deciding whether to send again.
type Class int

const (
	// ClassNone is the class of a nil error.
	ClassNone Class = iota
	// ClassRetryable: the request was certainly not processed; sending again is safe.
	ClassRetryable
	// ClassPermanent: sending the same request again will fail the same way.
	ClassPermanent
	// ClassAmbiguous: the request may have been processed (an SMS may have gone out);
	// reconcile before sending again.
	ClassAmbiguous
)

func (c Class) String() string {
	switch c {
	case ClassNone:
		return "none"
	case ClassRetryable:
		return "retryable"
	case ClassPermanent:
		return "permanent"
	case ClassAmbiguous:
		return "ambiguous"
	}
	return "Class(" + strconv.Itoa(int(c)) + ")"
}

// Classify maps err to a Class following the table in the package doc. It unwraps, so
// errors wrapped with %w classify like the original. Unknown errors are ClassAmbiguous.
func Classify(err error) Class {
	if err == nil {
		return ClassNone
	}
	var he *Error
	if errors.As(err, &he) {
		// A documented code says more than the status: 14107 is a 4xx that clears in 30 s.
		if c, ok := classifyCode(he); ok && he.StatusCode < 500 {
			return c
		}
		return classifyStatus(he.StatusCode)
	}
	var te *TransportError
	if errors.As(err, &te) {
		if te.RequestWritten {
			return ClassAmbiguous
		}
		if isTLSError(te.Err) || isURLError(te.Err) {
			return ClassPermanent
		}
		return ClassRetryable
	}
	var de *DecodeError
	if errors.As(err, &de) {
		return ClassAmbiguous
	}
	var ve *ValidationError
	if errors.As(err, &ve) || errors.Is(err, ErrUnsafeNextPage) {
		return ClassPermanent
	}
	// A context that ended before this package was called (or in the caller's own
	// code, e.g. a limiter wait) sent nothing.
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return ClassRetryable
	}
	return ClassAmbiguous
}

// ClassifyRead maps the error of a read (FetchMessage, FetchMessageInteraction,
// ListMessageInteractions) to a Class. A read has no side effect, so nothing is ever
// ambiguous: whatever Classify would call ambiguous (a 500/502/504, a timeout after the
// request was written, an unknown error) is ClassRetryable here. What will fail the same
// way again is ClassPermanent: a *ValidationError, ErrUnsafeNextPage, a 3xx/4xx other
// than 429 (e.g. 404 code 20404 for a message that does not exist, 401/403 for
// credentials that may not read it), 501, TLS and URL errors, and a 2xx whose body is not
// the JSON expected (*DecodeError wrapping a *json.SyntaxError or *json.UnmarshalTypeError
// or a bad error_code). A 2xx whose body could not be read (connection cut) is retryable.
// Callers still bound their retries and honour RetryAfter.
func ClassifyRead(err error) Class {
	switch Classify(err) {
	case ClassNone:
		return ClassNone
	case ClassPermanent:
		return ClassPermanent
	}
	var de *DecodeError
	if errors.As(err, &de) && !isReadError(de.Err) {
		return ClassPermanent
	}
	return ClassRetryable
}

// isReadError reports whether a DecodeError's cause is the body's transport (the read
// failed) rather than its content.
func isReadError(err error) bool {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	if errors.As(err, &syn) || errors.As(err, &typ) || errors.Is(err, errBadContent) {
		return false
	}
	return true
}

// errBadContent marks a decoded body whose content breaks a rule (e.g. a non-integer
// error_code) or exceeds the size limit: reading it again gives the same.
var errBadContent = errors.New("unexpected content")

func classifyStatus(code int) Class {
	switch {
	case code == http.StatusTooManyRequests, code == http.StatusServiceUnavailable:
		// Twilio: a 429 was not processed and is always safe to retry. A 503 is the
		// service refusing work before processing it.
		return ClassRetryable
	case code == http.StatusNotImplemented:
		return ClassPermanent
	case code >= 500:
		// 500/502/504 and the rest: the request may have been processed upstream.
		return ClassAmbiguous
	case code >= 300 && code < 500:
		return ClassPermanent
	}
	return ClassAmbiguous
}

func isTLSError(err error) bool {
	var (
		certErr     *tls.CertificateVerificationError
		unknownAuth x509.UnknownAuthorityError
		hostErr     x509.HostnameError
		invalidCert x509.CertificateInvalidError
		recHdr      tls.RecordHeaderError
		alert       tls.AlertError
		echErr      *tls.ECHRejectionError
	)
	return errors.As(err, &certErr) || errors.As(err, &unknownAuth) || errors.As(err, &hostErr) ||
		errors.As(err, &invalidCert) || errors.As(err, &recHdr) || errors.As(err, &alert) ||
		errors.As(err, &echErr)
}

func isURLError(err error) bool {
	if errors.Is(err, errInvalidURL) {
		return true
	}
	var ue *url.Error
	if errors.As(err, &ue) && ue.Op == "parse" {
		return true
	}
	// net/http's error for this is unexported; its text is the only handle. Reachable
	// only through a custom HTTPClient's transport.
	return err != nil && strings.Contains(err.Error(), "unsupported protocol scheme")
}

// RetryAfter returns when the request in err may be tried again: the Retry-After carried by
// an *Error in err's chain (already capped by Config.MaxRetryAfter), else the wait its Twilio
// code implies (14107: 30 s; 80623: 10 s; no proxy number available: 10 min; see Codes).
// ok is false when there is neither.
func RetryAfter(err error) (d time.Duration, ok bool) {
	var he *Error
	if !errors.As(err, &he) {
		return 0, false
	}
	if he.RetryAfter > 0 {
		return he.RetryAfter, true
	}
	if c, found := codeIndex[he.Code]; found && c.RetryAfter > 0 {
		return c.RetryAfter, true
	}
	return 0, false
}

// parseRetryAfter reads both forms of Retry-After (RFC 9110 §10.2.3): delta-seconds
// and HTTP-date (relative to now). Garbage, negative, zero and past values give 0, which
// means "use your own backoff". Values above max are capped to max.
func parseRetryAfter(v string, now time.Time, max time.Duration) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if isDigits(v) {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs > int64(max/time.Second) {
			// Only a range error is possible here: a valid but huge value.
			return max
		}
		d = time.Duration(secs) * time.Second
	} else {
		t, err := http.ParseTime(v)
		if err != nil {
			return 0
		}
		d = t.Sub(now)
	}
	if d <= 0 {
		return 0
	}
	return min(d, max)
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// twilioErrorBody is Twilio's JSON error document.
type twilioErrorBody struct {
	Code     int             `json:"code"`
	Message  string          `json:"message"`
	MoreInfo string          `json:"more_info"`
	Status   int             `json:"status"`
	Details  json.RawMessage `json:"details"`
}

// newError builds the *Error for a non-2xx response from what was read of its body
// (which may be partial if the read failed: the status line is authoritative anyway).
func newError(method, path string, resp *http.Response, body []byte, now time.Time, maxRetryAfter time.Duration) *Error {
	e := &Error{
		Method:     method,
		Path:       path,
		StatusCode: resp.StatusCode,
		RequestID:  sanitize(resp.Header.Get("Twilio-Request-Id"), 128),
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), now, maxRetryAfter),
	}
	var tb twilioErrorBody
	if json.Unmarshal(body, &tb) == nil {
		e.Code = tb.Code
		e.Message = sanitize(tb.Message, 512)
		e.MoreInfo = sanitize(tb.MoreInfo, 256)
		if len(tb.Details) > 0 && string(tb.Details) != "null" {
			e.Details = tb.Details
		}
	} else {
		// A gateway's HTML or plain-text page: keep a short, one-line, tag-free snippet.
		e.Message = sanitize(stripTags(string(body)), 200)
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return e
}

// stripTags drops <…> sequences so an HTML error page reads as its text.
func stripTags(s string) string {
	var b strings.Builder
	in := false
	for _, r := range s {
		switch {
		case r == '<':
			in = true
			b.WriteByte(' ')
		case r == '>' && in:
			in = false
		case !in:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// sanitize makes s a single line of valid UTF-8 without control characters, whitespace
// collapsed, at most max runes, so that it is safe to log.
func sanitize(s string, max int) string {
	s = strings.ToValidUTF8(s, "")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) > max {
		r := []rune(s)
		s = string(r[:max]) + "…"
	}
	return s
}
