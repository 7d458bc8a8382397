package proxyclient

import (
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/proxyq/proxyq/internal/sid"
)

// Defaults applied by Config.WithDefaults.
const (
	DefaultBaseURL = "https://proxy.twilio.com"
	// DefaultMessagingBaseURL is the host of Twilio's Messaging REST API (2010-04-01), where
	// the Message behind an interaction (its delivery status and error code) is read.
	DefaultMessagingBaseURL = "https://api.twilio.com"
	DefaultHTTPTimeout      = 15 * time.Second
	DefaultMaxRetryAfter    = 5 * time.Minute
	// DefaultEdgeRegion is the region Twilio's SDKs use when only an edge is given.
	DefaultEdgeRegion = "us1"
)

// Config configures a Client. The zero value of every optional field means "use the
// default"; call WithDefaults to see the effective values. Env mapping (TWILIO_*,
// PROXYQ_*) lives in cmd, not here.
type Config struct {
	// AccountSID (AC + 32 hex) and AuthToken authenticate with HTTP Basic when no API
	// key is given. AccountSID also identifies the account for shared limits
	// (AccountKey), so set it even when using an API key.
	AccountSID string
	AuthToken  string

	// APIKey (SK + 32 hex) and APISecret authenticate with HTTP Basic and win over
	// AccountSID/AuthToken when both pairs are given (Twilio recommends API keys in
	// production: they can be revoked one by one).
	APIKey    string
	APISecret string

	// BaseURL overrides the API host, e.g. the sandbox "http://127.0.0.1:4010/twilio".
	// It may carry a path prefix; "/v1/…" is appended to it. When set, Edge and Region
	// are ignored. Empty means DefaultBaseURL adjusted by Edge/Region.
	BaseURL string

	// MessagingBaseURL overrides the host of Twilio's Messaging REST API, used by
	// FetchMessage ("/2010-04-01/…" is appended; it may carry a path prefix). Empty means
	// BaseURL when BaseURL is set (the sandbox and proxytest serve both APIs), else
	// DefaultMessagingBaseURL adjusted by Edge/Region (api.{edge}.{region}.twilio.com).
	MessagingBaseURL string

	// Edge and Region select a Twilio regional endpoint exactly as Twilio's SDKs do:
	// edge and region give proxy.{edge}.{region}.twilio.com, region alone gives
	// proxy.{region}.twilio.com, and an edge without a region uses region us1.
	Edge   string
	Region string

	// HTTPClient is an optional source of transport settings (TLS, proxies, pools).
	// It is copied; the copy never follows redirects. Nil means a private clone of
	// http.DefaultTransport with a larger idle pool per host.
	HTTPClient *http.Client

	// WrapTransport, when set, wraps the transport requests go through (the default one or
	// HTTPClient's): instrumentation such as cmd/proxyq's tracing (otelx.ClientTransport).
	// It sees the request with its Authorization header; it must not record headers or bodies.
	WrapTransport func(http.RoundTripper) http.RoundTripper

	// MaxIdleConnsPerHost is how many idle connections the default transport keeps to the
	// API host. Set it to the number of concurrent requests (a worker's concurrency): every
	// request beyond the pool dials, and TLS-handshakes, anew. Default 100. Ignored with
	// HTTPClient.
	MaxIdleConnsPerHost int

	// HTTPTimeout bounds each HTTP request (one page of a list counts as one request),
	// on top of the caller's context. Default 15s.
	HTTPTimeout time.Duration

	// MaxRetryAfter caps a server's Retry-After so a hostile or buggy value cannot park
	// work for days. Default 5m.
	MaxRetryAfter time.Duration

	// UserAgent is a product token appended after "proxyq/<Version>".
	UserAgent string
}

// WithDefaults returns a copy of c with defaults filled in: HTTPTimeout 15s,
// MaxRetryAfter 5m, and Region "us1" when Edge is set without a Region. BaseURL is left
// empty on purpose so that Edge/Region keep working; see Endpoint.
func (c Config) WithDefaults() Config {
	if c.HTTPTimeout == 0 {
		c.HTTPTimeout = DefaultHTTPTimeout
	}
	if c.MaxRetryAfter == 0 {
		c.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if c.Edge != "" && c.Region == "" {
		c.Region = DefaultEdgeRegion
	}
	return c
}

// Endpoint returns the base URL the client sends requests to (without "/v1"): BaseURL
// when set, else the Twilio host chosen by Edge and Region.
func (c Config) Endpoint() string {
	if c.BaseURL != "" {
		return strings.TrimRight(c.BaseURL, "/")
	}
	return twilioHost("proxy", c.Edge, c.Region)
}

// MessagingEndpoint returns the base URL FetchMessage sends requests to (without
// "/2010-04-01"): MessagingBaseURL when set, else BaseURL when set (a sandbox or fake
// serves both APIs), else the Twilio host chosen by Edge and Region:
// api.{edge}.{region}.twilio.com, as Twilio's SDKs build it.
func (c Config) MessagingEndpoint() string {
	if c.MessagingBaseURL != "" {
		return strings.TrimRight(c.MessagingBaseURL, "/")
	}
	if c.BaseURL != "" {
		return strings.TrimRight(c.BaseURL, "/")
	}
	return twilioHost("api", c.Edge, c.Region)
}

// twilioHost builds https://{product}[.{edge}][.{region}].twilio.com with Twilio's SDK
// rule that an edge without a region uses region us1.
func twilioHost(product, edge, region string) string {
	edge, region = strings.ToLower(edge), strings.ToLower(region)
	if edge != "" && region == "" {
		region = DefaultEdgeRegion
	}
	host := product
	for _, p := range []string{edge, region} {
		if p != "" {
			host += "." + p
		}
	}
	return "https://" + host + ".twilio.com"
}

// Validate reports the first rule c breaks as a *ValidationError naming the Config
// field (cmd maps field names to environment variables). Zero values of defaultable
// fields are accepted, so Validate works before or after WithDefaults. Messages never
// echo secret values.
func (c Config) Validate() error {
	switch {
	case c.APIKey == "" && c.AccountSID == "":
		return invalid("AccountSID", "is required (or APIKey with APISecret)")
	case c.AccountSID != "" && !ValidSID("AC", c.AccountSID):
		return invalid("AccountSID", "must match ^AC[0-9a-fA-F]{32}$")
	case c.APIKey != "" && !ValidSID("SK", c.APIKey):
		return invalid("APIKey", "must match ^SK[0-9a-fA-F]{32}$")
	case c.APIKey != "" && c.APISecret == "":
		return invalid("APISecret", "is required when APIKey is set")
	case c.APIKey == "" && c.APISecret != "":
		// Without this, a missing key would silently fall back to the auth token.
		return invalid("APIKey", "is required when APISecret is set")
	case c.APIKey == "" && c.AuthToken == "":
		return invalid("AuthToken", "is required when APIKey is empty")
	case hasSpaceOrControl(c.AuthToken):
		// A trailing newline from a mounted secret file is the usual culprit.
		return invalid("AuthToken", "must not contain whitespace or control characters")
	case hasSpaceOrControl(c.APISecret):
		return invalid("APISecret", "must not contain whitespace or control characters")
	case c.Edge != "" && !validLabel(c.Edge):
		return invalid("Edge", "must be a DNS label (letters, digits, '-'), e.g. dublin")
	case c.Region != "" && !validLabel(c.Region):
		return invalid("Region", "must be a DNS label (letters, digits, '-'), e.g. ie1")
	case c.HTTPTimeout < 0:
		return invalid("HTTPTimeout", "must not be negative (0 means 15s)")
	case c.MaxRetryAfter < 0:
		return invalid("MaxRetryAfter", "must not be negative (0 means 5m)")
	case c.MaxIdleConnsPerHost < 0:
		return invalid("MaxIdleConnsPerHost", "must not be negative (0 means 100)")
	case strings.IndexFunc(c.UserAgent, unicode.IsControl) >= 0:
		return invalid("UserAgent", "must not contain control characters")
	}
	if err := validateBaseURL("BaseURL", c.BaseURL); err != nil {
		return err
	}
	return validateBaseURL("MessagingBaseURL", c.MessagingBaseURL)
}

// validateBaseURL checks an optional base URL field: absolute http(s), no userinfo, no
// query or fragment.
func validateBaseURL(field, raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		// The parse error is not wrapped: it would quote the URL, userinfo included.
		return invalid(field, "must be an absolute http or https URL")
	case u.User != nil:
		return invalid(field, "must not contain user info (credentials go in AccountSID/AuthToken or APIKey/APISecret)")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return invalid(field, "must not contain a query or fragment")
	}
	return nil
}

func hasSpaceOrControl(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0
}

// validLabel reports whether s is a DNS label, which is all an edge or region can be.
func validLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-') {
			return false
		}
	}
	return true
}

// ValidSID reports whether s is prefix followed by 32 hex digits, the shape of every
// Twilio SID (e.g. ^KS[0-9a-fA-F]{32}$). The rule lives in internal/sid so that package tasks
// checks the same shape without importing the client.
func ValidSID(prefix, s string) bool { return sid.Valid(prefix, s) }
