package console_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/proxyq/proxyq/internal/browsertest"
	"github.com/proxyq/proxyq/tasks"
)

// TestSupportAgentFlow is the console in headless Chromium (chromedp) through what a support
// agent does when "the rider says the driver's message never came": search the rider's
// participant SID, open the undelivered message, read its story (the attempt, the creation,
// the status callbacks, delivery error 30003 with its meaning, its status webhook and how the
// application answered it), find the
// message by its dashed idempotency key, then, as an operator, bulk-retry the archived
// messages a filter shows after its confirmation. A read-only login sees no actions and has
// them refused; an anonymous visit is refused.
//
// With PROXYQ_CONSOLE_SCREENSHOTS=dir (make console-screenshots), a PNG of each page is saved
// there.
func TestSupportAgentFlow(t *testing.T) {
	browser := browsertest.Start(t, 3*time.Minute, 1280, 900)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := newRig(t, ctx)
	shots := os.Getenv("PROXYQ_CONSOLE_SCREENSHOTS")
	if shots != "" {
		// Made here, so that the flow runs: with the directory missing, the first screenshot
		// failed its subtest and the later subtests waited out the browser's 3 minutes.
		if err := os.MkdirAll(shots, 0o755); err != nil {
			t.Fatalf("PROXYQ_CONSOLE_SCREENSHOTS: %v", err)
		}
	}
	shot := func(t *testing.T, tab context.Context, name string) {
		t.Helper()
		if shots == "" {
			return
		}
		png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	navigate := func(t *testing.T, tab context.Context, u string) {
		t.Helper()
		if err := chromedp.Do(tab, chromedp.Navigate(u)); err != nil {
			t.Fatalf("navigate to %s: %v", u, err)
		}
	}

	t.Run("anonymous is refused", func(t *testing.T) {
		tab := browsertest.Tab(t, browser, "", "")
		resp, err := chromedp.RunResponse(tab, chromedp.Navigate(r.base+"/"))
		if err == nil && resp.Status != http.StatusUnauthorized {
			t.Fatalf("status %d without credentials, want 401", resp.Status)
		}
		if text := browsertest.Text(t, tab); strings.Contains(text, "Top errors") || strings.Contains(text, riderKey) {
			t.Fatalf("console shown without credentials:\n%s", text)
		}
	})

	op := browsertest.Tab(t, browser, opUser, opPassword)

	t.Run("search the participant, open the undelivered message", func(t *testing.T) {
		navigate(t, op, r.base+"/")
		home := browsertest.WaitText(t, op, "the home page with top errors", func(s string) bool {
			return strings.Contains(s, "Top errors") && strings.Contains(s, "30003")
		})
		for _, want := range []string{"unreachable destination handset", "20404", "resource not found"} {
			if !strings.Contains(home, want) {
				t.Errorf("top errors lack %q:\n%s", want, home)
			}
		}
		shot(t, op, "console-home.png")
		// From the keyboard: type into the search box and press Enter.
		if err := chromedp.Do(op, chromedp.SendKeys(chromedp.CSS(`input[name="q"]`), riderKP+"\n")); err != nil {
			t.Fatal(err)
		}
		list := browsertest.WaitText(t, op, "the rider's messages", func(s string) bool {
			return strings.Contains(s, "Messages to participant "+riderKP) && strings.Contains(s, riderKey)
		})
		if strings.Contains(list, r.driverID) {
			t.Errorf("the rider's list shows the driver's message %s:\n%s", r.driverID, list)
		}
		shot(t, op, "console-participant.png")
		if err := chromedp.Do(op, chromedp.Click(chromedp.CSS(`a.msgid`))); err != nil {
			t.Fatal(err)
		}
		story := browsertest.WaitText(t, op, "the story with the delivery error", func(s string) bool {
			return strings.Contains(s, "Delivery error 30003") && strings.Contains(s, "Status webhook (undelivered)")
		})
		for _, want := range []string{
			"Enqueued", "through HTTP API",
			"Attempt 1: created", "HTTP 201",
			"Created at Twilio", "interaction KI",
			"Status: queued", "Status: sent", "Status: undelivered",
			"unreachable destination handset",
			"your application's last answer", "503",
			"[redacted: ",
		} {
			if !strings.Contains(story, want) {
				t.Errorf("the story lacks %q:\n%s", want, story)
			}
		}
		if strings.Contains(story, riderBody) {
			t.Errorf("the body is shown without being revealed:\n%s", story)
		}
		// In order: enqueued, attempt, created, callbacks, delivery error.
		last := -1
		for _, step := range []string{"Enqueued", "Attempt 1", "Created at Twilio", "Status: queued", "Status: undelivered", "Delivery error 30003"} {
			i := strings.Index(story, step)
			if i < last {
				t.Errorf("%q is out of order in the story:\n%s", step, story)
			}
			last = i
		}
		shot(t, op, "console-message.png")
	})

	t.Run("reveal the body, audited", func(t *testing.T) {
		if err := chromedp.Do(op, chromedp.Click(chromedp.CSS(`#reveal`))); err != nil {
			t.Fatal(err)
		}
		browsertest.WaitText(t, op, "the revealed body", func(s string) bool { return strings.Contains(s, riderBody) })
	})

	t.Run("a conversation lists its Conversations message; its page names the API and the IM", func(t *testing.T) {
		navigate(t, op, r.base+"/")
		if err := chromedp.Do(op, chromedp.SendKeys(chromedp.CSS(`input[name="q"]`), clinicCH+"\n")); err != nil {
			t.Fatal(err)
		}
		browsertest.WaitText(t, op, "the conversation's messages", func(s string) bool {
			return strings.Contains(s, "Messages in conversation "+clinicCH) && strings.Contains(s, r.convID) && strings.Contains(s, "Conversations")
		})
		if err := chromedp.Do(op, chromedp.Click(chromedp.CSS(`a.msgid`))); err != nil {
			t.Fatal(err)
		}
		story := browsertest.WaitText(t, op, "the Conversations message's story", func(s string) bool {
			return strings.Contains(s, "Twilio Conversations") && strings.Contains(s, r.convIM)
		})
		for _, want := range []string{"clinic", clinicIS, "Delivery receipt: delivered", "Status webhook (delivered): accepted"} {
			if !strings.Contains(story, want) {
				t.Errorf("the Conversations story lacks %q:\n%s", want, story)
			}
		}
	})

	t.Run("a dashed idempotency key finds its message, shown in full", func(t *testing.T) {
		navigate(t, op, r.base+"/search?q="+url.QueryEscape(riderKey))
		browsertest.WaitText(t, op, "the message page", func(s string) bool { return strings.Contains(s, "Story") })
		id, err := chromedp.Run(op, chromedp.Evaluate[string](`document.getElementById("message-id").innerText`))
		if err != nil || id != riderKey {
			t.Fatalf("message ID shown = %q (%v), want %q", id, err, riderKey)
		}
	})

	t.Run("unknown value says so", func(t *testing.T) {
		navigate(t, op, r.base+"/search?q=KP99999999999999999999999999999999")
		browsertest.WaitText(t, op, "not found", func(s string) bool { return strings.Contains(s, "No messages are known for") })
		navigate(t, op, r.base+"/search?q=no-such-message")
		browsertest.WaitText(t, op, "not found", func(s string) bool { return strings.Contains(s, `Nothing is known by "no-such-message"`) })
	})

	t.Run("bulk-retry the archived messages of a filter after confirmation", func(t *testing.T) {
		navigate(t, op, r.base+"/?state=archived&code=20404")
		browsertest.WaitText(t, op, "the archived list", func(s string) bool { return strings.Contains(s, r.archived[0]) })
		shot(t, op, "console-archived.png")
		if err := chromedp.Do(op, chromedp.Click(chromedp.CSS(`#bulk-retry`))); err != nil {
			t.Fatal(err)
		}
		browsertest.WaitText(t, op, "the confirmation", func(s string) bool { return strings.Contains(s, "Retry 3 archived messages?") })
		for _, id := range r.archived {
			if st, _ := tasks.Lookup(ctx, r.insp, id); st == nil || st.State != "archived" {
				t.Fatalf("%s is not archived before the confirmation: %+v", id, st)
			}
		}
		shot(t, op, "console-confirm.png")
		if err := chromedp.Do(op, chromedp.Click(chromedp.CSS(`#confirm-retry`))); err != nil {
			t.Fatal(err)
		}
		browsertest.WaitText(t, op, "the result", func(s string) bool { return strings.Contains(s, "retried 3 of 3") })
		navigate(t, op, r.base+"/audit")
		audit := browsertest.WaitText(t, op, "the audit log", func(s string) bool { return strings.Contains(s, "bulk-retry") })
		for _, want := range []string{opUser, "retried 3 of 3", "reveal", riderKey} {
			if !strings.Contains(audit, want) {
				t.Errorf("the audit log lacks %q:\n%s", want, audit)
			}
		}
		shot(t, op, "console-audit.png")
	})

	t.Run("read-only hides and refuses the actions", func(t *testing.T) {
		ro := browsertest.Tab(t, browser, roUser, roPassword)
		navigate(t, ro, r.roBase+"/m/"+riderKey)
		text := browsertest.WaitText(t, ro, "the message page", func(s string) bool { return strings.Contains(s, "Story") })
		if !strings.Contains(text, "read-only") {
			t.Errorf("the page does not say it is read-only:\n%s", text)
		}
		n, err := chromedp.Run(ro, chromedp.Evaluate[int](`document.querySelectorAll("form[method=post]").length`))
		if err != nil || n != 0 {
			t.Errorf("read-only page has %d action forms (%v), want none", n, err)
		}
		// Refused even when posted: with the page's own origin, and whatever token.
		for _, path := range []string{"/action/retry", "/action/cancel", "/bulk-retry"} {
			req, _ := http.NewRequest("POST", r.roBase+path, strings.NewReader("id="+r.archived[0]+"&csrf=00&state=archived&queue=default&confirm=yes"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(roUser, roPassword)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("POST %s on the read-only console: %d, want 403: %s", path, resp.StatusCode, body)
			}
		}
	})

	t.Run("phone-size screen", func(t *testing.T) {
		if err := chromedp.Do(op, chromedp.EmulateViewport(390, 844)); err != nil {
			t.Fatal(err)
		}
		navigate(t, op, r.base+"/m/"+riderKey)
		browsertest.WaitText(t, op, "the message page", func(s string) bool { return strings.Contains(s, "Delivery error 30003") })
		width, err := chromedp.Run(op, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
		if err != nil || width > 390 {
			t.Errorf("the page is %d px wide on a 390 px screen (%v): it scrolls sideways", width, err)
		}
		shot(t, op, "console-message-phone.png")
	})
}
