package dashboard

import (
	"regexp"
	"strings"
)

// DefaultRootPath is where the dashboard is served when Config.RootPath is empty.
const DefaultRootPath = "/"

// Config configures the dashboard. Authentication is required unless AllowNoAuth is set:
// give User and Password (HTTP Basic, what a browser asks for), Token (Authorization:
// Bearer, for scripts and reverse proxies), or both. cmd/proxyq maps the fields to
// PROXYQ_DASHBOARD_USER, PROXYQ_DASHBOARD_PASSWORD, PROXYQ_DASHBOARD_TOKEN and flags.
type Config struct {
	// AllowNoAuth serves the dashboard without authentication when no credentials are set.
	// Anyone who can reach the address can then read every queue and, unless ReadOnly, delete
	// or re-run messages; New logs a warning. Credentials, when set, are always enforced.
	AllowNoAuth bool

	// AuthenticatedUpstream says every request was authenticated before it reaches the
	// dashboard (`proxyq serve --dashboard` mounts it behind the API's bearer tokens): no
	// credentials are needed and none is asked for, and New does not warn that it runs open.
	AuthenticatedUpstream bool

	// Password is the HTTP Basic password for User.
	Password string

	// ReadOnly refuses every request that would change a queue or a task (asynqmon's
	// read-only mode: only GET reaches its API) and hides the UI's action buttons.
	ReadOnly bool

	// RootPath is the URL path the dashboard is served under, e.g. "/" (default) or
	// "/dashboard". It must start with "/"; a trailing "/" is ignored.
	RootPath string

	// ShowMessageContent shows message bodies and media URLs in payload views. By default
	// they are replaced by "[redacted: N chars]" and "[redacted: N URLs]": they are personal
	// data, and the SIDs and send_before are enough to find a message.
	ShowMessageContent bool

	// Token is a bearer token accepted in "Authorization: Bearer <token>".
	Token string

	// User is the HTTP Basic user name. It must not contain ':'.
	User string
}

// ConfigError names the Config field (or "auth" for the credentials as a whole) and the rule
// its value broke. cmd/proxyq maps Field to an environment variable or flag.
type ConfigError struct {
	Field string
	Rule  string
}

func (e *ConfigError) Error() string {
	if e.Field == "auth" {
		return "dashboard: " + e.Rule
	}
	return "dashboard: " + e.Field + " " + e.Rule
}

// WithDefaults returns a copy of c with RootPath defaulted and normalised (no trailing "/"
// except for the root itself).
func (c Config) WithDefaults() Config {
	if c.RootPath == "" {
		c.RootPath = DefaultRootPath
	}
	if len(c.RootPath) > 1 {
		c.RootPath = strings.TrimRight(c.RootPath, "/")
		if c.RootPath == "" {
			c.RootPath = "/"
		}
	}
	return c
}

// rootPathPattern allows plain path segments only: the root path is put into the UI's HTML
// and into redirects, so nothing that needs escaping may pass.
var rootPathPattern = regexp.MustCompile(`^(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*/?$`)

// Validate reports the first rule c breaks as a *ConfigError. Call it on the result of
// WithDefaults. Messages never echo secret values.
func (c Config) Validate() error {
	switch {
	case c.RootPath == "" || c.RootPath[0] != '/':
		return &ConfigError{Field: "RootPath", Rule: `must start with "/", e.g. "/" or "/dashboard"`}
	case !rootPathPattern.MatchString(c.RootPath):
		return &ConfigError{Field: "RootPath", Rule: `must be "/" or "/"-separated segments of A-Z a-z 0-9 . _ ~ - (not starting with "."), e.g. "/dashboard"`}
	case strings.Contains(c.User, ":"):
		return &ConfigError{Field: "User", Rule: `must not contain ":" (HTTP Basic splits user and password there)`}
	case c.User != "" && c.Password == "":
		return &ConfigError{Field: "Password", Rule: "is required when User is set"}
	case c.Password != "" && c.User == "":
		return &ConfigError{Field: "User", Rule: "is required when Password is set"}
	case hasSpaceOrControl(c.User):
		return &ConfigError{Field: "User", Rule: "must not contain spaces or control characters"}
	case hasSpaceOrControl(c.Token):
		return &ConfigError{Field: "Token", Rule: "must not contain spaces or control characters"}
	case !c.hasCredentials() && !c.AllowNoAuth && !c.AuthenticatedUpstream:
		return &ConfigError{Field: "auth", Rule: "set User and Password, or Token, or AllowNoAuth (authentication is required by default)"}
	}
	return nil
}

func (c Config) hasCredentials() bool { return c.User != "" || c.Token != "" }

func hasSpaceOrControl(s string) bool {
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return true
		}
	}
	return false
}
