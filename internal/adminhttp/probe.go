package adminhttp

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
)

// probeBodyLimit bounds how much of the answer is read for the reason.
const probeBodyLimit = 512

// Probe GETs u once, within timeout, as a container healthcheck does: no proxy from the
// environment, no keep-alive, redirects not followed (a 3xx fails). It returns the answer's
// status and the start of its body on one line ("200 OK: ready"), or an error starting
// "unhealthy:" that says why; a password in u is never shown.
func Probe(ctx context.Context, u *url.URL, timeout time.Duration) (string, error) {
	shown := u.Redacted() // never print a password given in the URL

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", fmt.Errorf("GET %s: %v", shown, err) // not reached for a URL that url.Parse accepted
	}
	req.Header.Set("User-Agent", "proxyq-healthcheck")
	client := &http.Client{
		// A zero Transport's Proxy is nil: HTTP_PROXY and friends are ignored. No keep-alive:
		// the process exits right after.
		Transport:     &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		// *url.Error already names the method and URL, redacted.
		return "", fmt.Errorf("unhealthy: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, probeBodyLimit))
	reason := resp.Status
	if s := oneLine(body); s != "" {
		reason += ": " + s
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", fmt.Errorf("unhealthy: GET %s: %s", shown, reason)
	}
	return reason, nil
}

// oneLine makes a probe's answer printable on one line: whitespace runs become one space and
// other control characters are dropped.
func oneLine(b []byte) string {
	var sb strings.Builder
	space := false
	for _, r := range strings.ToValidUTF8(string(b), "?") {
		switch {
		case unicode.IsSpace(r):
			space = true
		case unicode.IsControl(r):
		default:
			if space && sb.Len() > 0 {
				sb.WriteByte(' ')
			}
			space = false
			sb.WriteRune(r)
		}
	}
	return sb.String()
}
