package main

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/proxyq/proxyq/internal/adminhttp"
)

const (
	defaultHealthcheckURL     = "http://127.0.0.1:9090/readyz"
	defaultHealthcheckTimeout = 2 * time.Second
)

const healthcheckDoc = `
Probes a health endpoint with one GET and exits 0 when it answers 2xx, 1 otherwise (another
status, a timeout, a refused connection), printing why. It is the container healthcheck of
the proxyq image, which is distroless (no shell, no curl):

  healthcheck:
    test: ["CMD", "/proxyq", "healthcheck", "--url", "http://127.0.0.1:9090/readyz"]

The default URL is the worker's admin readiness probe (PROXYQ_ADMIN_ADDR :9090); proxyq serve
answers /readyz on its own port (8081), the dashboard on 8080. Redirects are not followed (a
3xx fails) and no proxy from the environment is used: the probe is of this host.

Exit codes: 0 healthy; 1 unhealthy or unreachable; 2 bad flags.`

func init() {
	register(&command{name: "healthcheck", summary: "probe a health endpoint: exit 0 on 2xx (for container healthchecks)", run: runHealthcheck})
}

func runHealthcheck(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSetDoc("healthcheck", "healthcheck [--url http://127.0.0.1:9090/readyz] [--timeout 2s]", healthcheckDoc)
	rawURL := fs.String("url", defaultHealthcheckURL, "URL to GET; healthy when it answers 2xx")
	timeout := fs.Duration("timeout", defaultHealthcheckTimeout, "how long to wait for the whole answer")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (use --url)", fs.Arg(0))
	}
	u, err := url.Parse(*rawURL)
	switch {
	case err != nil:
		return usagef("--url=%q: %v", *rawURL, err)
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		return usagef("--url=%q: want an absolute http:// or https:// URL such as %s", u.Redacted(), defaultHealthcheckURL)
	case *timeout <= 0:
		return usagef("--timeout=%v: want a positive duration such as 2s", *timeout)
	}
	shown := u.Redacted() // never print a password given in the URL
	reason, err := adminhttp.Probe(ctx, u, *timeout)
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "healthy: GET %s: %s\n", shown, reason)
	return nil
}
