package conversations

import (
	"net/http"
	"strings"
	"time"

	"github.com/proxyq/proxyq/proxyclient"
)

// Defaults applied by Config.WithDefaults.
const (
	DefaultBaseURL       = "https://conversations.twilio.com"
	DefaultHTTPTimeout   = proxyclient.DefaultHTTPTimeout
	DefaultMaxRetryAfter = proxyclient.DefaultMaxRetryAfter
	// DefaultEdgeRegion is the region Twilio's SDKs use when only an edge is given.
	DefaultEdgeRegion = proxyclient.DefaultEdgeRegion
)

// Config configures a Client. Its fields mean what proxyclient.Config's fields of the same
// name mean (the credentials of one Twilio account serve both APIs); the zero value of every
// optional field means "use the default". Env mapping lives in cmd: BaseURL is
// PROXYQ_CONVERSATIONS_BASE_URL there, as proxyclient's BaseURL is PROXYQ_API_BASE_URL.
type Config struct {
	// AccountSID (AC + 32 hex) and AuthToken authenticate with HTTP Basic when no API key is
	// given. AccountSID also names the account for shared limits (AccountKey).
	AccountSID string
	AuthToken  string

	// APIKey (SK + 32 hex) and APISecret win over AccountSID/AuthToken when both are given.
	APIKey    string
	APISecret string

	// BaseURL overrides the API host, e.g. a fake's "http://127.0.0.1:4010/twilio". It may carry
	// a path prefix; "/v1/…" is appended. When set, Edge and Region are ignored. Empty means
	// DefaultBaseURL adjusted by Edge/Region.
	BaseURL string

	// Edge and Region select a regional endpoint as Twilio's SDKs do:
	// conversations.{edge}.{region}.twilio.com; an edge without a region uses us1.
	Edge   string
	Region string

	// HTTPClient is an optional source of transport settings. It is copied; the copy never
	// follows redirects. Nil means a private clone of http.DefaultTransport.
	HTTPClient *http.Client

	// WrapTransport, when set, wraps the transport (instrumentation). It sees the Authorization
	// header; it must not record headers or bodies.
	WrapTransport func(http.RoundTripper) http.RoundTripper

	// MaxIdleConnsPerHost for the default transport. Default 100. Ignored with HTTPClient.
	MaxIdleConnsPerHost int

	// HTTPTimeout bounds each HTTP request (one page of a list is one request), on top of the
	// caller's context. Default 15s.
	HTTPTimeout time.Duration

	// MaxRetryAfter caps a server's Retry-After. Default 5m.
	MaxRetryAfter time.Duration

	// UserAgent is a product token appended after "proxyq/<Version>".
	UserAgent string
}

// WithDefaults returns a copy of c with HTTPTimeout 15s, MaxRetryAfter 5m, and Region "us1"
// when Edge is set without one. BaseURL stays empty so that Edge/Region keep working.
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

// Endpoint returns the base URL requests go to (without "/v1"): BaseURL when set, else the
// Twilio host chosen by Edge and Region.
func (c Config) Endpoint() string {
	if c.BaseURL != "" {
		return strings.TrimRight(c.BaseURL, "/")
	}
	edge, region := strings.ToLower(c.Edge), strings.ToLower(c.Region)
	if edge != "" && region == "" {
		region = DefaultEdgeRegion
	}
	host := "conversations"
	for _, p := range []string{edge, region} {
		if p != "" {
			host += "." + p
		}
	}
	return "https://" + host + ".twilio.com"
}

// Validate reports the first rule c breaks as a *proxyclient.ValidationError naming the
// Config field. The rules are proxyclient.Config's (the same credentials, edge, region,
// timeouts and base-URL rules), checked by the same code so the two clients cannot drift.
func (c Config) Validate() error {
	return proxyclient.Config{
		AccountSID:          c.AccountSID,
		AuthToken:           c.AuthToken,
		APIKey:              c.APIKey,
		APISecret:           c.APISecret,
		BaseURL:             c.BaseURL,
		Edge:                c.Edge,
		Region:              c.Region,
		MaxIdleConnsPerHost: c.MaxIdleConnsPerHost,
		HTTPTimeout:         c.HTTPTimeout,
		MaxRetryAfter:       c.MaxRetryAfter,
		UserAgent:           c.UserAgent,
	}.Validate()
}
