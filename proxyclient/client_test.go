package proxyclient_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyq/proxyq/proxyclient"
)

func TestCreateMessageInteractionSuccess(t *testing.T) {
	t.Parallel()
	// Twilio's spec says 200 today and said 201 from 2022-10 to 2024-06: accept both.
	for _, status := range []int{http.StatusOK, http.StatusCreated} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			t.Parallel()
			var rawBody, gotPath, gotUA, gotCT, gotAccept string
			var gotForm url.Values
			srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				rawBody, gotPath = string(b), r.URL.Path
				gotUA, gotCT, gotAccept = r.UserAgent(), r.Header.Get("Content-Type"), r.Header.Get("Accept")
				gotForm, _ = url.ParseQuery(rawBody)
				if r.Method != http.MethodPost {
					t.Errorf("method = %s, want POST", r.Method)
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(status)
				_, _ = io.WriteString(w, interactionJSON)
			}))
			c := newClient(t, srv.URL, nil)

			p := createParams()
			p.Body = "hello & goodbye"
			p.MediaURLs = []string{"https://example.com/a.jpg", "https://example.com/b.jpg?x=1&y=2"}
			mi, err := c.CreateMessageInteraction(context.Background(), p)
			if err != nil {
				t.Fatalf("CreateMessageInteraction: %v", err)
			}

			if gotPath != interactionsPath {
				t.Errorf("path = %q, want %q", gotPath, interactionsPath)
			}
			if gotCT != "application/x-www-form-urlencoded" {
				t.Errorf("Content-Type = %q", gotCT)
			}
			if gotAccept != "application/json" {
				t.Errorf("Accept = %q", gotAccept)
			}
			if want := "proxyq/" + proxyclient.Version + " proxyclient-test"; gotUA != want {
				t.Errorf("User-Agent = %q, want %q", gotUA, want)
			}
			// Twilio's array encoding: the key repeats, no brackets, order kept.
			if got := gotForm["MediaUrl"]; len(got) != 2 || got[0] != p.MediaURLs[0] || got[1] != p.MediaURLs[1] {
				t.Errorf("MediaUrl values = %q, want %q", got, p.MediaURLs)
			}
			if strings.Count(rawBody, "MediaUrl=") != 2 || strings.Contains(rawBody, "MediaUrl%5B") || strings.Contains(rawBody, "MediaUrl[") {
				t.Errorf("raw body %q: want MediaUrl repeated twice without brackets", rawBody)
			}
			if gotForm.Get("Body") != p.Body {
				t.Errorf("Body = %q, want %q", gotForm.Get("Body"), p.Body)
			}

			want := proxyclient.MessageInteraction{
				SID: testKI, AccountSID: testAccount, ServiceSID: testKS, SessionSID: testKC, ParticipantSID: testKP,
				Data: `{"body":"some message"}`, Type: "message",
				OutboundParticipantSID: testKP, OutboundResourceSID: "SMaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
				OutboundResourceStatus: "sent", OutboundResourceType: "Message",
				DateCreated: time.Date(2015, 7, 30, 20, 0, 0, 0, time.UTC),
				DateUpdated: time.Date(2015, 7, 30, 20, 0, 1, 0, time.UTC),
				URL:         "https://proxy.twilio.com/v1/Services/" + testKS + "/Sessions/" + testKC + "/Participants/" + testKP + "/MessageInteractions/" + testKI,
			}
			if *mi != want {
				t.Errorf("interaction =\n%+v\nwant\n%+v", *mi, want)
			}
			d, err := mi.DecodeData()
			if err != nil || d.Body != "some message" {
				t.Errorf("DecodeData = %+v, %v", d, err)
			}
		})
	}
}

func TestCreateBodyOnlySendsNoMediaUrl(t *testing.T) {
	t.Parallel()
	var raw string
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		raw = string(b)
		_, _ = io.WriteString(w, interactionJSON)
	}))
	c := newClient(t, srv.URL, nil)
	if _, err := c.CreateMessageInteraction(context.Background(), createParams()); err != nil {
		t.Fatal(err)
	}
	if raw != "Body=hello" {
		t.Errorf("body = %q, want %q", raw, "Body=hello")
	}
}

func TestAuthModes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name               string
		cfg                proxyclient.Config
		wantUser, wantPass string
		wantAccountKey     string
	}{
		{"account SID and token", proxyclient.Config{AccountSID: testAccount, AuthToken: testToken},
			testAccount, testToken, testAccount},
		{"API key only", proxyclient.Config{APIKey: testAPIKey, APISecret: testAPISecret},
			testAPIKey, testAPISecret, testAPIKey},
		{"API key wins over token", proxyclient.Config{AccountSID: testAccount, AuthToken: testToken, APIKey: testAPIKey, APISecret: testAPISecret},
			testAPIKey, testAPISecret, testAccount},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var user, pass string
			var ok bool
			srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				user, pass, ok = r.BasicAuth()
				_, _ = io.WriteString(w, interactionJSON)
			}))
			cfg := tt.cfg
			cfg.BaseURL = srv.URL + basePath
			c, err := proxyclient.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.CreateMessageInteraction(context.Background(), createParams()); err != nil {
				t.Fatal(err)
			}
			if !ok || user != tt.wantUser || pass != tt.wantPass {
				t.Errorf("basic auth = %q/%q (ok=%v), want %q/%q", user, pass, ok, tt.wantUser, tt.wantPass)
			}
			if got := c.AccountKey(); got != tt.wantAccountKey {
				t.Errorf("AccountKey = %q, want %q", got, tt.wantAccountKey)
			}
		})
	}
}

func TestArgumentValidationSendsNothing(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, interactionJSON)
	}))
	c := newClient(t, srv.URL, nil)
	ctx := context.Background()
	with := func(f func(*proxyclient.CreateParams)) proxyclient.CreateParams {
		p := createParams()
		f(&p)
		return p
	}
	tests := []struct {
		name      string
		call      func() error
		wantField string
	}{
		{"service prefix", func() error {
			_, err := c.CreateMessageInteraction(ctx, with(func(p *proxyclient.CreateParams) { p.ServiceSID = "KC" + testKS[2:] }))
			return err
		}, "ServiceSID"},
		{"session short", func() error {
			_, err := c.CreateMessageInteraction(ctx, with(func(p *proxyclient.CreateParams) { p.SessionSID = testKC[:33] }))
			return err
		}, "SessionSID"},
		{"participant path traversal", func() error {
			_, err := c.CreateMessageInteraction(ctx, with(func(p *proxyclient.CreateParams) { p.ParticipantSID = "KP../../../../Accounts/xxxxxxxxxxxxx" }))
			return err
		}, "ParticipantSID"},
		{"participant non-hex", func() error {
			_, err := c.CreateMessageInteraction(ctx, with(func(p *proxyclient.CreateParams) { p.ParticipantSID = "KPzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz" }))
			return err
		}, "ParticipantSID"},
		{"nothing to send", func() error {
			_, err := c.CreateMessageInteraction(ctx, with(func(p *proxyclient.CreateParams) { p.Body = "" }))
			return err
		}, "Body"},
		{"empty media URL", func() error {
			_, err := c.CreateMessageInteraction(ctx, with(func(p *proxyclient.CreateParams) { p.MediaURLs = []string{"https://x/a", ""} }))
			return err
		}, "MediaURLs[1]"},
		{"fetch interaction SID", func() error {
			_, err := c.FetchMessageInteraction(ctx, testKS, testKC, testKP, "KI123")
			return err
		}, "InteractionSID"},
		{"fetch service SID", func() error {
			_, err := c.FetchMessageInteraction(ctx, "", testKC, testKP, testKI)
			return err
		}, "ServiceSID"},
		{"list participant SID", func() error {
			_, err := c.ListMessageInteractions(ctx, testKS, testKC, "kp"+testKP[2:], proxyclient.ListOptions{})
			return err
		}, "ParticipantSID"},
		{"list page size", func() error {
			_, err := c.ListMessageInteractions(ctx, testKS, testKC, testKP, proxyclient.ListOptions{PageSize: 1001})
			return err
		}, "PageSize"},
		{"list max pages", func() error {
			_, err := c.ListMessageInteractions(ctx, testKS, testKC, testKP, proxyclient.ListOptions{MaxPages: -1})
			return err
		}, "MaxPages"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var ve *proxyclient.ValidationError
			if !errors.As(err, &ve) || ve.Field != tt.wantField {
				t.Fatalf("err = %v, want *ValidationError for %s", err, tt.wantField)
			}
			if c := proxyclient.Classify(err); c != proxyclient.ClassPermanent {
				t.Errorf("Classify = %v, want permanent", c)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("server saw %d requests, want 0", n)
	}
}

func TestFetchMessageInteraction(t *testing.T) {
	t.Parallel()
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if want := interactionsPath + "/" + testKI; r.URL.Path != want || r.Method != http.MethodGet {
			t.Errorf("%s %s, want GET %s", r.Method, r.URL.Path, want)
		}
		_, _ = io.WriteString(w, interactionJSON)
	}))
	c := newClient(t, srv.URL, nil)
	mi, err := c.FetchMessageInteraction(context.Background(), testKS, testKC, testKP, testKI)
	if err != nil {
		t.Fatal(err)
	}
	if mi.SID != testKI || mi.OutboundResourceStatus != "sent" || mi.InboundResourceSID != "" {
		t.Errorf("got %+v", mi)
	}
}

// pagedAPI serves a participant's interactions in pages, with Twilio's absolute
// next_page_url (scheme, host, base path and a PageToken) and null on the last page.
type pagedAPI struct {
	t        *testing.T
	pages    [][]string // interaction SIDs per page
	nextURL  func(page int) string
	mu       sync.Mutex
	requests []*url.URL
}

func (p *pagedAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.requests = append(p.requests, r.URL)
	p.mu.Unlock()
	if r.URL.Path != interactionsPath || r.Method != http.MethodGet {
		p.t.Errorf("%s %s, want GET %s", r.Method, r.URL.Path, interactionsPath)
	}
	page := 0
	if s := r.URL.Query().Get("Page"); s != "" {
		_, _ = fmt.Sscan(s, &page)
	}
	if page > 0 && r.URL.Query().Get("PageToken") != fmt.Sprintf("PT%d", page) {
		p.t.Errorf("page %d requested without its PageToken: %s", page, r.URL.RawQuery)
	}
	var items []string
	for _, sid := range p.pages[page] {
		items = append(items, strings.Replace(interactionJSON, testKI, sid, -1))
	}
	next := "null"
	if page+1 < len(p.pages) {
		next = `"` + p.nextURL(page+1) + `"`
	}
	fmt.Fprintf(w, `{"interactions":[%s],"meta":{"key":"interactions","page":%d,"page_size":2,"next_page_url":%s,"previous_page_url":null}}`,
		strings.Join(items, ","), page, next)
}

func (p *pagedAPI) seen() []*url.URL {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*url.URL(nil), p.requests...)
}

func kiSID(n int) string { return fmt.Sprintf("KI%032x", n) }

func TestListFollowsAbsoluteNextPageURL(t *testing.T) {
	t.Parallel()
	api := &pagedAPI{t: t, pages: [][]string{{kiSID(1), kiSID(2)}, {kiSID(3), kiSID(4)}, {kiSID(5)}}}
	srv := newServer(t, api)
	api.nextURL = func(page int) string {
		return fmt.Sprintf("%s%s?PageSize=2&Page=%d&PageToken=PT%d", srv.URL, interactionsPath, page, page)
	}
	c := newClient(t, srv.URL, nil)

	res, err := c.ListMessageInteractions(context.Background(), testKS, testKC, testKP, proxyclient.ListOptions{PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mi := range res.Interactions {
		got = append(got, mi.SID)
	}
	if want := []string{kiSID(1), kiSID(2), kiSID(3), kiSID(4), kiSID(5)}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("SIDs = %v, want %v", got, want)
	}
	if res.Truncated || res.Pages != 3 {
		t.Errorf("Truncated=%v Pages=%d, want false 3", res.Truncated, res.Pages)
	}
	reqs := api.seen()
	if len(reqs) != 3 {
		t.Fatalf("requests = %d, want 3", len(reqs))
	}
	if q := reqs[0].Query(); q.Get("PageSize") != "2" || q.Has("PageToken") {
		t.Errorf("first request query = %q, want PageSize=2 only", reqs[0].RawQuery)
	}
}

func TestListTruncatedAtMaxPages(t *testing.T) {
	t.Parallel()
	api := &pagedAPI{t: t, pages: [][]string{{kiSID(1)}, {kiSID(2)}, {kiSID(3)}}}
	srv := newServer(t, api)
	api.nextURL = func(page int) string {
		return fmt.Sprintf("%s%s?PageSize=1&Page=%d&PageToken=PT%d", srv.URL, interactionsPath, page, page)
	}
	c := newClient(t, srv.URL, nil)
	res, err := c.ListMessageInteractions(context.Background(), testKS, testKC, testKP, proxyclient.ListOptions{PageSize: 1, MaxPages: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Truncated || res.Pages != 2 || len(res.Interactions) != 2 {
		t.Errorf("Truncated=%v Pages=%d len=%d, want true 2 2", res.Truncated, res.Pages, len(res.Interactions))
	}
	if n := len(api.seen()); n != 2 {
		t.Errorf("requests = %d, want 2 (must not fetch past MaxPages)", n)
	}
}

func TestListDefaultPageSizeAndEmptyList(t *testing.T) {
	t.Parallel()
	api := &pagedAPI{t: t, pages: [][]string{{}}}
	srv := newServer(t, api)
	c := newClient(t, srv.URL, nil)
	res, err := c.ListMessageInteractions(context.Background(), testKS, testKC, testKP, proxyclient.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Interactions) != 0 || res.Truncated || res.Pages != 1 {
		t.Errorf("got %+v", res)
	}
	if q := api.seen()[0].Query().Get("PageSize"); q != "1000" {
		t.Errorf("PageSize = %q, want 1000", q)
	}
}

func TestListRefusesForeignNextPageURL(t *testing.T) {
	t.Parallel()
	// other is a second loopback server: if the client followed a foreign link it would
	// land here with the Authorization header.
	var otherHits atomic.Int32
	other := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherHits.Add(1)
		t.Errorf("credentials sent to foreign host: Authorization=%v", r.Header.Get("Authorization") != "")
	}))
	otherURL, _ := url.Parse(other.URL)

	tests := []struct {
		name    string
		next    func(srvURL string) string
		wantErr bool
	}{
		{"other port", func(string) string { return other.URL + interactionsPath + "?Page=1&PageToken=PT1" }, true},
		{"other host name", func(srvURL string) string {
			return strings.Replace(srvURL, "127.0.0.1", "localhost", 1) + interactionsPath + "?Page=1&PageToken=PT1"
		}, true},
		{"scheme change", func(srvURL string) string {
			return strings.Replace(srvURL, "http://", "https://", 1) + interactionsPath + "?Page=1&PageToken=PT1"
		}, true},
		{"userinfo", func(srvURL string) string {
			return strings.Replace(srvURL, "http://", "http://u:p@", 1) + interactionsPath + "?Page=1&PageToken=PT1"
		}, true},
		{"protocol-relative to other host", func(string) string { return "//" + otherURL.Host + interactionsPath + "?Page=1&PageToken=PT1" }, true},
		{"relative path stays on host", func(string) string { return interactionsPath + "?Page=1&PageToken=PT1" }, false},
		{"same host upper case", func(srvURL string) string {
			return strings.ToUpper(srvURL[:len("http://")]) + srvURL[len("http://"):] + interactionsPath + "?Page=1&PageToken=PT1"
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := &pagedAPI{t: t, pages: [][]string{{kiSID(1)}, {kiSID(2)}}}
			srv := newServer(t, api)
			api.nextURL = func(int) string { return tt.next(srv.URL) }
			c := newClient(t, srv.URL, nil)
			res, err := c.ListMessageInteractions(context.Background(), testKS, testKC, testKP, proxyclient.ListOptions{})
			if tt.wantErr {
				if !errors.Is(err, proxyclient.ErrUnsafeNextPage) {
					t.Fatalf("err = %v, want ErrUnsafeNextPage", err)
				}
				if c := proxyclient.Classify(err); c != proxyclient.ClassPermanent {
					t.Errorf("Classify = %v, want permanent", c)
				}
				if strings.Contains(err.Error(), "PageToken") {
					t.Errorf("error leaks query string: %v", err)
				}
				return
			}
			if err != nil || len(res.Interactions) != 2 {
				t.Fatalf("got %v, %v; want 2 interactions", res, err)
			}
		})
	}
	t.Cleanup(func() {
		if n := otherHits.Load(); n != 0 {
			t.Errorf("foreign server saw %d requests", n)
		}
	})
}

func TestRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	var targetHits atomic.Int32
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/elsewhere") {
			targetHits.Add(1)
			_, _ = io.WriteString(w, interactionJSON)
			return
		}
		http.Redirect(w, r, basePath+"/elsewhere", http.StatusTemporaryRedirect)
	}))
	c := newClient(t, srv.URL, nil)
	_, err := c.CreateMessageInteraction(context.Background(), createParams())
	var he *proxyclient.Error
	if !errors.As(err, &he) || he.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("err = %v, want *Error 307", err)
	}
	if c := proxyclient.Classify(err); c != proxyclient.ClassPermanent {
		t.Errorf("Classify = %v, want permanent", c)
	}
	if n := targetHits.Load(); n != 0 {
		t.Errorf("redirect target hit %d times", n)
	}
}

func TestRedirectNotFollowedWithCallerHTTPClient(t *testing.T) {
	t.Parallel()
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, basePath+"/elsewhere", http.StatusFound)
	}))
	followed := false
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { followed = true; return nil }}
	c := newClient(t, srv.URL, func(cfg *proxyclient.Config) { cfg.HTTPClient = hc })
	_, err := c.FetchMessageInteraction(context.Background(), testKS, testKC, testKP, testKI)
	var he *proxyclient.Error
	if !errors.As(err, &he) || he.StatusCode != http.StatusFound || followed {
		t.Fatalf("err = %v followed=%v, want *Error 302 and no redirect", err, followed)
	}
	if hc.CheckRedirect == nil {
		t.Error("caller's http.Client was modified")
	}
}

func TestDecodeData(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		data    string
		want    proxyclient.InteractionData
		wantErr error
	}{
		{"body", `{"body":"hello"}`, proxyclient.InteractionData{Body: "hello"}, nil},
		{"body and media", `{"body":"hi","media_urls":["https://x/a","https://x/b"]}`,
			proxyclient.InteractionData{Body: "hi", MediaURLs: []string{"https://x/a", "https://x/b"}}, nil},
		{"unknown keys ignored", `{"body":"hi","extra":1}`, proxyclient.InteractionData{Body: "hi"}, nil},
		{"null data", ``, proxyclient.InteractionData{}, proxyclient.ErrNoData},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mi := proxyclient.MessageInteraction{Data: tt.data}
			got, err := mi.DecodeData()
			if !errors.Is(err, tt.wantErr) || fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("DecodeData = %+v, %v; want %+v, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
	t.Run("not an object", func(t *testing.T) {
		t.Parallel()
		mi := proxyclient.MessageInteraction{Data: `"secret body text`}
		_, err := mi.DecodeData()
		if err == nil || strings.Contains(err.Error(), "secret body text") {
			t.Errorf("err = %v, want an error that does not quote the data", err)
		}
	})
}

func TestInteractionDatesLenient(t *testing.T) {
	t.Parallel()
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := strings.Replace(interactionJSON, `"2015-07-30T20:00:00Z"`, `"Thu, 30 Jul 2015 20:00:00 +0000"`, 1)
		body = strings.Replace(body, `"2015-07-30T20:00:01Z"`, `"yesterday"`, 1)
		_, _ = io.WriteString(w, body)
	}))
	c := newClient(t, srv.URL, nil)
	mi, err := c.CreateMessageInteraction(context.Background(), createParams())
	if err != nil {
		t.Fatalf("a created interaction must not fail on a date format: %v", err)
	}
	if !mi.DateCreated.Equal(time.Date(2015, 7, 30, 20, 0, 0, 0, time.UTC)) || !mi.DateUpdated.IsZero() {
		t.Errorf("dates = %v, %v", mi.DateCreated, mi.DateUpdated)
	}
}
