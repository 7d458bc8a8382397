package conversations_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/proxyq/proxyq/conversations"
	"github.com/proxyq/proxyq/conversations/convtest"
)

// The subset of an OpenAPI 3 description the check reads.
type (
	specDoc struct {
		RawPaths   map[string]map[string]json.RawMessage `json:"paths"`
		Paths      map[string]map[string]specOperation   `json:"-"`
		Components struct {
			Schemas map[string]specSchema `json:"schemas"`
		} `json:"components"`
	}
	specOperation struct {
		Parameters  []specParam `json:"parameters"`
		RequestBody *struct {
			Content map[string]struct {
				Schema specSchema `json:"schema"`
			} `json:"content"`
		} `json:"requestBody"`
	}
	specParam struct {
		Name     string     `json:"name"`
		In       string     `json:"in"`
		Required bool       `json:"required"`
		Schema   specSchema `json:"schema"`
	}
	specSchema struct {
		Ref        string                `json:"$ref"`
		Type       string                `json:"type"`
		Enum       []string              `json:"enum"`
		Pattern    string                `json:"pattern"`
		MinLength  *int                  `json:"minLength"`
		MaxLength  *int                  `json:"maxLength"`
		Minimum    *float64              `json:"minimum"`
		Maximum    *float64              `json:"maximum"`
		Properties map[string]specSchema `json:"properties"`
	}
)

func loadSpec(t *testing.T) *specDoc {
	t.Helper()
	data, err := os.ReadFile("testdata/twilio_conversations_v1.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var d specDoc
	if err := yaml.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	// A path item also holds servers, description and x-twilio: keep the operations only.
	d.Paths = map[string]map[string]specOperation{}
	for tmpl, item := range d.RawPaths {
		d.Paths[tmpl] = map[string]specOperation{}
		for method, raw := range item {
			switch method {
			case "get", "post", "put", "patch", "delete":
				var op specOperation
				if err := json.Unmarshal(raw, &op); err != nil {
					t.Fatalf("%s %s: %v", method, tmpl, err)
				}
				d.Paths[tmpl][method] = op
			}
		}
	}
	return &d
}

func (d *specDoc) resolve(s specSchema) specSchema {
	if name, ok := strings.CutPrefix(s.Ref, "#/components/schemas/"); ok {
		return d.Components.Schemas[name]
	}
	return s
}

// check reports why value breaks schema, or "".
func (d *specDoc) check(s specSchema, value string) string {
	s = d.resolve(s)
	switch s.Type {
	case "integer":
		n, err := strconv.ParseFloat(value, 64)
		if err != nil || n != float64(int64(n)) {
			return "not an integer"
		}
		if s.Minimum != nil && n < *s.Minimum || s.Maximum != nil && n > *s.Maximum {
			return "out of range"
		}
		return ""
	}
	if len(s.Enum) > 0 {
		ok := false
		for _, e := range s.Enum {
			ok = ok || e == value
		}
		if !ok {
			return fmt.Sprintf("not one of %v", s.Enum)
		}
	}
	if s.Pattern != "" && !regexp.MustCompile(s.Pattern).MatchString(value) {
		return "does not match " + s.Pattern
	}
	if s.MinLength != nil && len(value) < *s.MinLength || s.MaxLength != nil && len(value) > *s.MaxLength {
		return "length out of range"
	}
	return ""
}

// match finds the operation for a request path (below the base URL) and its path parameters.
func (d *specDoc) match(method, path string) (string, specOperation, map[string]string, bool) {
	for tmpl, ops := range d.Paths {
		names := regexp.MustCompile(`\{([^}]+)\}`).FindAllStringSubmatch(tmpl, -1)
		re := regexp.MustCompile("^" + regexp.MustCompile(`\\\{[^}]+\\\}`).ReplaceAllString(regexp.QuoteMeta(tmpl), `([^/]+)`) + "$")
		m := re.FindStringSubmatch(path)
		if m == nil {
			continue
		}
		op, ok := ops[strings.ToLower(method)]
		if !ok {
			return tmpl, op, nil, false
		}
		vals := map[string]string{}
		for i, n := range names {
			vals[n[1]], _ = url.PathUnescape(m[i+1])
		}
		return tmpl, op, vals, true
	}
	return "", specOperation{}, nil, false
}

// validate checks one request against the description and returns its problems.
func (d *specDoc) validate(r sentRequest) []string {
	var probs []string
	tmpl, op, pathVals, ok := d.match(r.Method, r.Path)
	if !ok {
		return []string{fmt.Sprintf("%s %s: no such operation (template %q)", r.Method, r.Path, tmpl)}
	}
	params := map[string]specParam{}
	for _, p := range op.Parameters {
		params[p.In+":"+p.Name] = p
	}
	for name, v := range pathVals {
		p, ok := params["path:"+name]
		if !ok {
			probs = append(probs, "undeclared path parameter "+name)
		} else if why := d.check(p.Schema, v); why != "" {
			probs = append(probs, "path "+name+": "+why)
		}
	}
	q, _ := url.ParseQuery(r.RawQuery)
	for name, vs := range q {
		p, ok := params["query:"+name]
		if !ok {
			probs = append(probs, "undeclared query parameter "+name)
			continue
		}
		for _, v := range vs {
			if why := d.check(p.Schema, v); why != "" {
				probs = append(probs, "query "+name+"="+v+": "+why)
			}
		}
	}
	// Twilio's own headers (X-Twilio-…) that proxyq sets must be declared for the operation
	// and hold an allowed value.
	headers := map[string]specParam{}
	for _, p := range op.Parameters {
		if p.In == "header" {
			headers[http.CanonicalHeaderKey(p.Name)] = p
		}
	}
	for h, vs := range r.Header {
		if !strings.HasPrefix(strings.ToLower(h), "x-twilio-") {
			continue
		}
		p, ok := headers[http.CanonicalHeaderKey(h)]
		if !ok {
			probs = append(probs, "undeclared header "+h)
			continue
		}
		for _, v := range vs {
			if why := d.check(p.Schema, v); why != "" {
				probs = append(probs, "header "+h+": "+why)
			}
		}
	}
	if r.Body != "" || op.RequestBody != nil {
		if op.RequestBody == nil {
			return append(probs, "body sent to an operation without one")
		}
		media, ok := op.RequestBody.Content[r.ContentType]
		if !ok {
			return append(probs, "content type "+r.ContentType+" not accepted")
		}
		form, err := url.ParseQuery(r.Body)
		if err != nil {
			return append(probs, "body is not form-encoded")
		}
		for name, vs := range form {
			s, ok := media.Schema.Properties[name]
			if !ok {
				probs = append(probs, "undeclared form parameter "+name)
				continue
			}
			if len(vs) != 1 && d.resolve(s).Type != "array" {
				probs = append(probs, "form parameter "+name+" repeated")
			}
			for _, v := range vs {
				if why := d.check(s, v); why != "" {
					probs = append(probs, "form "+name+": "+why)
				}
			}
		}
	}
	return probs
}

// TestRequestsMatchTwilioDescription makes every request the client makes (against the fake)
// and checks each against Twilio's published Conversations v1 description: operation (method
// and path template), path, query and form parameter names and values, headers, content type.
func TestRequestsMatchTwilioDescription(t *testing.T) {
	t.Parallel()
	spec := loadSpec(t)
	srv, err := convtest.NewServer(convtest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	rec := &recorder{next: http.DefaultTransport}
	c := newClient(t, srv.URL, func(cfg *conversations.Config) {
		cfg.WrapTransport = func(http.RoundTripper) http.RoundTripper { return rec }
	})
	exerciseClient(t, c, func(conv conversations.Conversation) string {
		return srv.Fake.Messages(testAccount, conv.ServiceSID, conv.ConversationSID)[0].SID
	})

	ops := map[string]bool{}
	for _, r := range rec.reqs {
		r.Path = strings.TrimPrefix(r.Path, convtest.DefaultPrefix)
		tmpl, _, _, _ := spec.match(r.Method, r.Path)
		ops[r.Method+" "+tmpl] = true
		for _, p := range spec.validate(r) {
			t.Errorf("%s %s?%s: %s", r.Method, r.Path, r.RawQuery, p)
		}
	}
	for _, want := range []string{
		"POST /v1/Conversations/{ConversationSid}/Messages",
		"POST /v1/Services/{ChatServiceSid}/Conversations/{ConversationSid}/Messages",
		"GET /v1/Conversations/{ConversationSid}/Messages",
		"GET /v1/Services/{ChatServiceSid}/Conversations/{ConversationSid}/Messages",
		"GET /v1/Conversations/{ConversationSid}/Messages/{Sid}",
		"GET /v1/Services/{ChatServiceSid}/Conversations/{ConversationSid}/Messages/{Sid}",
		"GET /v1/Conversations/{ConversationSid}/Messages/{MessageSid}/Receipts",
		"GET /v1/Services/{ChatServiceSid}/Conversations/{ConversationSid}/Messages/{MessageSid}/Receipts",
	} {
		if !ops[want] {
			t.Errorf("operation %s was not exercised (saw %v)", want, ops)
		}
	}
	// The check itself must catch what it is for.
	for _, bad := range []sentRequest{
		{Method: "POST", Path: "/v1/Conversations/" + testCH + "/Messages", ContentType: "application/x-www-form-urlencoded", Body: "MediaUrl=https%3A%2F%2Fx"},
		{Method: "POST", Path: "/v1/Conversations/" + testCH + "/Messages", ContentType: "application/x-www-form-urlencoded", Body: "MediaSid=ME1"},
		{Method: "GET", Path: "/v1/Conversations/" + testCH + "/Messages", RawQuery: "PageSize=1000"},
		{Method: "GET", Path: "/v1/Conversations/" + testCH + "/Messages", RawQuery: "Order=newest"},
		{Method: "POST", Path: "/v1/Conversations/" + testCH + "/Messages", Header: http.Header{"X-Twilio-Webhook-Enabled": {"yes"}}, ContentType: "application/x-www-form-urlencoded", Body: "Body=x"},
		{Method: "GET", Path: "/v1/Conversations/" + testCH + "/Messages/" + testIM + "/Receipts", RawQuery: "PageSize=100"},
		{Method: "DELETE", Path: "/v1/Conversations/" + testCH + "/Messages/" + testIM + "/Receipts"},
	} {
		if bad.Header == nil {
			bad.Header = http.Header{}
		}
		if len(spec.validate(bad)) == 0 {
			t.Errorf("validator accepted %s %s?%s %s", bad.Method, bad.Path, bad.RawQuery, bad.Body)
		}
	}
}
