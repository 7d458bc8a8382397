// Package browsertest runs headless Chromium through chromedp for the browser tests of the
// dashboard and the console: finding the browser (or skipping with a clear message), starting it
// with a throwaway profile and no network beyond the loopback, and opening tabs that carry
// credentials.
package browsertest

import (
	"context"
	"encoding/base64"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// chromiumNames are the executables tried, in order. Debian's package "chromium" installs
// /usr/bin/chromium.
var chromiumNames = []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome", "chrome"}

// Chromium returns the browser to run: $PROXYQ_CHROMIUM if set, else the first of
// chromiumNames on PATH. It skips the test, saying how to install one, when there is none.
func Chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("PROXYQ_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range chromiumNames {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skipf("browser test skipped: no Chromium found (tried %s; set PROXYQ_CHROMIUM, or on Debian/Ubuntu: apt-get install -y chromium)",
		strings.Join(chromiumNames, ", "))
	return ""
}

// Start launches headless Chromium for the test, with a window of width × height, and returns
// the browser's context (cancelled, and the browser stopped, when the test ends or timeout
// passes). Name resolution is mapped away for every host but the loopback, so nothing reaches
// the network.
func Start(t testing.TB, timeout time.Duration, width, height int) context.Context {
	t.Helper()
	bin := Chromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("mute-audio", true), chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.WindowSize(width, height),
		chromedp.UserDataDir(t.TempDir()),
	}
	ctx, cancelTimeout := context.WithTimeout(context.Background(), timeout)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	if err := chromedp.Do(bctx); err != nil { // starts the browser
		cancelBrowser()
		cancelAlloc()
		cancelTimeout()
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() { cancelBrowser(); cancelAlloc(); cancelTimeout() })
	return bctx
}

// Tab opens a new tab in the browser of ctx. With user set, every request of the tab carries
// HTTP Basic credentials, as a browser does once its login prompt is answered.
func Tab(t testing.TB, browser context.Context, user, password string) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	if user != "" {
		auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
		if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders,
			network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}}); err != nil {
			t.Fatalf("set the tab's credentials: %v", err)
		}
	}
	return ctx
}

// Text is the page's visible text.
func Text(t testing.TB, ctx context.Context) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		t.Fatalf("read the page's text: %v", err)
	}
	return s
}

// WaitText waits until the page's text satisfies cond (polling every 100 ms) and returns it;
// it fails the test, showing the text, when ctx ends first.
func WaitText(t testing.TB, ctx context.Context, what string, cond func(string) bool) string {
	t.Helper()
	var last string
	for {
		last, _ = chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		if cond(last) {
			return last
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v; the page says:\n%s", what, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
