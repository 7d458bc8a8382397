package devmode

import (
	"fmt"
	"io"
	"strings"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
)

// The fake's account in dev mode.
const (
	// FakeAccountSID is the account the worker sends as: the fake accepts any AC… with any token.
	FakeAccountSID = "AC00000000000000000000000000000000"
	// FakeAuthToken is the fake account's Auth Token: the client authenticates with it and the
	// fake signs its status callbacks with it.
	FakeAuthToken = "dev"
	// FakePrefix is the path under which the dev server mounts the fake Twilio API.
	FakePrefix = "/twilio"
	// ConversationsPrefix is where the dev server (and the sandbox) mounts the fake Conversations
	// API (convtest): the worker's Conversations base URL is the server's URL + this prefix.
	ConversationsPrefix = "/conversations"
)

// Defaults are dev mode's values of the PROXYQ_* variables the user did not set. With the fake
// (live false) more are eager: against Twilio, a 2 s reconciliation settle window or a 200 ms
// backoff would be too eager.
func Defaults(live bool) map[string]string {
	d := map[string]string{
		"PROXYQ_LOG_LEVEL":   "error", // info logs one line per attempt
		"PROXYQ_LOG_FORMAT":  "console",
		"PROXYQ_CONCURRENCY": "10",
	}
	if !live {
		for k, v := range map[string]string{
			"PROXYQ_HTTP_TIMEOUT":           "5s",
			"PROXYQ_SHUTDOWN_TIMEOUT":       "10s",
			"PROXYQ_BACKOFF_BASE":           "200ms",
			"PROXYQ_BACKOFF_MAX":            "2s",
			"PROXYQ_DELAYED_CHECK_INTERVAL": "100ms",
			"PROXYQ_RECONCILE_SETTLE":       "2s",
		} {
			d[k] = v
		}
	}
	return d
}

// Getenv is getenv with Defaults(live) under it: a variable unset or blank in getenv takes dev
// mode's value.
func Getenv(getenv func(string) string, live bool) func(string) string {
	defaults := Defaults(live)
	return func(k string) string {
		if v := getenv(k); strings.TrimSpace(v) != "" {
			return v
		}
		return defaults[k]
	}
}

// StartEmbeddedRedis starts miniredis on a loopback port. miniredis runs asynq's Lua scripts
// and the worker's ledger scripts unchanged; ClockTTL makes keys expire with the wall clock as
// in Redis (miniredis's default is to never expire them unless a test fast-forwards), so dead
// servers and finished leases disappear as they should. It returns the connection, a
// description for the banner and the function that stops it.
func StartEmbeddedRedis() (asynq.RedisConnOpt, string, func(), error) {
	mr := miniredis.NewMiniRedis()
	mr.ClockTTL(true)
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		return nil, "", nil, fmt.Errorf("start embedded redis: %w", err)
	}
	return asynq.RedisClientOpt{Addr: mr.Addr()}, "redis://" + mr.Addr() + "/0 (embedded miniredis, in memory: gone when dev stops)", mr.Close, nil
}

// Banner is what dev prints once everything is up.
type Banner struct {
	BaseURL      string // the dev server, http://host:port
	Redis        string // where Redis is, as StartEmbeddedRedis or the caller describes it
	Fake         bool   // the fake Twilio API is mounted (false: --live)
	User         string // the dashboard's user; "" when a bearer token is used
	Password     string // shown only when Generated
	Generated    bool   // the dashboard login was generated, not set by the user
	UnusedTwilio bool   // TWILIO_* credentials are set but the fake is used
}

// Print writes the banner to out.
func (b Banner) Print(out io.Writer) {
	base := b.BaseURL
	api := "the LIVE Twilio Proxy API"
	if b.Fake {
		api = "a fake Twilio Proxy API"
	}
	fmt.Fprintf(out, "proxyq dev: Redis, %s, a worker and the dashboard in one process.\n\n", api)
	fmt.Fprintf(out, "  Dashboard   %s/\n", base)
	switch {
	case b.Generated:
		fmt.Fprintf(out, "              user %s, password %s  (generated; set PROXYQ_DASHBOARD_USER/PASSWORD to choose)\n", b.User, b.Password)
	case b.User != "":
		fmt.Fprintf(out, "              user %s, password from PROXYQ_DASHBOARD_PASSWORD\n", b.User)
	default:
		fmt.Fprintf(out, "              bearer token from PROXYQ_DASHBOARD_TOKEN\n")
	}
	fmt.Fprintf(out, "  Metrics     %s/metrics\n", base)
	fmt.Fprintf(out, "  Health      %s/healthz  %s/readyz\n", base, base)
	if b.Fake {
		fmt.Fprintf(out, "  Fake API    %s%s  (PROXYQ_API_BASE_URL for your own code; any AC… SID, any token)\n", base, FakePrefix)
		fmt.Fprintf(out, "  Created     %s/_proxytest/interactions\n", base)
	}
	fmt.Fprintf(out, "  Redis       %s\n\n", b.Redis)
	if !b.Fake {
		fmt.Fprintln(out, "  LIVE: messages you enqueue are sent through Twilio.")
		fmt.Fprintln(out)
	} else if b.UnusedTwilio {
		fmt.Fprintln(out, "  Note: TWILIO_* credentials are set but unused: dev talks to the fake unless --live.")
		fmt.Fprintln(out)
	}
}
