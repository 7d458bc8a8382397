package dashboard_test

// A minimal Chrome DevTools Protocol client for the browser test, over Chromium's
// --remote-debugging-pipe: JSON messages separated by NUL bytes on file descriptors 3 (to the
// browser) and 4 (from it). The pipe needs no WebSocket library and no port, so the test adds
// no dependency and opens nothing but its own loopback servers.

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// chromiumNames are the executables tried, in order. Debian's package "chromium" installs
// /usr/bin/chromium.
var chromiumNames = []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome", "chrome"}

// findChromium returns the browser to run: $PROXYQ_CHROMIUM if set, else the first of
// chromiumNames on PATH. It skips the test, saying how to install one, when there is none.
func findChromium(t *testing.T) string {
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

type cdpMessage struct {
	ID        int64           `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// browser is one headless Chromium driven over the pipe.
type browser struct {
	t   *testing.T
	cmd *exec.Cmd
	w   *os.File

	mu       sync.Mutex
	nextID   int64
	pending  map[int64]chan cdpMessage
	handlers map[string]func(cdpMessage) // by sessionId: events of one page
	readErr  error
	done     chan struct{}
}

// startBrowser launches Chromium headless with a throwaway profile. Name resolution is mapped
// away for every host but the loopback, so the dashboard's web fonts (fonts.googleapis.com)
// fail fast instead of reaching the network.
func startBrowser(t *testing.T, bin string) *browser {
	t.Helper()
	toBrowserR, toBrowserW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	fromBrowserR, fromBrowserW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars",
		"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
		"--window-size=1400,1000",
		"--user-data-dir="+t.TempDir(),
		"--remote-debugging-pipe", "about:blank")
	cmd.ExtraFiles = []*os.File{toBrowserR, fromBrowserW} // fds 3 and 4
	var stderr strings.Builder
	cmd.Stderr = &limitedWriter{b: &stderr, max: 64 << 10}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	_ = toBrowserR.Close()
	_ = fromBrowserW.Close()
	b := &browser{t: t, cmd: cmd, w: toBrowserW, pending: map[int64]chan cdpMessage{},
		handlers: map[string]func(cdpMessage){}, done: make(chan struct{})}
	go b.readLoop(fromBrowserR)
	t.Cleanup(func() {
		_ = b.w.Close() // closing the pipe makes Chromium exit
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("chromium stderr (last part):\n%s", tail(stderr.String(), 4000))
		}
	})
	return b
}

func (b *browser) readLoop(r *os.File) {
	defer close(b.done)
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		frame, err := br.ReadBytes(0)
		if err != nil {
			b.mu.Lock()
			b.readErr = fmt.Errorf("devtools pipe closed: %w", err)
			for _, ch := range b.pending {
				close(ch)
			}
			b.pending = map[int64]chan cdpMessage{}
			b.mu.Unlock()
			return
		}
		var msg cdpMessage
		if err := json.Unmarshal(frame[:len(frame)-1], &msg); err != nil {
			continue
		}
		b.mu.Lock()
		if msg.ID != 0 {
			ch := b.pending[msg.ID]
			delete(b.pending, msg.ID)
			b.mu.Unlock()
			if ch != nil {
				ch <- msg
			}
			continue
		}
		h := b.handlers[msg.SessionID]
		b.mu.Unlock()
		if h != nil {
			h(msg) // must not wait for replies: this goroutine delivers them
		}
	}
}

func (b *browser) write(session, method string, params any, wantReply bool) (chan cdpMessage, error) {
	raw, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.readErr != nil {
		b.mu.Unlock()
		return nil, b.readErr
	}
	b.nextID++
	id := b.nextID
	var ch chan cdpMessage
	if wantReply {
		ch = make(chan cdpMessage, 1)
		b.pending[id] = ch
	}
	data, _ := json.Marshal(cdpMessage{ID: id, Method: method, Params: raw, SessionID: session})
	_, err = b.w.Write(append(data, 0))
	b.mu.Unlock()
	return ch, err
}

// call sends one command and waits for its reply, decoding the result into out (may be nil).
func (b *browser) call(ctx context.Context, session, method string, params, out any) error {
	if params == nil {
		params = struct{}{}
	}
	ch, err := b.write(session, method, params, true)
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case msg, ok := <-ch:
		if !ok {
			return fmt.Errorf("%s: browser went away", method)
		}
		if msg.Error != nil {
			return fmt.Errorf("%s: %s (%d)", method, msg.Error.Message, msg.Error.Code)
		}
		if out != nil {
			return json.Unmarshal(msg.Result, out)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// send is a command whose reply nobody waits for; event handlers use it.
func (b *browser) send(session, method string, params any) {
	_, _ = b.write(session, method, params, false)
}

// page is one tab in its own browser context, so HTTP auth caches are not shared between pages.
type page struct {
	b       *browser
	session string

	mu        sync.Mutex
	statuses  map[string]int // last HTTP status per URL (Network.responseReceived)
	authTries int
}

// credentials, when set, answer the browser's HTTP auth prompt, as a person typing into the
// login dialog would.
type credentials struct{ user, password string }

func (b *browser) newPage(ctx context.Context, creds *credentials) *page {
	b.t.Helper()
	var bc struct {
		BrowserContextID string `json:"browserContextId"`
	}
	if err := b.call(ctx, "", "Target.createBrowserContext", map[string]any{"disposeOnDetach": true}, &bc); err != nil {
		b.t.Fatal(err)
	}
	var target struct {
		TargetID string `json:"targetId"`
	}
	if err := b.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank", "browserContextId": bc.BrowserContextID}, &target); err != nil {
		b.t.Fatal(err)
	}
	var att struct {
		SessionID string `json:"sessionId"`
	}
	if err := b.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att); err != nil {
		b.t.Fatal(err)
	}
	p := &page{b: b, session: att.SessionID, statuses: map[string]int{}}
	b.mu.Lock()
	b.handlers[p.session] = func(m cdpMessage) { p.event(m, creds) }
	b.mu.Unlock()
	for _, c := range []struct {
		method string
		params any
	}{
		{"Page.enable", nil},
		{"Network.enable", nil},
		{"Emulation.setDeviceMetricsOverride", map[string]any{"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": false}},
	} {
		if err := b.call(ctx, p.session, c.method, c.params, nil); err != nil {
			b.t.Fatal(err)
		}
	}
	if creds != nil {
		// Fetch pauses every request; handleAuthRequests turns HTTP auth challenges into
		// Fetch.authRequired events instead of failing the navigation.
		if err := b.call(ctx, p.session, "Fetch.enable", map[string]any{"handleAuthRequests": true,
			"patterns": []map[string]any{{"urlPattern": "*"}}}, nil); err != nil {
			b.t.Fatal(err)
		}
	}
	return p
}

func (p *page) event(m cdpMessage, creds *credentials) {
	switch m.Method {
	case "Fetch.requestPaused":
		var ev struct {
			RequestID string `json:"requestId"`
		}
		_ = json.Unmarshal(m.Params, &ev)
		p.b.send(p.session, "Fetch.continueRequest", map[string]any{"requestId": ev.RequestID})
	case "Fetch.authRequired":
		var ev struct {
			RequestID string `json:"requestId"`
		}
		_ = json.Unmarshal(m.Params, &ev)
		p.mu.Lock()
		p.authTries++
		tries := p.authTries
		p.mu.Unlock()
		resp := map[string]any{"response": "CancelAuth"}
		if creds != nil && tries <= 20 { // bounded: wrong credentials must not loop forever
			resp = map[string]any{"response": "ProvideCredentials", "username": creds.user, "password": creds.password}
		}
		p.b.send(p.session, "Fetch.continueWithAuth", map[string]any{"requestId": ev.RequestID, "authChallengeResponse": resp})
	case "Network.responseReceived":
		var ev struct {
			Response struct {
				URL    string `json:"url"`
				Status int    `json:"status"`
			} `json:"response"`
		}
		_ = json.Unmarshal(m.Params, &ev)
		p.mu.Lock()
		p.statuses[ev.Response.URL] = ev.Response.Status
		p.mu.Unlock()
	}
}

// status returns the last HTTP status seen for url (0: none).
func (p *page) status(url string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.statuses[url]
}

// navigate loads url and returns Chromium's errorText for a navigation that failed ("" when
// a document was loaded, whatever its status).
func (p *page) navigate(ctx context.Context, url string) string {
	p.b.t.Helper()
	var res struct {
		ErrorText string `json:"errorText"`
	}
	if err := p.b.call(ctx, p.session, "Page.navigate", map[string]any{"url": url}, &res); err != nil {
		p.b.t.Fatal(err)
	}
	return res.ErrorText
}

// eval evaluates a JavaScript expression and decodes its value into out.
func (p *page) eval(ctx context.Context, expr string, out any) error {
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := p.b.call(ctx, p.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &res); err != nil {
		return err
	}
	if res.ExceptionDetails != nil {
		return fmt.Errorf("javascript: %s", res.ExceptionDetails.Text)
	}
	if out == nil || len(res.Result.Value) == 0 {
		return nil
	}
	return json.Unmarshal(res.Result.Value, out)
}

// text returns the page's visible text.
func (p *page) text(ctx context.Context) string {
	var s string
	_ = p.eval(ctx, `document.body ? document.body.innerText : ""`, &s)
	return s
}

// waitFor polls cond every 100 ms until it holds or ctx ends; it fails the test with the
// page's text when ctx ends first.
func (p *page) waitFor(ctx context.Context, what string, cond func(text string) bool) string {
	p.b.t.Helper()
	for {
		text := p.text(ctx)
		if cond(text) {
			return text
		}
		select {
		case <-ctx.Done():
			p.b.t.Fatalf("browser: gave up waiting for %s; page text:\n%s", what, tail(text, 3000))
			return ""
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// screenshot returns a PNG of the viewport.
func (p *page) screenshot(ctx context.Context) ([]byte, error) {
	var res struct {
		Data string `json:"data"`
	}
	if err := p.b.call(ctx, p.session, "Page.captureScreenshot", map[string]any{"format": "png"}, &res); err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(res.Data)
}

type limitedWriter struct {
	mu  sync.Mutex
	b   *strings.Builder
	max int
}

func (w *limitedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.b.Len() < w.max {
		w.b.Write(p[:min(len(p), w.max-w.b.Len())])
	}
	return len(p), nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
