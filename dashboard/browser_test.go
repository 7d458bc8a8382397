package dashboard_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/dashboard"
	"github.com/proxyq/proxyq/internal/browsertest"
	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/worker"
)

// TestBrowser drives the dashboard in headless Chromium (chromedp): a visit without
// credentials is refused; with them the console is the home page and asynqmon answers under
// /queues/, where a completed message opens from the completed list and its page shows the
// interaction SID from the outcome record, with the body redacted.
//
// The messages are sent by the real worker against the proxytest fake, so the page shows what
// production would. Set PROXYQ_SCREENSHOT=path.png to keep a screenshot of the task page.
func TestBrowser(t *testing.T) {
	browser := browsertest.Start(t, 60*time.Second, 1400, 1000)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()

	db := redistest.NewDB(t)
	taskID, interactionSID := sendOne(t, ctx, db)

	const user, password = "admin", "correct horse battery staple"
	d, err := dashboard.New(dashboard.Config{User: user, Password: password, RootPath: "/dashboard"}, db.ConnOpt(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	mux := http.NewServeMux()
	mux.Handle("/dashboard/", d)
	ts := httptest.NewServer(mux) // 127.0.0.1
	t.Cleanup(ts.Close)
	base := ts.URL + "/dashboard"

	t.Run("refused without credentials", func(t *testing.T) {
		tab := browsertest.Tab(t, browser, "", "")
		// Headless Chromium with no one to answer the prompt either fails the navigation
		// (net::ERR_INVALID_AUTH_CREDENTIALS) or shows the 401 page; both are refusals.
		resp, err := chromedp.RunResponse(tab, chromedp.Navigate(base+"/"))
		if err == nil && resp.Status != http.StatusUnauthorized {
			t.Fatalf("navigation without credentials: status %d; want a refusal", resp.Status)
		}
		if text := browsertest.Text(t, tab); strings.Contains(text, "proxyq console") || strings.Contains(text, "default") {
			t.Fatalf("dashboard content shown without credentials:\n%s", text)
		}
	})

	t.Run("log in, the console is home, open a completed task in asynqmon", func(t *testing.T) {
		tab := browsertest.Tab(t, browser, user, password)
		if err := chromedp.Do(tab, chromedp.Navigate(base+"/")); err != nil {
			t.Fatalf("navigate with credentials: %v", err)
		}
		browsertest.WaitText(t, tab, "the console's home page", func(s string) bool {
			return strings.Contains(s, "proxyq console") && strings.Contains(s, "Top errors")
		})

		if err := chromedp.Do(tab, chromedp.Navigate(base+"/queues/queues/default?status=completed")); err != nil {
			t.Fatal(err)
		}
		browsertest.WaitText(t, tab, "the completed task in asynqmon's list", func(s string) bool { return strings.Contains(s, "browser") })
		// Open the task as a user would: click its row (the ID cell, not the copy button).
		clicked, err := chromedp.Run(tab, chromedp.Evaluate[bool](`(() => {
			const row = [...document.querySelectorAll("tbody tr")].find(r => r.innerText.includes("browser"));
			if (!row) return false;
			(row.querySelector("th") || row).click();
			return true;
		})()`))
		if err != nil || !clicked {
			t.Fatalf("click the completed task's row: clicked=%v err=%v", clicked, err)
		}
		text := browsertest.WaitText(t, tab, "the task page with the interaction SID", func(s string) bool {
			return strings.Contains(s, interactionSID)
		})
		path, _ := chromedp.Run(tab, chromedp.Evaluate[string]("location.pathname"))
		if want := "/dashboard/queues/queues/default/tasks/" + taskID; path != want {
			t.Errorf("task page path = %q, want %q", path, want)
		}
		// The record is kept compact in Redis; the page shows its documented keys.
		for _, want := range []string{"completed", `"sent, 1 attempt"`, `"interaction_sid"`, `"recorded_at"`, "[redacted: ", participantKP} {
			if !strings.Contains(text, want) {
				t.Errorf("task page lacks %q:\n%s", want, text)
			}
		}
		if strings.Contains(text, browserBody) {
			t.Errorf("task page shows the message body:\n%s", text)
		}

		png, err := chromedp.Run(tab, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		out := os.Getenv("PROXYQ_SCREENSHOT")
		if out == "" {
			out = filepath.Join(t.TempDir(), "dashboard.png")
		}
		if err := os.WriteFile(out, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot of the task page: %s (%d bytes)", out, len(png))
	})
}

const (
	participantKP = "KP0123456789abcdef0123456789abc001"
	browserBody   = "Browser test: Jane, your driver is outside"
)

// sendOne enqueues one message with the task ID "browser-sent", has the real worker send it to
// the fake, and returns the task ID and the interaction SID from its outcome record.
func sendOne(t *testing.T, ctx context.Context, db redistest.DB) (taskID, interactionSID string) {
	t.Helper()
	fake := proxytest.NewServer(proxytest.Config{})
	t.Cleanup(fake.Close)
	api, err := proxyclient.New(proxyclient.Config{AccountSID: "AC0123456789abcdef0123456789abcdef", AuthToken: "test", BaseURL: fake.URL})
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(worker.Config{Concurrency: 2, HTTPTimeout: 5 * time.Second, ShutdownTimeout: 10 * time.Second},
		worker.Deps{Redis: db.ConnOpt(), API: api})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Shutdown)

	enq := tasks.NewEnqueuer(db.ConnOpt())
	t.Cleanup(func() { _ = enq.Close() })
	res, err := enq.Enqueue(ctx, tasks.Payload{ServiceSID: service, SessionSID: session, ParticipantSID: participantKP,
		Body: browserBody, MediaURLs: []string{mediaURL}}, tasks.IdempotencyKey("browser-sent"), tasks.SendWithin(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspector(db.ConnOpt())
	t.Cleanup(func() { _ = insp.Close() })
	for {
		st, err := tasks.Lookup(ctx, insp, res.TaskID)
		if err == nil && st.State == "completed" && st.Outcome != nil {
			if st.Outcome.State != tasks.OutcomeSent || st.Outcome.InteractionSID == "" {
				t.Fatalf("outcome = %+v, want sent", st.Outcome)
			}
			return res.TaskID, st.Outcome.InteractionSID
		}
		select {
		case <-ctx.Done():
			t.Fatalf("message not sent in time: %+v, %v", st, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
