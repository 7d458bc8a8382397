package console_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/proxyq/proxyq/tasks"
)

type answer struct {
	status   int
	location string
	body     string
	header   http.Header
}

func get(t *testing.T, u, user, pass string) answer {
	t.Helper()
	return do(t, "GET", u, user, pass, "")
}

func do(t *testing.T, method, u, user, pass, form string) answer {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(form))
	if err != nil {
		t.Fatal(err)
	}
	if form != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, location: resp.Header.Get("Location"), body: string(b), header: resp.Header}
}

// Every way to name a message leads to it, every way to name a person or a conversation to
// their list; the pages carry a strict CSP; actions need the page's token.
func TestSearchAndSafety(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := newRig(t, ctx)
	st, err := tasks.Lookup(ctx, r.insp, riderKey)
	if err != nil {
		t.Fatal(err)
	}
	search := func(q string) answer { return get(t, r.base+"/search?q="+url.QueryEscape(q), opUser, opPassword) }

	t.Run("an ID, key, KI or SM lands on the message", func(t *testing.T) {
		for _, q := range []string{riderKey, st.Outcome.InteractionSID, st.Outcome.OutboundResourceSID} {
			a := search(q)
			if a.status != http.StatusSeeOther || !strings.HasSuffix(a.location, "/m/"+riderKey) {
				t.Errorf("search %q: %d → %q, want a redirect to the message %s", q, a.status, a.location, riderKey)
			}
		}
		a := search(r.driverID)
		if a.status != http.StatusSeeOther || !strings.HasSuffix(a.location, "/m/"+r.driverID) {
			t.Errorf("search the driver's generated ID: %d → %q", a.status, a.location)
		}
	})

	t.Run("a KP lists its messages, a KC its session's, newest first", func(t *testing.T) {
		a := search(riderKP)
		if a.status != 200 || !strings.Contains(a.body, riderKey) || strings.Contains(a.body, r.driverID) {
			t.Errorf("participant list: %d, rider's message shown %v, driver's %v", a.status, strings.Contains(a.body, riderKey), strings.Contains(a.body, r.driverID))
		}
		a = search(sessionSID)
		if a.status != 200 {
			t.Fatalf("session list: %d %s", a.status, a.body)
		}
		iDriver, iRider, iGone := strings.Index(a.body, r.driverID), strings.Index(a.body, riderKey), strings.Index(a.body, r.archived[2])
		if iDriver < 0 || iRider < 0 || iGone < 0 || !(iGone < iDriver && iDriver < iRider) {
			t.Errorf("session list should hold the archived, the driver's and the rider's messages, newest first (positions %d, %d, %d)", iGone, iDriver, iRider)
		}
	})

	t.Run("a Conversations message: its page, IM and CH searches, the API in lists", func(t *testing.T) {
		if r.convIM == "" || !strings.HasPrefix(r.convIM, "IM") {
			t.Fatalf("the Conversations message recorded no IM SID: %q", r.convIM)
		}
		if a := search(r.convIM); a.status != http.StatusSeeOther || !strings.HasSuffix(a.location, "/m/"+r.convID) {
			t.Errorf("search the IM SID: %d → %q, want the message %s", a.status, a.location, r.convID)
		}
		a := search(clinicCH)
		if a.status != 200 || !strings.Contains(a.body, r.convID) || !strings.Contains(a.body, ">Conversations</td>") || strings.Contains(a.body, riderKey) {
			t.Errorf("conversation list: %d, has the message %v, names the API %v:\n%s", a.status, strings.Contains(a.body, r.convID), strings.Contains(a.body, ">Conversations</td>"), a.body)
		}
		page := get(t, r.base+"/m/"+r.convID, opUser, opPassword).body
		for _, want := range []string{
			`id="api">Twilio Conversations`, clinicCH, clinicIS, `id="author">clinic`, r.convIM,
			"https://console.twilio.com/us1/develop/conversations/", "Conversations message " + r.convIM + " in conversation " + clinicCH,
			"Delivery receipt: delivered", "to Twilio Conversations",
			"through HTTP API (proxyq serve), token clinic-app",
			"Status webhook (delivered): accepted", "your application answered 204",
		} {
			if !strings.Contains(page, want) {
				t.Errorf("the Conversations message's page lacks %q", want)
			}
		}
		if strings.Contains(page, "Your appointment") {
			t.Error("the Conversations body is in the page")
		}
		home := get(t, r.base+"/?state=completed&fragment=1", opUser, opPassword).body
		if !strings.Contains(home, r.convID) || !strings.Contains(home, ">Proxy</td>") || !strings.Contains(home, ">Conversations</td>") {
			t.Errorf("the completed list should show both APIs' messages, each named:\n%s", home)
		}
	})

	t.Run("unknown values say so", func(t *testing.T) {
		for _, q := range []string{"no-such-key", "SM99999999999999999999999999999999", "KI99999999999999999999999999999999", "KC99999999999999999999999999999999", "IM99999999999999999999999999999999", "CH99999999999999999999999999999999"} {
			if a := search(q); a.status != http.StatusNotFound || !strings.Contains(a.body, "known") {
				t.Errorf("search %q: %d, want 404 saying nothing is known:\n%s", q, a.status, a.body)
			}
		}
	})

	t.Run("strict CSP, no inline script or style", func(t *testing.T) {
		a := get(t, r.base+"/m/"+riderKey, opUser, opPassword)
		csp := a.header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("CSP %q lacks %q", csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(a.body, "<script>") || strings.Contains(a.body, "style=") {
			t.Errorf("inline script or style allowed or used")
		}
		if strings.Contains(a.body, riderBody) {
			t.Error("the body is in the page")
		}
	})

	t.Run("actions need the page's token", func(t *testing.T) {
		id := r.archived[0]
		a := do(t, "POST", r.base+"/action/retry", opUser, opPassword, "id="+id+"&csrf=0123")
		if a.status != http.StatusForbidden {
			t.Errorf("retry with a wrong token: %d, want 403", a.status)
		}
		if st, _ := tasks.Lookup(ctx, r.insp, id); st == nil || st.State != "archived" {
			t.Errorf("a refused retry changed the message: %+v", st)
		}
		// With the token of the page that offers the button, it runs.
		page := get(t, r.base+"/m/"+id, opUser, opPassword).body
		token := between(page, `name="csrf" value="`, `"`)
		a = do(t, "POST", r.base+"/action/retry", opUser, opPassword, "id="+id+"&csrf="+token)
		if a.status != http.StatusSeeOther {
			t.Fatalf("retry with the page's token: %d %s", a.status, a.body)
		}
		if st, _ := tasks.Lookup(ctx, r.insp, id); st == nil || st.State == "archived" && st.Retried == 0 {
			t.Errorf("the retried message is still archived untouched: %+v", st)
		}
		// Another user's token is not this user's.
		roPage := get(t, r.roBase+"/m/"+riderKey, roUser, roPassword)
		if strings.Contains(roPage.body, token) {
			t.Error("the read-only user got the operator's token")
		}
	})

	t.Run("cancel a scheduled message", func(t *testing.T) {
		enq := tasks.NewEnqueuer(r.db.ConnOpt())
		defer enq.Close()
		res, err := enq.Enqueue(ctx, tasks.Payload{ServiceSID: serviceSID, SessionSID: sessionSID, ParticipantSID: driverKP, Body: "later"},
			tasks.ProcessIn(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		page := get(t, r.base+"/m/"+res.TaskID, opUser, opPassword).body
		if !strings.Contains(page, `id="cancel"`) {
			t.Fatalf("a scheduled message's page offers no cancel:\n%s", page)
		}
		a := do(t, "POST", r.base+"/action/cancel", opUser, opPassword, "id="+res.TaskID+"&csrf="+between(page, `name="csrf" value="`, `"`))
		if a.status != http.StatusSeeOther {
			t.Fatalf("cancel: %d %s", a.status, a.body)
		}
		if _, err := tasks.Lookup(ctx, r.insp, res.TaskID); err != tasks.ErrNotFound {
			t.Errorf("the cancelled message is still there (%v)", err)
		}
		if audit := get(t, r.base+"/audit", opUser, opPassword).body; !strings.Contains(audit, res.TaskID) || !strings.Contains(audit, "cancelled") {
			t.Errorf("the audit log lacks the cancel:\n%s", audit)
		}
		// A sent message cannot be cancelled: refused, and said so.
		page = get(t, r.base+"/m/"+riderKey, opUser, opPassword).body
		a = do(t, "POST", r.base+"/action/cancel", opUser, opPassword, "id="+riderKey+"&csrf="+between(page, `name="csrf" value="`, `"`))
		if a.status != http.StatusConflict {
			t.Errorf("cancel a sent message: %d, want 409", a.status)
		}
	})

	t.Run("the home page's live part and filters", func(t *testing.T) {
		a := get(t, r.base+"/?state=completed&delivery=undelivered&fragment=1", opUser, opPassword)
		if a.status != 200 || strings.Contains(a.body, "<html") || !strings.Contains(a.body, riderKey) || strings.Contains(a.body, r.driverID) {
			t.Errorf("the filtered live fragment: %d, has html %v, rider %v, driver %v", a.status,
				strings.Contains(a.body, "<html"), strings.Contains(a.body, riderKey), strings.Contains(a.body, r.driverID))
		}
		if a := get(t, r.base+"/?state=lost", opUser, opPassword); a.status != http.StatusBadRequest || !strings.Contains(a.body, "state") {
			t.Errorf("an unknown state: %d, want 400 naming it", a.status)
		}
	})
}

func between(s, from, to string) string {
	_, after, ok := strings.Cut(s, from)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(after, to)
	return v
}
