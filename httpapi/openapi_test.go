package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"mime"
	"net/url"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The OpenAPI description is checked against the real handler, on real Redis, both ways:
// every route the handler serves is documented (with the right security), and every
// documented operation is called with requests that produce each documented status (500
// aside), each answer's status being documented for that operation and its body validating
// against the documented schema, with no undocumented keys.

type openAPI struct {
	root map[string]any
}

func loadOpenAPI(t *testing.T) *openAPI {
	t.Helper()
	var root map[string]any
	if err := json.Unmarshal(OpenAPI(), &root); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if v, _ := root["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		t.Fatalf("openapi version %q, want 3.1.x", v)
	}
	return &openAPI{root: root}
}

func obj(v any) map[string]any { m, _ := v.(map[string]any); return m }

// resolve follows $ref chains ("#/a/b/c") to the node they name.
func (s *openAPI) resolve(t *testing.T, node any) map[string]any {
	t.Helper()
	for i := 0; i < 10; i++ {
		m := obj(node)
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		if !strings.HasPrefix(ref, "#/") {
			t.Fatalf("external $ref %q", ref)
		}
		var cur any = s.root
		for _, part := range strings.Split(ref[2:], "/") {
			cur = obj(cur)[part]
			if cur == nil {
				t.Fatalf("dangling $ref %q", ref)
			}
		}
		node = cur
	}
	t.Fatal("$ref loop")
	return nil
}

type operation struct {
	path, method string
	op           map[string]any
}

func (s *openAPI) operations(t *testing.T) []operation {
	t.Helper()
	var ops []operation
	for path, item := range obj(s.root["paths"]) {
		for method, op := range obj(item) {
			switch method {
			case "get", "put", "post", "delete", "patch", "head", "options", "trace":
				ops = append(ops, operation{path: path, method: strings.ToUpper(method), op: obj(op)})
			case "parameters", "summary", "description":
			default:
				t.Errorf("path %s: unexpected key %q", path, method)
			}
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].path+ops[i].method < ops[j].path+ops[j].method })
	return ops
}

// public reports whether op is documented to need no authentication.
func (o operation) public() bool {
	sec, ok := o.op["security"].([]any)
	return ok && len(sec) == 0
}

// validate checks value against schema (the subset of JSON Schema 2020-12 the description
// uses) and returns the problems. strict also refuses object keys the schema does not
// declare, when it declares any.
func (s *openAPI) validate(t *testing.T, schema any, value any, at string, strict bool) []string {
	t.Helper()
	sch := s.resolve(t, schema)
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, at+": "+fmt.Sprintf(format, args...)) }

	for _, sub := range asSlice(sch["allOf"]) {
		errs = append(errs, s.validate(t, sub, value, at, false)...)
	}
	if typ, ok := sch["type"]; ok {
		var types []string
		switch v := typ.(type) {
		case string:
			types = []string{v}
		case []any:
			for _, x := range v {
				types = append(types, x.(string))
			}
		}
		if !slicesContainsFunc(types, func(tp string) bool { return jsonIs(value, tp) }) {
			fail("%s is not of type %v", short(value), types)
			return errs
		}
	}
	if enum, ok := sch["enum"].([]any); ok && !slicesContainsFunc(enum, func(e any) bool { return reflect.DeepEqual(e, value) }) {
		fail("%s not in enum %v", short(value), enum)
	}
	switch v := value.(type) {
	case string:
		if p, ok := sch["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(v) {
			fail("%q does not match %s", v, p)
		}
		if n, ok := sch["maxLength"].(float64); ok && utf8.RuneCountInString(v) > int(n) {
			fail("longer than %v", n)
		}
		if n, ok := sch["minLength"].(float64); ok && utf8.RuneCountInString(v) < int(n) {
			fail("shorter than %v", n)
		}
		switch sch["format"] {
		case "date-time":
			if _, err := time.Parse(time.RFC3339, v); err != nil {
				fail("%q is not a date-time", v)
			}
		case "uri":
			if u, err := url.Parse(v); err != nil || u.Scheme == "" {
				fail("%q is not a URI", v)
			}
		}
	case float64:
		if n, ok := sch["minimum"].(float64); ok && v < n {
			fail("%v below minimum %v", v, n)
		}
	case []any:
		if n, ok := sch["maxItems"].(float64); ok && len(v) > int(n) {
			fail("more than %v items", n)
		}
		if n, ok := sch["minItems"].(float64); ok && len(v) < int(n) {
			fail("fewer than %v items", n)
		}
		if items, ok := sch["items"]; ok {
			for i, it := range v {
				errs = append(errs, s.validate(t, items, it, fmt.Sprintf("%s[%d]", at, i), strict)...)
			}
		}
	case map[string]any:
		for _, r := range asSlice(sch["required"]) {
			if _, ok := v[r.(string)]; !ok {
				fail("required key %q missing", r)
			}
		}
		declared := s.properties(t, sch)
		for k, val := range v {
			if ps, ok := declared[k]; ok {
				errs = append(errs, s.validate(t, ps, val, at+"."+k, strict)...)
			} else if (strict && len(declared) > 0) || sch["additionalProperties"] == false {
				fail("undocumented key %q", k)
			}
		}
	}
	return errs
}

// properties collects the declared properties of a schema and of its allOf members.
func (s *openAPI) properties(t *testing.T, sch map[string]any) map[string]any {
	t.Helper()
	out := map[string]any{}
	for k, v := range obj(sch["properties"]) {
		out[k] = v
	}
	for _, sub := range asSlice(sch["allOf"]) {
		for k, v := range s.properties(t, s.resolve(t, sub)) {
			out[k] = v
		}
	}
	return out
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

func slicesContainsFunc[T any](s []T, f func(T) bool) bool {
	for _, v := range s {
		if f(v) {
			return true
		}
	}
	return false
}

func jsonIs(v any, typ string) bool {
	switch typ {
	case "null":
		return v == nil
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "number":
		_, ok := v.(float64)
		return ok
	case "integer":
		f, ok := v.(float64)
		return ok && f == math.Trunc(f)
	}
	return false
}

func short(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 60 {
		return string(b[:60]) + "…"
	}
	return string(b)
}

// TestOpenAPIDocumentsEveryRoute: the handler's route table and the description agree.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	t.Parallel()
	spec := loadOpenAPI(t)
	e := newEnv(t)
	documented := map[string]operation{}
	for _, op := range spec.operations(t) {
		documented[op.method+" "+op.path] = op
	}
	served := map[string]bool{}
	for _, rt := range e.srv.routes {
		key := rt.method + " " + rt.pattern
		served[key] = true
		op, ok := documented[key]
		if !ok {
			t.Errorf("route %s is served but not documented", key)
			continue
		}
		if op.public() != rt.public {
			t.Errorf("route %s: public %v, documented security says public %v", key, rt.public, op.public())
		}
		if !rt.public && !op.public() {
			// The global requirement must name the bearer scheme.
			if sec := asSlice(spec.root["security"]); len(sec) != 1 || obj(sec[0])["bearerAuth"] == nil {
				t.Errorf("global security %v, want bearerAuth", sec)
			}
		}
	}
	for key := range documented {
		if !served[key] {
			t.Errorf("operation %s is documented but not served", key)
		}
	}
	scheme := obj(obj(obj(spec.root["components"])["securitySchemes"])["bearerAuth"])
	if scheme["type"] != "http" || scheme["scheme"] != "bearer" {
		t.Errorf("bearerAuth scheme %v", scheme)
	}
}

// scenario is one request to a documented operation and the status it must produce.
type scenario struct {
	op     string // "METHOD /path" as documented
	name   string
	setup  func(t *testing.T, e *env)
	req    req // path may differ from op (an id filled in); body "EXAMPLE" = the documented example
	dead   bool
	on     *env // another server than e or dead
	status int
}

func TestOpenAPIMatchesHandlers(t *testing.T) {
	t.Parallel()
	spec := loadOpenAPI(t)
	callbacks := deliveryCallbacks(t)
	e := newEnv(t,
		withConfig(func(c *Config) { c.MaxBodyBytes = 4096; c.Callbacks = callbacks; c.Receipts = deliveryReceipts(t) }),
		withGuard(func(_ context.Context, id string) error {
			if strings.HasPrefix(id, "inflight") {
				return errors.New("in flight")
			}
			return nil
		}))
	dead := deadRedisEnv(t)
	huge := `{"body":"` + strings.Repeat("x", 5000) + `"}`
	create := func(key string) func(t *testing.T, e *env) {
		return func(t *testing.T, e *env) {
			wantStatus(t, e.do(post("/v1/message-interactions", msgJSON(t, nil), key)), 202)
		}
	}
	const (
		opCreate = "POST /v1/message-interactions"
		opBatch  = "POST /v1/message-interactions:batch"
		opGet    = "GET /v1/message-interactions/{id}"
		opDelete = "DELETE /v1/message-interactions/{id}"
		opSpec   = "GET /v1/openapi.json"
		opHealth = "GET /healthz"
		opReady  = "GET /readyz"
		opTwilio = "POST /v1/twilio/proxy/callbacks"
		opConvRx = "POST /v1/twilio/conversations/receipts"
		opConv   = "POST /v1/conversation-messages"
	)
	scenarios := []scenario{
		{op: opCreate, name: "example", req: post("/v1/message-interactions", "EXAMPLE", "oa-1"), status: 202},
		{op: opCreate, name: "repeat", req: post("/v1/message-interactions", "EXAMPLE", "oa-1"), status: 200},
		{op: opCreate, name: "key reuse", req: post("/v1/message-interactions", msgJSON(t, map[string]any{"body": "other"}), "oa-1"), status: 409},
		{op: opCreate, name: "malformed", req: post("/v1/message-interactions", "{", ""), status: 400},
		{op: opCreate, name: "no token", req: req{method: "POST", path: "/v1/message-interactions", body: "EXAMPLE", token: "-"}, status: 401},
		{op: opCreate, name: "too large", req: post("/v1/message-interactions", huge, ""), status: 413},
		{op: opCreate, name: "media type", req: req{method: "POST", path: "/v1/message-interactions", body: "EXAMPLE", header: map[string]string{"Content-Type": "text/plain"}}, status: 415},
		{op: opCreate, name: "invalid", req: post("/v1/message-interactions", `{"body":""}`, ""), status: 422},
		{op: opCreate, name: "redis down", req: post("/v1/message-interactions", "EXAMPLE", ""), dead: true, status: 503},

		{op: opBatch, name: "example", req: post("/v1/message-interactions:batch", "EXAMPLE", ""), status: 200},
		{op: opBatch, name: "repeat", req: post("/v1/message-interactions:batch", "EXAMPLE", ""), status: 200},
		{op: opBatch, name: "key reuse", req: post("/v1/message-interactions:batch", batchJSON(t, map[string]any{"idempotency_key": "ride-8812-eta", "body": "x"}), ""), status: 409},
		{op: opBatch, name: "malformed", req: post("/v1/message-interactions:batch", "[", ""), status: 400},
		{op: opBatch, name: "no token", req: req{method: "POST", path: "/v1/message-interactions:batch", body: "EXAMPLE", token: "-"}, status: 401},
		{op: opBatch, name: "too large", req: post("/v1/message-interactions:batch", huge, ""), status: 413},
		{op: opBatch, name: "media type", req: req{method: "POST", path: "/v1/message-interactions:batch", body: "EXAMPLE", header: map[string]string{"Content-Type": "application/xml"}}, status: 415},
		{op: opBatch, name: "invalid", req: post("/v1/message-interactions:batch", `{"messages":[{}]}`, ""), status: 422},
		{op: opBatch, name: "redis down", req: post("/v1/message-interactions:batch", "EXAMPLE", ""), dead: true, status: 503},

		{op: opGet, name: "found", req: req{method: "GET", path: "/v1/message-interactions/oa-1"}, status: 200},
		{op: opGet, name: "no token", req: req{method: "GET", path: "/v1/message-interactions/oa-1", token: "-"}, status: 401},
		{op: opGet, name: "unknown", req: req{method: "GET", path: "/v1/message-interactions/oa-none"}, status: 404},
		{op: opGet, name: "redis down", req: req{method: "GET", path: "/v1/message-interactions/oa-1"}, dead: true, status: 503},

		{op: opDelete, name: "cancel", setup: create("oa-del"), req: req{method: "DELETE", path: "/v1/message-interactions/oa-del"}, status: 200},
		{op: opDelete, name: "no token", req: req{method: "DELETE", path: "/v1/message-interactions/oa-1", token: "-"}, status: 401},
		{op: opDelete, name: "unknown", req: req{method: "DELETE", path: "/v1/message-interactions/oa-del"}, status: 404},
		{op: opDelete, name: "in flight", setup: create("inflight-oa"), req: req{method: "DELETE", path: "/v1/message-interactions/inflight-oa"}, status: 409},
		{op: opDelete, name: "archived", setup: func(t *testing.T, e *env) {
			create("oa-arch")(t, e)
			if err := e.insp.ArchiveTask("default", "oa-arch"); err != nil {
				t.Fatal(err)
			}
		}, req: req{method: "DELETE", path: "/v1/message-interactions/oa-arch"}, status: 409},
		{op: opDelete, name: "redis down", req: req{method: "DELETE", path: "/v1/message-interactions/oa-1"}, dead: true, status: 503},

		{op: opSpec, name: "served", req: req{method: "GET", path: "/v1/openapi.json"}, status: 200},
		{op: opSpec, name: "no token", req: req{method: "GET", path: "/v1/openapi.json", token: "-"}, status: 401},
		{op: opHealth, name: "up", req: req{method: "GET", path: "/healthz", token: "-"}, status: 200},
		{op: opReady, name: "ready", req: req{method: "GET", path: "/readyz", token: "-"}, status: 200},
		{op: opTwilio, name: "signed", req: signedCallback(t, "sent", testCallbackToken), status: 200},
		{op: opTwilio, name: "forged", req: signedCallback(t, "delivered", "not-the-token"), status: 403},
		{op: opTwilio, name: "unsigned", req: signedCallback(t, "delivered", ""), status: 403},
		{op: opTwilio, name: "media type", req: func() req {
			r := signedCallback(t, "sent", testCallbackToken)
			r.header["Content-Type"] = "application/json"
			return r
		}(), status: 415},
		{op: opTwilio, name: "too large", req: func() req {
			r := signedCallback(t, "sent", testCallbackToken)
			r.body = "a=" + strings.Repeat("x", 70<<10)
			return r
		}(), status: 413},
		{op: opTwilio, name: "redis down", req: signedCallback(t, "sent", testCallbackToken), on: deadCallbacksEnv(t), status: 503},
		{op: opTwilio, name: "not enabled", req: signedCallback(t, "sent", testCallbackToken), dead: true, status: 404},
		{op: opReady, name: "redis down", req: req{method: "GET", path: "/readyz", token: "-"}, dead: true, status: 503},
		{op: opConv, name: "example", req: post(ConversationsPath, "EXAMPLE", "conv-oa-1"), status: 202},
		{op: opConv, name: "repeat", req: post(ConversationsPath, "EXAMPLE", "conv-oa-1"), status: 200},
		{op: opConv, name: "key reuse", req: post(ConversationsPath, `{"conversation_sid":"CH0123456789abcdef0123456789abcdef","body":"other"}`, "conv-oa-1"), status: 409},
		{op: opConv, name: "key of a Proxy message", req: post(ConversationsPath, `{"conversation_sid":"CH0123456789abcdef0123456789abcdef","body":"x"}`, "oa-1"), status: 409},
		{op: opConv, name: "malformed", req: post(ConversationsPath, "{", ""), status: 400},
		{op: opConv, name: "no token", req: req{method: "POST", path: ConversationsPath, body: "EXAMPLE", token: "-"}, status: 401},
		{op: opConv, name: "media type", req: req{method: "POST", path: ConversationsPath, body: "EXAMPLE", header: map[string]string{"Content-Type": "text/plain"}}, status: 415},
		{op: opConv, name: "invalid", req: post(ConversationsPath, `{"conversation_sid":"CH1","media_sid":"https://x/y.png","session_sid":"KC0123456789abcdef0123456789abcdef"}`, ""), status: 422},
		{op: opConv, name: "redis down", req: post(ConversationsPath, "EXAMPLE", ""), dead: true, status: 503},
		{op: opConvRx, name: "signed", req: signedReceipt(t, "delivered", testCallbackToken), status: 200},
		{op: opConvRx, name: "forged", req: signedReceipt(t, "delivered", "not-the-token"), status: 403},
		{op: opConvRx, name: "media type", req: func() req {
			r := signedReceipt(t, "sent", testCallbackToken)
			r.header["Content-Type"] = "application/json"
			return r
		}(), status: 415},
		{op: opConvRx, name: "not enabled", req: signedReceipt(t, "sent", testCallbackToken), dead: true, status: 404},
	}

	ops := map[string]operation{}
	for _, op := range spec.operations(t) {
		ops[op.method+" "+op.path] = op
	}
	produced := map[string]map[string]bool{}
	for _, sc := range scenarios {
		op, ok := ops[sc.op]
		if !ok {
			t.Fatalf("scenario for undocumented operation %s", sc.op)
		}
		t.Run(sc.op+"/"+sc.name, func(t *testing.T) {
			target := e
			if sc.dead {
				target = dead
			}
			if sc.on != nil {
				target = sc.on
			}
			if sc.setup != nil {
				sc.setup(t, target)
			}
			r := sc.req
			if r.body == "EXAMPLE" {
				r.body = spec.requestExample(t, op)
			}
			w := target.do(r)
			if w.Code != sc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, sc.status, w.Body.String())
			}
			code := strconv.Itoa(w.Code)
			respNode, ok := obj(op.op["responses"])[code]
			if !ok {
				t.Fatalf("status %s is not documented for %s", code, sc.op)
			}
			resp := spec.resolve(t, respNode)
			for name := range obj(resp["headers"]) {
				if w.Header().Get(name) == "" {
					t.Errorf("documented header %s missing", name)
				}
			}
			content := obj(resp["content"])
			if len(content) == 0 {
				return
			}
			mt, _, err := mime.ParseMediaType(w.Header().Get("Content-Type"))
			if err != nil {
				t.Fatalf("Content-Type %q: %v", w.Header().Get("Content-Type"), err)
			}
			media, ok := content[mt]
			if !ok {
				t.Fatalf("Content-Type %s not documented (documented: %v)", mt, keys(content))
			}
			var body any
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("body is not JSON: %v", err)
			}
			for _, problem := range spec.validate(t, obj(media)["schema"], body, "body", true) {
				t.Error(problem)
			}
		})
		if produced[sc.op] == nil {
			produced[sc.op] = map[string]bool{}
		}
		produced[sc.op][strconv.Itoa(sc.status)] = true
	}
	for key, op := range ops {
		for code := range obj(op.op["responses"]) {
			if code != "500" && !produced[key][code] {
				t.Errorf("%s documents status %s but no scenario produces it", key, code)
			}
		}
	}
}

// requestExample returns the documented example body of op, after checking it against the
// documented request schema.
func (s *openAPI) requestExample(t *testing.T, op operation) string {
	t.Helper()
	media := obj(obj(obj(op.op["requestBody"])["content"])["application/json"])
	ex, ok := media["example"]
	if !ok {
		t.Fatalf("%s %s documents no request example", op.method, op.path)
	}
	for _, problem := range s.validate(t, media["schema"], ex, "example", true) {
		t.Errorf("documented example: %s", problem)
	}
	b, err := json.Marshal(ex)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestOpenAPIValidatorCatchesMistakes keeps the little validator above honest.
func TestOpenAPIValidatorCatchesMistakes(t *testing.T) {
	t.Parallel()
	spec := loadOpenAPI(t)
	status := map[string]any{"$ref": "#/components/schemas/Status"}
	good := map[string]any{"id": "x", "queue": "default", "state": "pending", "retried": 0.0, "max_retry": 25.0,
		"message": map[string]any{"service_sid": ks, "session_sid": kc, "participant_sid": kp}}
	if errs := spec.validate(t, status, good, "body", true); len(errs) > 0 {
		t.Fatalf("valid status refused: %v", errs)
	}
	for name, mutate := range map[string]func(m map[string]any){
		"missing required": func(m map[string]any) { delete(m, "queue") },
		"extra key":        func(m map[string]any) { m["colour"] = "red" },
		"bad enum":         func(m map[string]any) { m["state"] = "lost" },
		"bad type":         func(m map[string]any) { m["retried"] = "0" },
		"not integer":      func(m map[string]any) { m["retried"] = 0.5 },
		"bad time":         func(m map[string]any) { m["completed_at"] = "yesterday" },
		"nested extra":     func(m map[string]any) { m["message"].(map[string]any)["body"] = "hi" },
	} {
		m := map[string]any{}
		b, _ := json.Marshal(good)
		_ = json.Unmarshal(b, &m)
		mutate(m)
		if errs := spec.validate(t, status, m, "body", true); len(errs) == 0 {
			t.Errorf("%s: accepted", name)
		}
	}
	replayed := map[string]any{"$ref": "#/components/schemas/Replayed"}
	if errs := spec.validate(t, replayed, good, "body", true); len(errs) == 0 {
		t.Error("allOf: missing links accepted")
	}
}
