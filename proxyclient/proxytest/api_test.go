package proxytest_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/proxyq/proxyq/proxyclient/proxytest"
)

func TestCreate(t *testing.T) {
	t.Parallel()
	// A clock off UTC with sub-second precision: the resource must show UTC seconds.
	clock := func() time.Time { return time.Date(2015, 7, 30, 21, 0, 0, 987654321, time.FixedZone("CET", 3600)) }
	for _, tc := range []struct {
		name       string
		status     int
		wantStatus int
	}{
		{"default is 201", 0, http.StatusCreated},
		{"201", http.StatusCreated, http.StatusCreated},
		{"200 as the current API description says", http.StatusOK, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, proxytest.Config{CreateStatus: tc.status, Now: clock})
			resp, b := create(t, srv, kp, url.Values{"Body": {"Your driver is here"}})
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.wantStatus, b)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if id := resp.Header.Get("Twilio-Request-Id"); !reRQ.MatchString(id) {
				t.Errorf("Twilio-Request-Id %q", id)
			}

			// Every field of the published resource is present; inbound ones are null.
			raw := decode[map[string]any](t, b)
			for _, k := range []string{"sid", "session_sid", "service_sid", "account_sid", "data", "type",
				"participant_sid", "inbound_participant_sid", "inbound_resource_sid", "inbound_resource_status",
				"inbound_resource_type", "inbound_resource_url", "outbound_participant_sid", "outbound_resource_sid",
				"outbound_resource_status", "outbound_resource_type", "outbound_resource_url", "date_created",
				"date_updated", "url"} {
				v, ok := raw[k]
				if !ok {
					t.Errorf("field %q missing", k)
					continue
				}
				if strings.HasPrefix(k, "inbound_") && v != nil {
					t.Errorf("%s = %v, want null", k, v)
				}
			}
			if len(raw) != 20 {
				t.Errorf("%d fields, want 20: %v", len(raw), raw)
			}

			r := decode[resource](t, b)
			checks := []struct {
				field, got, want string
			}{
				{"account_sid", r.AccountSID, acct},
				{"service_sid", r.ServiceSID, ks},
				{"session_sid", r.SessionSID, kc},
				{"participant_sid", r.ParticipantSID, kp},
				{"type", r.Type, "message"},
				{"outbound_participant_sid", r.OutboundParticipantSID, kp},
				{"outbound_resource_status", r.OutboundResourceStatus, "queued"},
				{"outbound_resource_type", r.OutboundResourceType, "Message"},
				{"outbound_resource_url", r.OutboundResourceURL,
					srv.URL + "/2010-04-01/Accounts/" + acct + "/Messages/" + r.OutboundResourceSID + ".json"},
				{"date_created", r.DateCreated, "2015-07-30T20:00:00Z"},
				{"date_updated", r.DateUpdated, "2015-07-30T20:00:00Z"},
				{"url", r.URL, srv.URL + messagesPath(ks, kc, kp) + "/" + r.SID},
				{"data", r.Data, `{"body":"Your driver is here"}`},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s = %q, want %q", c.field, c.got, c.want)
				}
			}
			if !reKI.MatchString(r.SID) || !reSM.MatchString(r.OutboundResourceSID) {
				t.Errorf("sid %q / outbound_resource_sid %q malformed", r.SID, r.OutboundResourceSID)
			}
			if !reDate.MatchString(r.DateCreated) {
				t.Errorf("date_created %q not ISO 8601 UTC seconds", r.DateCreated)
			}
			if !strings.Contains(r.URL, proxytest.DefaultPrefix+"/v1/") {
				t.Errorf("url %q lacks the mount prefix", r.URL)
			}
			// data is a string holding JSON: decode twice.
			if d := decodeData(t, r); d.Body != "Your driver is here" || d.MediaURLs != nil {
				t.Errorf("data decoded to %+v", d)
			}

			// The url fetches the same resource.
			resp, fb := mustDo(t, srv, http.MethodGet, r.URL, acct, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("fetch: status %d, body %s", resp.StatusCode, fb)
			}
			if got := decode[resource](t, fb); got != r {
				t.Errorf("fetched %+v\nwant %+v", got, r)
			}

			created := srv.Fake.Created()
			if len(created) != 1 {
				t.Fatalf("Created() has %d records, want 1", len(created))
			}
			c := created[0]
			if c.SID != r.SID || c.Body != "Your driver is here" || c.Account != acct || c.AccountSID != acct ||
				c.Service != ks || c.Session != kc || c.Participant != kp ||
				c.OutboundResourceSID != r.OutboundResourceSID || !c.CreatedAt.Equal(clock()) {
				t.Errorf("Created()[0] = %+v", c)
			}
		})
	}
}

func TestCreateWithAPIKey(t *testing.T) {
	t.Parallel()
	srv := newServer(t, proxytest.Config{})
	var accounts []string
	for range 2 {
		resp, b := mustDo(t, srv, http.MethodPost, srv.URL+messagesPath(ks, kc, kp), apiKey, url.Values{"Body": {"hi"}})
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("status %d, body %s", resp.StatusCode, b)
		}
		accounts = append(accounts, decode[resource](t, b).AccountSID)
	}
	if !reAC.MatchString(accounts[0]) || accounts[0] != accounts[1] {
		t.Errorf("account_sid for an API key: %q then %q, want one fixed AC sid", accounts[0], accounts[1])
	}
	for _, c := range srv.Fake.Created() {
		if c.Account != apiKey {
			t.Errorf("Created().Account = %q, want the Basic-auth user %q", c.Account, apiKey)
		}
	}
	// The key sees its own interactions; the Account SID user is another account here.
	resp, b := mustDo(t, srv, http.MethodGet, srv.URL+messagesPath(ks, kc, kp), apiKey, nil)
	if n := len(decode[listPage](t, b).Interactions); resp.StatusCode != http.StatusOK || n != 2 {
		t.Errorf("list as the key: status %d, %d items, want 200 and 2", resp.StatusCode, n)
	}
	_, b = mustDo(t, srv, http.MethodGet, srv.URL+messagesPath(ks, kc, kp), acct, nil)
	if n := len(decode[listPage](t, b).Interactions); n != 0 {
		t.Errorf("list as another account: %d items, want 0", n)
	}
}

func TestCreateMedia(t *testing.T) {
	t.Parallel()
	srv := newServer(t, proxytest.Config{})
	for _, tc := range []struct {
		name string
		form url.Values
		want interactionData
	}{
		{"repeated MediaUrl", url.Values{"Body": {"look"}, "MediaUrl": {"https://a.example/1.jpg", "https://a.example/2.jpg"}},
			interactionData{Body: "look", MediaURLs: []string{"https://a.example/1.jpg", "https://a.example/2.jpg"}}},
		{"media only", url.Values{"MediaUrl": {"https://a.example/3.jpg"}},
			interactionData{Body: "", MediaURLs: []string{"https://a.example/3.jpg"}}},
		{"body with markup and accents", url.Values{"Body": {`<b>&"é"</b>`}},
			interactionData{Body: `<b>&"é"</b>`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := create(t, srv, kp, tc.form)
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("status %d, body %s", resp.StatusCode, b)
			}
			got := decodeData(t, decode[resource](t, b))
			if got.Body != tc.want.Body || !slices.Equal(got.MediaURLs, tc.want.MediaURLs) {
				t.Errorf("data = %+v, want %+v", got, tc.want)
			}
		})
	}
	if got := srv.Fake.Created()[0].MediaURLs; len(got) != 2 {
		t.Errorf("Created()[0].MediaURLs = %v, want 2 URLs", got)
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	creds := map[string]string{acct: "right", "SKffffffffffffffffffffffffffffffff": "key-secret"}
	for _, tc := range []struct {
		name        string
		creds       map[string]string
		user, pass  string
		wantCreated bool
	}{
		{"no Authorization", nil, "", "", false},
		{"malformed account SID", nil, "AC123", "x", false},
		{"not an AC or SK user", nil, "KS0123456789abcdef0123456789abcdef", "x", false},
		{"empty secret", nil, acct, "", false},
		{"any AC user with a secret", nil, acct, "anything", true},
		{"any SK user with a secret", nil, apiKey, "anything", true},
		{"wrong secret", creds, acct, "wrong", false},
		{"unknown user", creds, acct2, "right", false},
		{"right secret", creds, acct, "right", true},
		{"right key secret", creds, "SKffffffffffffffffffffffffffffffff", "key-secret", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, proxytest.Config{Credentials: tc.creds})
			resp, b, err := roundTrip(t.Context(), srv.Client(), http.MethodPost, srv.URL+messagesPath(ks, kc, kp),
				tc.user, tc.pass, url.Values{"Body": {"hi"}})
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantCreated {
				if resp.StatusCode != http.StatusCreated {
					t.Fatalf("status %d, body %s", resp.StatusCode, b)
				}
				return
			}
			wantError(t, resp, b, http.StatusUnauthorized, 20003)
			if resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if n := len(srv.Fake.Created()); n != 0 {
				t.Errorf("%d interactions created by an unauthenticated request", n)
			}
		})
	}
}

func TestNotFoundAndMethods(t *testing.T) {
	t.Parallel()
	srv := newServer(t, proxytest.Config{})
	r := mustCreate(t, srv, kp, "hi")
	unknownKI := "KI" + strings.Repeat("0", 32)
	for _, tc := range []struct {
		name, method, path string
		status, code       int
	}{
		{"short service SID", http.MethodPost, messagesPath("KS123", kc, kp), 404, 20404},
		{"lower-case prefix", http.MethodPost, messagesPath(strings.ToLower(ks[:2])+ks[2:], kc, kp), 404, 20404},
		{"non-hex session SID", http.MethodPost, messagesPath(ks, "KC"+strings.Repeat("g", 32), kp), 404, 20404},
		{"participant SID of the wrong kind", http.MethodPost, messagesPath(ks, kc, kc), 404, 20404},
		{"malformed interaction SID", http.MethodGet, messagesPath(ks, kc, kp) + "/KI123", 404, 20404},
		{"unknown interaction", http.MethodGet, messagesPath(ks, kc, kp) + "/" + unknownKI, 404, 20404},
		{"interaction under another participant", http.MethodGet, messagesPath(ks, kc, kp2) + "/" + r.SID, 404, 20404},
		{"interaction under another session", http.MethodGet, sessionPath(ks, kc2) + "/" + r.SID, 404, 20404},
		{"unknown route", http.MethodGet, "/v1/Services", 404, 20404},
		{"trailing slash", http.MethodGet, messagesPath(ks, kc, kp) + "/", 404, 20404},
		{"DELETE a list", http.MethodDelete, messagesPath(ks, kc, kp), 405, 20004},
		{"POST an instance", http.MethodPost, messagesPath(ks, kc, kp) + "/" + r.SID, 405, 20004},
		{"POST the session list", http.MethodPost, sessionPath(ks, kc), 405, 20004},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var form url.Values
			if tc.method == http.MethodPost {
				form = url.Values{"Body": {"hi"}}
			}
			resp, b := mustDo(t, srv, tc.method, srv.URL+tc.path, acct, form)
			wantError(t, resp, b, tc.status, tc.code)
		})
	}
	// Outside the mount prefix: still Twilio's 404 JSON.
	base := strings.TrimSuffix(srv.URL, proxytest.DefaultPrefix)
	resp, b := mustDo(t, srv, http.MethodGet, base+messagesPath(ks, kc, kp), acct, nil)
	wantError(t, resp, b, http.StatusNotFound, 20404)
	// The session-level instance exists.
	resp, b = mustDo(t, srv, http.MethodGet, srv.URL+sessionPath(ks, kc)+"/"+r.SID, acct, nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("session-level fetch: %d %s", resp.StatusCode, b)
	}
	// Another account cannot read it.
	resp, b = mustDo(t, srv, http.MethodGet, r.URL, acct2, nil)
	wantError(t, resp, b, http.StatusNotFound, 20404)
	if n := len(srv.Fake.Created()); n != 1 {
		t.Errorf("%d interactions, want only the first", n)
	}
}

func TestMissingBody(t *testing.T) {
	t.Parallel()
	srv := newServer(t, proxytest.Config{})
	for _, tc := range []struct {
		name string
		form url.Values
	}{
		{"no fields", url.Values{}},
		{"empty Body", url.Values{"Body": {""}}},
		{"empty MediaUrl", url.Values{"MediaUrl": {""}}},
		{"Body in the query string only", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := srv.URL + messagesPath(ks, kc, kp)
			form := tc.form
			if form == nil {
				u += "?Body=hi"
				form = url.Values{}
			}
			resp, b := mustDo(t, srv, http.MethodPost, u, acct, form)
			wantError(t, resp, b, http.StatusBadRequest, 21602)
		})
	}
	if n := srv.Fake.Stats().Creates; n != 0 {
		t.Errorf("%d creates, want 0", n)
	}
}

func TestUnknownParticipant(t *testing.T) {
	t.Parallel()
	srv := newServer(t, proxytest.Config{})
	srv.Fake.MarkParticipantUnknown(kp2)
	resp, b := create(t, srv, kp2, url.Values{"Body": {"hi"}})
	wantError(t, resp, b, http.StatusNotFound, 20404)
	resp, b = mustDo(t, srv, http.MethodGet, srv.URL+messagesPath(ks, kc, kp2), acct, nil)
	wantError(t, resp, b, http.StatusNotFound, 20404)
	mustCreate(t, srv, kp, "others are lenient")
}

func TestClosedSession(t *testing.T) {
	t.Parallel()
	srv := newServer(t, proxytest.Config{})
	r := mustCreate(t, srv, kp, "before closing")
	srv.Fake.CloseSession(kc)
	resp, b := create(t, srv, kp, url.Values{"Body": {"after closing"}})
	wantError(t, resp, b, http.StatusBadRequest, 80607)
	// Reads still work.
	resp, b = mustDo(t, srv, http.MethodGet, r.URL, acct, nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("fetch in a closed session: %d %s", resp.StatusCode, b)
	}
	// Other sessions are open.
	resp, b = mustDo(t, srv, http.MethodPost, srv.URL+messagesPath(ks, kc2, kp), acct, url.Values{"Body": {"x"}})
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("create in another session: %d %s", resp.StatusCode, b)
	}
	if got := srv.Fake.CreatesForBody("after closing"); got != 0 {
		t.Errorf("CreatesForBody = %d, want 0", got)
	}
}

// followPages reads a list from first, following next_page_url until it is null, checking
// the envelope of each page. It returns the pages.
func followPages(t *testing.T, srv *proxytest.Server, first string, size int) []listPage {
	t.Helper()
	base, _, _ := strings.Cut(first, "?")
	var pages []listPage
	next := first
	for i := 0; ; i++ {
		if i >= 20 {
			t.Fatalf("more than 20 pages: next_page_url never became null")
		}
		resp, b := mustDo(t, srv, http.MethodGet, next, acct, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("page %d: status %d, body %s", i, resp.StatusCode, b)
		}
		p := decode[listPage](t, b)
		m := p.Meta
		if m.Key != "interactions" || m.Page != i || m.PageSize != size {
			t.Errorf("page %d meta: key %q page %d page_size %d", i, m.Key, m.Page, m.PageSize)
		}
		if want := base + "?PageSize=" + itoa(size) + "&Page=0"; m.FirstPageURL != want {
			t.Errorf("first_page_url %q, want %q", m.FirstPageURL, want)
		}
		// Page 0's url is the canonical first page; later ones are the next_page_url followed.
		if (i == 0 && m.URL != m.FirstPageURL) || (i > 0 && m.URL != next) {
			t.Errorf("page %d url %q, requested %q", i, m.URL, next)
		}
		if (i == 0) != (m.PreviousPageURL == nil) {
			t.Errorf("page %d previous_page_url = %v", i, m.PreviousPageURL)
		}
		pages = append(pages, p)
		if m.NextPageURL == nil {
			return pages
		}
		if !strings.HasPrefix(*m.NextPageURL, base+"?") {
			t.Fatalf("next_page_url %q is not an absolute URL of this list %q", *m.NextPageURL, base)
		}
		next = *m.NextPageURL
	}
}

func bodies(t *testing.T, pages []listPage) []string {
	t.Helper()
	var out []string
	for _, p := range pages {
		for _, r := range p.Interactions {
			out = append(out, decodeData(t, r).Body)
		}
	}
	return out
}

func TestListPaging(t *testing.T) {
	t.Parallel()
	const n = 7
	var created []string
	for i := range n {
		created = append(created, "m"+itoa(i))
	}
	newest := slices.Clone(created)
	slices.Reverse(newest)

	for _, tc := range []struct {
		order proxytest.ListOrder
		check func(t *testing.T, got []string)
	}{
		{"", func(t *testing.T, got []string) { // default: oldest first, never newest first
			if !slices.Equal(got, created) {
				t.Errorf("default order %v, want creation order %v", got, created)
			}
		}},
		{proxytest.ListNewestFirst, func(t *testing.T, got []string) {
			if !slices.Equal(got, newest) {
				t.Errorf("newest-first order %v, want %v", got, newest)
			}
		}},
		{proxytest.ListShuffled, func(t *testing.T, got []string) {
			if !slices.Equal(slices.Sorted(slices.Values(got)), created) {
				t.Errorf("shuffled %v is not a permutation of %v", got, created)
			}
			// Seed 7 and 7 sequential creates give one fixed order, neither sorted way.
			if slices.Equal(got, created) || slices.Equal(got, newest) {
				t.Errorf("shuffled order %v is sorted", got)
			}
		}},
	} {
		t.Run(string(tc.order), func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, proxytest.Config{ListOrder: tc.order, Seed: 7})
			for _, b := range created {
				mustCreate(t, srv, kp, b)
			}
			mustCreate(t, srv, kp2, "other participant")
			mustCreate(t, srv, kp2, "other participant")

			list := srv.URL + messagesPath(ks, kc, kp)
			pages := followPages(t, srv, list+"?PageSize=3", 3)
			if len(pages) != 3 {
				t.Fatalf("%d pages of 3 for %d items, want 3", len(pages), n)
			}
			got := bodies(t, pages)
			tc.check(t, got)

			// previous_page_url of the last page gives the middle page again.
			resp, b := mustDo(t, srv, http.MethodGet, *pages[2].Meta.PreviousPageURL, acct, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("previous page: %d %s", resp.StatusCode, b)
			}
			if prev := bodies(t, []listPage{decode[listPage](t, b)}); !slices.Equal(prev, got[3:6]) {
				t.Errorf("previous page %v, want %v", prev, got[3:6])
			}

			// Session level: both participants, the session-level resource shape.
			sp := followPages(t, srv, srv.URL+sessionPath(ks, kc), 50)
			if len(sp) != 1 || len(sp[0].Interactions) != n+2 {
				t.Fatalf("session list: %d pages, want 1 page of %d", len(sp), n+2)
			}
			for _, r := range sp[0].Interactions {
				if r.ParticipantSID != "" || !strings.HasSuffix(r.URL, sessionPath(ks, kc)+"/"+r.SID) {
					t.Errorf("session-level item: participant_sid %q url %q", r.ParticipantSID, r.URL)
				}
			}
		})
	}
}

func TestListDefaultsAndBadParameters(t *testing.T) {
	t.Parallel()
	srv := newServer(t, proxytest.Config{})
	list := srv.URL + messagesPath(ks, kc, kp)
	resp, b := mustDo(t, srv, http.MethodGet, list, acct, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, body %s", resp.StatusCode, b)
	}
	p := decode[listPage](t, b)
	if p.Interactions == nil || len(p.Interactions) != 0 || p.Meta.PageSize != 50 || p.Meta.NextPageURL != nil ||
		p.Meta.URL != list+"?PageSize=50&Page=0" {
		t.Errorf("empty list: %s", b)
	}
	for _, q := range []string{"PageSize=0", "PageSize=1001", "PageSize=x", "Page=-1", "PageToken=PAnothing"} {
		t.Run(q, func(t *testing.T) {
			resp, b := mustDo(t, srv, http.MethodGet, list+"?"+q, acct, nil)
			wantError(t, resp, b, http.StatusBadRequest, 20001)
		})
	}
	resp, b = mustDo(t, srv, http.MethodGet, list+"?PageSize=1000", acct, nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("PageSize=1000: %d %s", resp.StatusCode, b)
	}
}

func TestMount(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		handler func(f *proxytest.Fake) http.Handler
		prefix  string
	}{
		{"at the root", func(f *proxytest.Fake) http.Handler { return f }, ""},
		{"under http.StripPrefix", func(f *proxytest.Fake) http.Handler {
			mux := http.NewServeMux()
			mux.Handle("/api/proxy/", http.StripPrefix("/api/proxy", f))
			return mux
		}, "/api/proxy"},
		{"Mount", func(f *proxytest.Fake) http.Handler { return f.Mount("deep/er/") }, "/deep/er"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := proxytest.New(proxytest.Config{})
			t.Cleanup(f.Close)
			ts := newHTTPTestServer(t, tc.handler(f))
			u := ts.URL + tc.prefix + messagesPath(ks, kc, kp)
			resp, b, err := roundTrip(t.Context(), ts.Client(), http.MethodPost, u, acct, secret, url.Values{"Body": {"x"}})
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("status %d body %s", resp.StatusCode, b)
			}
			if r := decode[resource](t, b); r.URL != u+"/"+r.SID {
				t.Errorf("url %q, want %q", r.URL, u+"/"+r.SID)
			}
		})
	}

	t.Run("WithPrefix empty and WithTLS", func(t *testing.T) {
		t.Parallel()
		srv := newServer(t, proxytest.Config{}, proxytest.WithPrefix(""), proxytest.WithTLS())
		if !strings.HasPrefix(srv.URL, "https://127.0.0.1:") || strings.Count(srv.URL, "/") != 2 {
			t.Fatalf("URL %q, want https://127.0.0.1:port", srv.URL)
		}
		r := mustCreate(t, srv, kp, "tls")
		if want := srv.URL + messagesPath(ks, kc, kp) + "/" + r.SID; r.URL != want {
			t.Errorf("url %q, want %q", r.URL, want)
		}
	})
}
