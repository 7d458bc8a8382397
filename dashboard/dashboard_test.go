package dashboard_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/proxyq/proxyq/dashboard"
	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/tasks"
)

const (
	service     = "KS0123456789abcdef0123456789abcdef"
	session     = "KC0123456789abcdef0123456789abcdef"
	participant = "KP0123456789abcdef0123456789abcdef"
	body        = "Jane, your driver Sam is 2 minutes away"
	mediaURL    = "https://media.example.com/jane/map.png"
)

// serve starts the dashboard on a loopback httptest server over a fresh Redis database and
// returns its base URL (without a trailing slash) and the log observer.
func serve(t *testing.T, cfg dashboard.Config, db redistest.DB) (string, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	d, err := dashboard.New(cfg, db.ConnOpt(), zap.New(core))
	if err != nil {
		t.Fatalf("dashboard.New: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	mux := http.NewServeMux()
	root := d.RootPath()
	if root == "/" {
		mux.Handle("/", d)
	} else {
		mux.Handle(root+"/", d)
	}
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	if root == "/" {
		root = ""
	}
	return ts.URL + root, logs
}

func enqueueOne(t *testing.T, db redistest.DB) string {
	t.Helper()
	enq := tasks.NewEnqueuer(db.ConnOpt())
	t.Cleanup(func() { _ = enq.Close() })
	res, err := enq.Enqueue(context.Background(), tasks.Payload{ServiceSID: service, SessionSID: session,
		ParticipantSID: participant, Body: body, MediaURLs: []string{mediaURL}}, tasks.SendWithin(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return res.TaskID
}

type req struct {
	method, path string
	header       map[string]string
}

func do(t *testing.T, base string, r req) (*http.Response, string) {
	t.Helper()
	hr, err := http.NewRequest(r.method, base+r.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func basic(user, pass string) map[string]string {
	return map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

func TestAuth(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	enqueueOne(t, db)
	both, bothLogs := serve(t, dashboard.Config{User: "admin", Password: "pa55word", Token: "tok-0123456789"}, db)
	basicOnly, _ := serve(t, dashboard.Config{User: "admin", Password: "pa55word"}, db)
	tokenOnly, _ := serve(t, dashboard.Config{Token: "tok-0123456789"}, db)

	tests := []struct {
		name       string
		base       string
		r          req
		wantStatus int
		wantChall  []string // WWW-Authenticate values on 401
	}{
		{"no credentials", both, req{"GET", "/queues/api/queues", nil}, 401, []string{`Basic realm="proxyq dashboard", charset="UTF-8"`, `Bearer realm="proxyq dashboard"`}},
		{"no credentials on the UI", both, req{"GET", "/", nil}, 401, nil},
		{"no credentials on a static file", both, req{"GET", "/favicon.ico", nil}, 401, nil},
		{"wrong password", both, req{"GET", "/queues/api/queues", basic("admin", "wrong")}, 401, nil},
		{"wrong user", both, req{"GET", "/queues/api/queues", basic("root", "pa55word")}, 401, nil},
		{"password as prefix", both, req{"GET", "/queues/api/queues", basic("admin", "pa55")}, 401, nil},
		{"empty basic", both, req{"GET", "/queues/api/queues", basic("", "")}, 401, nil},
		{"malformed basic", both, req{"GET", "/queues/api/queues", map[string]string{"Authorization": "Basic !!!"}}, 401, nil},
		{"right basic", both, req{"GET", "/queues/api/queues", basic("admin", "pa55word")}, 200, nil},
		{"right basic, lower-case scheme", both, req{"GET", "/queues/api/queues", map[string]string{"Authorization": "basic " + base64.StdEncoding.EncodeToString([]byte("admin:pa55word"))}}, 200, nil},
		{"right bearer", both, req{"GET", "/queues/api/queues", bearer("tok-0123456789")}, 200, nil},
		{"wrong bearer", both, req{"GET", "/queues/api/queues", bearer("tok-012345678")}, 401, nil},
		{"token sent as basic password", both, req{"GET", "/queues/api/queues", basic("admin", "tok-0123456789")}, 401, nil},
		{"unknown scheme", both, req{"GET", "/queues/api/queues", map[string]string{"Authorization": "Digest x"}}, 401, nil},
		{"bearer when only basic is configured", basicOnly, req{"GET", "/queues/api/queues", bearer("")}, 401, []string{`Basic realm="proxyq dashboard", charset="UTF-8"`}},
		{"basic when only a token is configured", tokenOnly, req{"GET", "/queues/api/queues", basic("admin", "pa55word")}, 401, []string{`Bearer realm="proxyq dashboard"`}},
		{"token only, right", tokenOnly, req{"GET", "/queues/api/queues", bearer("tok-0123456789")}, 200, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, text := do(t, tt.base, tt.r)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("%s %s: status %d, want %d; body %q", tt.r.method, tt.r.path, resp.StatusCode, tt.wantStatus, text)
			}
			if tt.wantStatus == 401 {
				if strings.Contains(text, "default") || strings.Contains(text, participant) {
					t.Errorf("401 body leaks dashboard data: %q", text)
				}
				if tt.wantChall != nil {
					got := resp.Header.Values("WWW-Authenticate")
					if strings.Join(got, "|") != strings.Join(tt.wantChall, "|") {
						t.Errorf("WWW-Authenticate = %q, want %q", got, tt.wantChall)
					}
				}
			}
			if tt.wantStatus == 200 && !strings.Contains(text, `"queue":"default"`) {
				t.Errorf("200 body lacks the default queue: %q", text)
			}
			for _, h := range []string{"X-Frame-Options", "X-Content-Type-Options", "Cache-Control"} {
				if resp.Header.Get(h) == "" {
					t.Errorf("header %s missing", h)
				}
			}
		})
	}
	t.Cleanup(func() {
		// Rejections are logged, never with the secret that was tried.
		for _, e := range bothLogs.All() {
			for _, f := range e.Context {
				if strings.Contains(f.String, "wrong") || strings.Contains(f.String, "tok-") || strings.Contains(f.String, "pa55") {
					t.Errorf("log line %q carries a credential: %v", e.Message, f)
				}
			}
		}
		if bothLogs.FilterMessage("dashboard: rejected credentials").Len() == 0 {
			t.Errorf("no log line for rejected credentials")
		}
	})
}

func TestNoAuthNeedsFlagAndWarns(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	if _, err := dashboard.New(dashboard.Config{}, db.ConnOpt(), nil); err == nil {
		t.Fatal("New without credentials or AllowNoAuth succeeded")
	}
	base, logs := serve(t, dashboard.Config{AllowNoAuth: true}, db)
	resp, text := do(t, base, req{"GET", "/queues/api/queues", nil})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d, want 200: %s", resp.StatusCode, text)
	}
	warn := logs.FilterLevelExact(zap.WarnLevel).FilterMessageSnippet("authentication is OFF")
	if warn.Len() != 1 {
		t.Fatalf("want one warning about authentication being off, got %v", logs.All())
	}

	// Behind another check (serve's bearer tokens) it runs without its own, and says nothing
	// about running open: that would be false.
	base, logs = serve(t, dashboard.Config{AuthenticatedUpstream: true}, db)
	if resp, text := do(t, base, req{"GET", "/queues/api/queues", nil}); resp.StatusCode != 200 {
		t.Fatalf("authenticated upstream: status %d, want 200: %s", resp.StatusCode, text)
	}
	if warn := logs.FilterMessageSnippet("authentication is OFF"); warn.Len() != 0 {
		t.Errorf("authenticated upstream: warned %v", warn.All())
	}
}

func TestMountRedirectsTheBareAddress(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	for _, root := range []string{"/", "/dashboard"} {
		d, err := dashboard.New(dashboard.Config{Token: "t", RootPath: root}, db.ConnOpt(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d.Close() })
		mux := http.NewServeMux()
		d.Mount(mux)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		want := http.StatusUnauthorized // the dashboard itself, asking for the token
		if root != "/" {
			want = http.StatusFound
		}
		if rec.Code != want || (root != "/" && rec.Header().Get("Location") != root+"/") {
			t.Errorf("root %s: GET / answered %d (Location %q); want %d", root, rec.Code, rec.Header().Get("Location"), want)
		}
	}
}

func TestReadOnlyAndCrossOrigin(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	enqueueOne(t, db)
	creds := basic("admin", "pw")
	ro, _ := serve(t, dashboard.Config{User: "admin", Password: "pw", ReadOnly: true}, db)
	rw, _ := serve(t, dashboard.Config{User: "admin", Password: "pw"}, db)
	with := func(extra map[string]string) map[string]string {
		h := map[string]string{}
		for k, v := range creds {
			h[k] = v
		}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	tests := []struct {
		name string
		base string
		r    req
		want int
	}{
		{"read-only refuses pause", ro, req{"POST", "/queues/api/queues/default:pause", creds}, http.StatusMethodNotAllowed},
		{"read-only refuses delete", ro, req{"DELETE", "/queues/api/queues/default/pending_tasks:delete_all", creds}, http.StatusMethodNotAllowed},
		{"read-only still reads", ro, req{"GET", "/queues/api/queues/default/pending_tasks", creds}, http.StatusOK},
		{"cross-site POST refused", rw, req{"POST", "/queues/api/queues/default:pause", with(map[string]string{"Sec-Fetch-Site": "cross-site"})}, http.StatusForbidden},
		{"foreign Origin refused", rw, req{"POST", "/queues/api/queues/default:pause", with(map[string]string{"Origin": "https://evil.example"})}, http.StatusForbidden},
		{"unauthenticated POST refused before anything", rw, req{"POST", "/queues/api/queues/default:pause", nil}, http.StatusUnauthorized},
		{"same-origin POST works", rw, req{"POST", "/queues/api/queues/default:pause", with(map[string]string{"Sec-Fetch-Site": "same-origin"})}, http.StatusNoContent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, text := do(t, tt.base, tt.r)
			if resp.StatusCode != tt.want {
				t.Fatalf("%s %s: status %d, want %d: %q", tt.r.method, tt.r.path, resp.StatusCode, tt.want, text)
			}
		})
	}
}

// TestPayloadViews reads a real enqueued message through asynqmon's API: redacted by
// default, in full only with ShowMessageContent, under a non-root path.
func TestPayloadViews(t *testing.T) {
	t.Parallel()
	db := redistest.NewDB(t)
	id := enqueueOne(t, db)
	for _, show := range []bool{false, true} {
		base, _ := serve(t, dashboard.Config{Token: "t", RootPath: "/dashboard/", ShowMessageContent: show}, db)
		for _, path := range []string{"/queues/api/queues/default/pending_tasks", "/queues/api/queues/default/tasks/" + id} {
			resp, text := do(t, base, req{"GET", path, bearer("t")})
			if resp.StatusCode != 200 {
				t.Fatalf("GET %s: %d %s", path, resp.StatusCode, text)
			}
			var payload string
			if strings.Contains(path, "pending") {
				var list struct{ Tasks []struct{ Payload string } }
				if err := json.Unmarshal([]byte(text), &list); err != nil || len(list.Tasks) != 1 {
					t.Fatalf("GET %s: %v %s", path, err, text)
				}
				payload = list.Tasks[0].Payload
			} else {
				var one struct{ Payload string }
				if err := json.Unmarshal([]byte(text), &one); err != nil {
					t.Fatal(err)
				}
				payload = one.Payload
			}
			if !strings.Contains(payload, participant) || !strings.Contains(payload, "send_before") {
				t.Errorf("show=%v %s: payload lacks the SID or send_before:\n%s", show, path, payload)
			}
			hasContent := strings.Contains(text, "Jane") || strings.Contains(text, mediaURL)
			if hasContent != show {
				t.Errorf("show=%v %s: message content visible = %v:\n%s", show, path, hasContent, payload)
			}
			if !show && (!strings.Contains(payload, "[redacted: 39 chars]") || !strings.Contains(payload, "[redacted: 1 URL]")) {
				t.Errorf("redaction markers missing:\n%s", payload)
			}
		}
	}
}
