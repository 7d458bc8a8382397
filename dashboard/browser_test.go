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

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/dashboard"
	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/worker"
)

// TestBrowser drives the dashboard in headless Chromium: a visit without credentials is
// refused; after logging in (answering the browser's Basic-auth prompt) the queue "default" is
// listed, a completed message opens from the completed list, and its page shows the
// interaction SID from the outcome record, with the body redacted.
//
// The messages are sent by the real worker against the proxytest fake, so the page shows what
// production would. Set PROXYQ_SCREENSHOT=path.png to keep a screenshot of the task page.
func TestBrowser(t *testing.T) {
	bin := findChromium(t)
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

	b := startBrowser(t, bin)

	t.Run("refused without credentials", func(t *testing.T) {
		p := b.newPage(ctx, nil)
		errText := p.navigate(ctx, base+"/")
		// Headless Chromium with no one to answer the prompt either fails the navigation
		// (net::ERR_INVALID_AUTH_CREDENTIALS) or shows the 401 page; both are refusals.
		if errText == "" && p.status(base+"/") != http.StatusUnauthorized {
			t.Fatalf("navigation without credentials: errorText %q, status %d; want a refusal", errText, p.status(base+"/"))
		}
		if text := p.text(ctx); strings.Contains(text, "Queues") || strings.Contains(text, "default") {
			t.Fatalf("dashboard content shown without credentials:\n%s", text)
		}
	})

	t.Run("log in, open a completed task", func(t *testing.T) {
		p := b.newPage(ctx, &credentials{user, password})
		if errText := p.navigate(ctx, base+"/"); errText != "" {
			t.Fatalf("navigate with credentials: %s", errText)
		}
		p.waitFor(ctx, `the queue "default" on the home page`, func(s string) bool {
			return strings.Contains(s, "Queues") && strings.Contains(s, "default")
		})

		p.navigate(ctx, base+"/queues/default?status=completed")
		p.waitFor(ctx, "the completed task in the list", func(s string) bool { return strings.Contains(s, "browser") })
		// Open the task as a user would: click its row (the ID cell, not the copy button).
		var clicked bool
		if err := p.eval(ctx, `(() => {
			const row = [...document.querySelectorAll("tbody tr")].find(r => r.innerText.includes("browser"));
			if (!row) return false;
			(row.querySelector("th") || row).click();
			return true;
		})()`, &clicked); err != nil || !clicked {
			t.Fatalf("click the completed task's row: clicked=%v err=%v", clicked, err)
		}
		text := p.waitFor(ctx, "the task page with the interaction SID", func(s string) bool {
			return strings.Contains(s, interactionSID)
		})
		var path string
		_ = p.eval(ctx, "location.pathname", &path)
		if want := "/dashboard/queues/default/tasks/" + taskID; path != want {
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

		png, err := p.screenshot(ctx)
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
