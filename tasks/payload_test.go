package tasks

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

const hex32 = "0123456789abcdef0123456789ABCDEF"

// validPayload returns a payload that passes Validate; cases change one thing at a time.
func validPayload() Payload {
	return Payload{
		ServiceSID:     "KS" + hex32,
		SessionSID:     "KC" + hex32,
		ParticipantSID: "KP" + hex32,
		Body:           "hello",
	}
}

// problems flattens a validation error into "field: rule" strings, failing the test for any
// other error type.
func problems(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var many ValidationErrors
	if errors.As(err, &many) {
		out := make([]string, len(many))
		for i, e := range many {
			out[i] = e.Field + ": " + e.Rule
		}
		return out
	}
	var one *ValidationError
	if errors.As(err, &one) {
		return []string{one.Field + ": " + one.Rule}
	}
	t.Fatalf("error %v (%T) is neither ValidationErrors nor *ValidationError", err, err)
	return nil
}

func mediaURLs(n int) []string {
	urls := make([]string, n)
	for i := range urls {
		urls[i] = "https://media.example.com/img/" + strings.Repeat("x", i) + ".png"
	}
	return urls
}

func TestValidate(t *testing.T) {
	t.Parallel()
	const (
		ksRule     = "must match ^KS[0-9a-fA-F]{32}$"
		kcRule     = "must match ^KC[0-9a-fA-F]{32}$"
		kpRule     = "must match ^KP[0-9a-fA-F]{32}$"
		bodyReq    = "body: is required when media_url is empty (give a body, a media URL or both)"
		absURLRule = "must be an absolute http or https URL"
	)
	longURL := func(n int) string {
		const prefix = "https://media.example.com/"
		return prefix + strings.Repeat("a", n-len(prefix))
	}
	zero := time.Time{}
	later := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

	tests := []struct {
		name   string
		change func(p *Payload)
		want   []string // "field: rule", in order; nil means valid
	}{
		{"valid body only", func(p *Payload) {}, nil},
		{"valid media only", func(p *Payload) { p.Body = ""; p.MediaURLs = mediaURLs(1) }, nil},
		{"valid body and media", func(p *Payload) { p.MediaURLs = mediaURLs(2) }, nil},
		{"valid whitespace body with media", func(p *Payload) { p.Body = " "; p.MediaURLs = mediaURLs(1) }, nil},
		{"valid upper-case hex", func(p *Payload) { p.ServiceSID = "KS" + strings.ToUpper(hex32) }, nil},
		{"valid send_before", func(p *Payload) { p.SendBefore = &later }, nil},

		// SIDs
		{"service_sid missing", func(p *Payload) { p.ServiceSID = "" }, []string{"service_sid: is required"}},
		{"session_sid missing", func(p *Payload) { p.SessionSID = "" }, []string{"session_sid: is required"}},
		{"participant_sid missing", func(p *Payload) { p.ParticipantSID = "" }, []string{"participant_sid: is required"}},
		{"service_sid wrong prefix", func(p *Payload) { p.ServiceSID = "KC" + hex32 }, []string{"service_sid: " + ksRule}},
		{"session_sid wrong prefix", func(p *Payload) { p.SessionSID = "KS" + hex32 }, []string{"session_sid: " + kcRule}},
		{"participant_sid wrong prefix", func(p *Payload) { p.ParticipantSID = "PN" + hex32 }, []string{"participant_sid: " + kpRule}},
		{"lower-case prefix", func(p *Payload) { p.ServiceSID = "ks" + hex32 }, []string{"service_sid: " + ksRule}},
		{"too short", func(p *Payload) { p.ServiceSID = "KS" + hex32[:31] }, []string{"service_sid: " + ksRule}},
		{"too long", func(p *Payload) { p.ServiceSID = "KS" + hex32 + "0" }, []string{"service_sid: " + ksRule}},
		{"non-hex", func(p *Payload) { p.ServiceSID = "KS" + hex32[:31] + "g" }, []string{"service_sid: " + ksRule}},
		{"prefix only", func(p *Payload) { p.SessionSID = "KC" }, []string{"session_sid: " + kcRule}},
		{"path traversal", func(p *Payload) { p.ServiceSID = "KS../../" + hex32[:26] }, []string{"service_sid: " + ksRule}},
		{"path traversal in session", func(p *Payload) { p.SessionSID = "KC" + hex32[:26] + "/../.." }, []string{"session_sid: " + kcRule}},
		{"slash", func(p *Payload) { p.ParticipantSID = "KP" + hex32[:16] + "/" + hex32[:15] }, []string{"participant_sid: " + kpRule}},
		{"query", func(p *Payload) { p.ParticipantSID = "KP" + hex32[:31] + "?" }, []string{"participant_sid: " + kpRule}},
		{"query appended", func(p *Payload) { p.ParticipantSID = "KP" + hex32 + "?x=1" }, []string{"participant_sid: " + kpRule}},
		{"percent-encoded slash", func(p *Payload) { p.ServiceSID = "KS%2F" + hex32[:29] }, []string{"service_sid: " + ksRule}},
		{"trailing newline", func(p *Payload) { p.ServiceSID = "KS" + hex32 + "\n" }, []string{"service_sid: " + ksRule}},
		{"leading space", func(p *Payload) { p.ServiceSID = " KS" + hex32[:31] }, []string{"service_sid: " + ksRule}},
		{"NUL byte", func(p *Payload) { p.ServiceSID = "KS" + hex32[:31] + "\x00" }, []string{"service_sid: " + ksRule}},
		{"cyrillic K lookalike", func(p *Payload) { p.ServiceSID = "\u041aS" + hex32 }, []string{"service_sid: " + ksRule}},
		{"fullwidth digit lookalike", func(p *Payload) { p.ServiceSID = "KS\uff10" + hex32[:31] }, []string{"service_sid: " + ksRule}},
		{"fullwidth KS lookalike", func(p *Payload) { p.ServiceSID = "\uff2b\uff33" + hex32 }, []string{"service_sid: " + ksRule}},
		{"all SIDs missing", func(p *Payload) { p.ServiceSID, p.SessionSID, p.ParticipantSID = "", "", "" },
			[]string{"service_sid: is required", "session_sid: is required", "participant_sid: is required"}},

		// Body
		{"body empty without media", func(p *Payload) { p.Body = "" }, []string{bodyReq}},
		{"body whitespace without media", func(p *Payload) { p.Body = " \t\r\n\u00a0\u3000" }, []string{bodyReq}},
		{"body 1600 ascii", func(p *Payload) { p.Body = strings.Repeat("a", 1600) }, nil},
		{"body 1601 ascii", func(p *Payload) { p.Body = strings.Repeat("a", 1601) },
			[]string{"body: must be at most 1600 characters, got 1601"}},
		{"body 1600 emoji", func(p *Payload) { p.Body = strings.Repeat("😀", 1600) }, nil},
		{"body 1601 emoji", func(p *Payload) { p.Body = strings.Repeat("😀", 1601) },
			[]string{"body: must be at most 1600 characters, got 1601"}},
		{"body 1600 two-byte runes", func(p *Payload) { p.Body = strings.Repeat("é", 1600) }, nil},
		{"body invalid UTF-8", func(p *Payload) { p.Body = "hi \xff there" }, []string{"body: must be valid UTF-8"}},
		{"body truncated multi-byte rune", func(p *Payload) { p.Body = "😀"[:3] }, []string{"body: must be valid UTF-8"}},

		// Media URLs
		{"10 media URLs", func(p *Payload) { p.MediaURLs = mediaURLs(10) }, nil},
		{"11 media URLs", func(p *Payload) { p.MediaURLs = mediaURLs(11) },
			[]string{"media_url: must have at most 10 entries, got 11"}},
		{"media http", func(p *Payload) { p.MediaURLs = []string{"http://media.example.com/a.png"} }, nil},
		{"media upper-case scheme", func(p *Payload) { p.MediaURLs = []string{"HTTPS://media.example.com/a.png"} }, nil},
		{"media with port and query", func(p *Payload) { p.MediaURLs = []string{"https://media.example.com:8443/a.png?sig=x&y=1"} }, nil},
		{"media relative path", func(p *Payload) { p.MediaURLs = []string{"/img/a.png"} }, []string{"media_url[0]: " + absURLRule}},
		{"media relative name", func(p *Payload) { p.MediaURLs = []string{"a.png"} }, []string{"media_url[0]: " + absURLRule}},
		{"media scheme-relative", func(p *Payload) { p.MediaURLs = []string{"//media.example.com/a.png"} }, []string{"media_url[0]: " + absURLRule}},
		{"media empty", func(p *Payload) { p.MediaURLs = []string{""} }, []string{"media_url[0]: " + absURLRule}},
		{"media ftp", func(p *Payload) { p.MediaURLs = []string{"ftp://media.example.com/a.png"} }, []string{"media_url[0]: " + absURLRule}},
		{"media javascript", func(p *Payload) { p.MediaURLs = []string{"javascript:alert(1)"} }, []string{"media_url[0]: " + absURLRule}},
		{"media data", func(p *Payload) { p.MediaURLs = []string{"data:image/png;base64,AAAA"} }, []string{"media_url[0]: " + absURLRule}},
		{"media file", func(p *Payload) { p.MediaURLs = []string{"file:///etc/passwd"} }, []string{"media_url[0]: " + absURLRule}},
		{"media no host", func(p *Payload) { p.MediaURLs = []string{"https:///a.png"} }, []string{"media_url[0]: " + absURLRule}},
		{"media opaque", func(p *Payload) { p.MediaURLs = []string{"https:media.example.com"} }, []string{"media_url[0]: " + absURLRule}},
		{"media control character", func(p *Payload) { p.MediaURLs = []string{"https://media.example.com/a\n.png"} }, []string{"media_url[0]: " + absURLRule}},
		{"media credentials", func(p *Payload) { p.MediaURLs = []string{"https://user:secret@media.example.com/a.png"} },
			[]string{"media_url[0]: must not carry credentials"}},
		{"media user only", func(p *Payload) { p.MediaURLs = []string{"https://user@media.example.com/a.png"} },
			[]string{"media_url[0]: must not carry credentials"}},
		{"media 2048 bytes", func(p *Payload) { p.MediaURLs = []string{longURL(2048)} }, nil},
		{"media 2049 bytes", func(p *Payload) { p.MediaURLs = []string{longURL(2049)} },
			[]string{"media_url[0]: must be at most 2048 bytes long"}},
		{"media bad entry indexed", func(p *Payload) {
			p.MediaURLs = []string{"https://media.example.com/a.png", "https://media.example.com/b.png", "ftp://x/c"}
		}, []string{"media_url[2]: " + absURLRule}},
		{"media invalid with no body", func(p *Payload) { p.Body = ""; p.MediaURLs = []string{"a.png"} },
			[]string{"media_url[0]: " + absURLRule}},

		// send_before
		{"send_before zero", func(p *Payload) { p.SendBefore = &zero }, []string{"send_before: must be an RFC 3339 time"}},

		// Several at once, in field order.
		{"several", func(p *Payload) {
			p.ServiceSID = "KS../../"
			p.Body = ""
			p.MediaURLs = append(mediaURLs(10), "javascript:x")
			p.SendBefore = &zero
		}, []string{
			"service_sid: " + ksRule,
			"media_url: must have at most 10 entries, got 11",
			"media_url[10]: " + absURLRule,
			"send_before: must be an RFC 3339 time",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := validPayload()
			tt.change(&p)
			err := p.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			var verrs ValidationErrors
			if !errors.As(err, &verrs) {
				t.Fatalf("Validate() error %T, want ValidationErrors", err)
			}
			if got := problems(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("Validate() problems\n got %q\nwant %q", got, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "invalid payload: ") {
				t.Errorf("Error() = %q, want prefix %q", err.Error(), "invalid payload: ")
			}
			// Encode must refuse what Validate refuses.
			if _, encErr := p.Encode(); encErr == nil {
				t.Errorf("Encode() accepted an invalid payload")
			}
		})
	}
}

// TestValidationErrorAs checks that one field's error is reachable both ways callers use.
func TestValidationErrorAs(t *testing.T) {
	t.Parallel()
	p := validPayload()
	p.SessionSID = "KC/.."
	err := p.Validate()
	var one *ValidationError
	if !errors.As(err, &one) {
		t.Fatalf("errors.As(%v, *ValidationError) = false", err)
	}
	// errors.As on a slice type does not descend into it; callers use ValidationErrors for all.
	var many ValidationErrors
	if !errors.As(err, &many) || len(many) != 1 || many[0].Field != "session_sid" {
		t.Fatalf("ValidationErrors = %v", many)
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	sids := `"service_sid":"KS` + hex32 + `","session_sid":"KC` + hex32 + `","participant_sid":"KP` + hex32 + `"`
	obj := func(extra string) string { return "{" + sids + "," + extra + "}" }

	tests := []struct {
		name       string
		in         string
		want       []string // "field: rule"; nil means valid
		wantPrefix string   // when set, the single problem must start with this instead
	}{
		{"valid", obj(`"body":"hi"`), nil, ""},
		{"valid with all keys", obj(`"body":"hi","media_url":["https://m.example.com/a.png"],"send_before":"2030-01-02T03:04:05.123Z"`), nil, ""},
		{"valid send_before offset", obj(`"body":"hi","send_before":"2030-01-02T03:04:05+02:00"`), nil, ""},
		{"valid send_before null", obj(`"body":"hi","send_before":null`), nil, ""},
		{"valid media null", obj(`"body":"hi","media_url":null`), nil, ""},
		{"valid surrounding whitespace", " \n\t" + obj(`"body":"hi"`) + "\n\n ", nil, ""},
		{"valid escaped key", obj(`"bod\u0079":"hi"`), nil, ""},

		{"unknown key", obj(`"body":"hi","priority":1`), []string{"priority: is not a known key"}, ""},
		{"unknown key first", `{"to":"+15551234567",` + sids + `,"body":"hi"}`, []string{"to: is not a known key"}, ""},
		{"unknown key with quote", obj(`"body":"hi","a\"b":1`), []string{`a"b: is not a known key`}, ""},
		{"case variant key", obj(`"Body":"hi"`), []string{"Body: is not a known key"}, ""},
		{"upper-case key", `{"SERVICE_SID":"KS` + hex32 + `"}`, []string{"SERVICE_SID: is not a known key"}, ""},
		{"Twilio-style MediaUrl", obj(`"body":"hi","MediaUrl":["https://m.example.com/a.png"]`), []string{"MediaUrl: is not a known key"}, ""},
		{"repeated key", obj(`"body":"hi","body":"bye"`), []string{"body: must appear only once"}, ""},
		{"repeated SID", obj(`"body":"hi","service_sid":"KS` + hex32 + `"`), []string{"service_sid: must appear only once"}, ""},

		{"service_sid number", `{"service_sid":5}`, []string{"service_sid: must be a JSON string"}, ""},
		{"session_sid object", `{"service_sid":"KS` + hex32 + `","session_sid":{},"participant_sid":"KP` + hex32 + `","body":"hi"}`,
			[]string{"session_sid: must be a JSON string"}, ""},
		{"body bool", obj(`"body":true`), []string{"body: must be a JSON string"}, ""},
		{"body array", obj(`"body":["hi"]`), []string{"body: must be a JSON string"}, ""},
		{"media_url string", obj(`"body":"hi","media_url":"https://m.example.com/a.png"`), []string{"media_url: must be a JSON array of strings"}, ""},
		{"media_url element number", obj(`"body":"hi","media_url":[1]`), []string{"media_url: must be a JSON array of strings"}, ""},
		{"media_url object", obj(`"body":"hi","media_url":{}`), []string{"media_url: must be a JSON array of strings"}, ""},
		{"send_before number", obj(`"body":"hi","send_before":1700000000`), []string{"send_before: must be an RFC 3339 time"}, ""},
		{"send_before object", obj(`"body":"hi","send_before":{}`), []string{"send_before: must be an RFC 3339 time"}, ""},
		{"send_before bool", obj(`"body":"hi","send_before":true`), []string{"send_before: must be an RFC 3339 time"}, ""},
		{"send_before words", obj(`"body":"hi","send_before":"tomorrow"`), []string{"send_before: must be an RFC 3339 time"}, ""},
		{"send_before date only", obj(`"body":"hi","send_before":"2030-01-02"`), []string{"send_before: must be an RFC 3339 time"}, ""},
		{"send_before no zone", obj(`"body":"hi","send_before":"2030-01-02T03:04:05"`), []string{"send_before: must be an RFC 3339 time"}, ""},
		{"send_before bad zone", obj(`"body":"hi","send_before":"2030-01-02T03:04:05+25:00"`), []string{"send_before: must be an RFC 3339 time"}, ""},
		{"send_before zero", obj(`"body":"hi","send_before":"0001-01-01T00:00:00Z"`), []string{"send_before: must be an RFC 3339 time"}, ""},
		{"send_before empty", obj(`"body":"hi","send_before":""`), []string{"send_before: must be an RFC 3339 time"}, ""},

		{"trailing data", obj(`"body":"hi"`) + " x", []string{"payload: must be a single JSON object"}, ""},
		{"trailing brace", obj(`"body":"hi"`) + "}", []string{"payload: must be a single JSON object"}, ""},
		{"two objects", obj(`"body":"hi"`) + obj(`"body":"again"`), []string{"payload: must be a single JSON object"}, ""},
		{"two objects newline", obj(`"body":"hi"`) + "\n{}", []string{"payload: must be a single JSON object"}, ""},
		{"not JSON", "hello", nil, "payload: must be a JSON object"},
		{"empty", "", nil, "payload: must be a JSON object"},
		{"truncated", obj(`"body":"hi"`)[:20], nil, "payload: must be a JSON object"},
		{"array", `[{"body":"hi"}]`, []string{"payload: must be a JSON object"}, ""},
		{"string", `"hi"`, []string{"payload: must be a JSON object"}, ""},
		{"null", `null`, []string{"payload: must be a JSON object"}, ""},
		{"form encoded", "Body=hi&To=%2B1555", nil, "payload: must be a JSON object"},

		{"validation runs", `{"body":"hi"}`, []string{"service_sid: is required", "session_sid: is required", "participant_sid: is required"}, ""},
		{"validation body", obj(`"body":"   "`), []string{"body: is required when media_url is empty (give a body, a media URL or both)"}, ""},
		{"validation SID injection", `{"service_sid":"KS../../../etc/passwd","session_sid":"KC` + hex32 + `","participant_sid":"KP` + hex32 + `","body":"x"}`,
			[]string{"service_sid: must match ^KS[0-9a-fA-F]{32}$"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := Decode([]byte(tt.in))
			if tt.want == nil && tt.wantPrefix == "" {
				if err != nil {
					t.Fatalf("Decode() = %v, want nil", err)
				}
				if p.ServiceSID != "KS"+hex32 || p.Body != "hi" {
					t.Fatalf("Decode() = %+v", p)
				}
				return
			}
			if err == nil {
				t.Fatalf("Decode() = %+v, nil; want an error", p)
			}
			if !reflect.DeepEqual(p, Payload{}) {
				t.Errorf("Decode() returned a non-zero payload with its error: %+v", p)
			}
			got := problems(t, err)
			if tt.wantPrefix != "" {
				if len(got) != 1 || !strings.HasPrefix(got[0], tt.wantPrefix) {
					t.Errorf("Decode() problems %q, want one starting %q", got, tt.wantPrefix)
				}
				return
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Decode() problems\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestDecodeTooLarge(t *testing.T) {
	t.Parallel()
	valid, err := validPayload().Encode()
	if err != nil {
		t.Fatal(err)
	}
	pad := func(n int) []byte { // valid JSON of exactly n bytes: the payload plus whitespace
		return append(append([]byte{}, valid...), strings.Repeat(" ", n-len(valid))...)
	}
	if _, err := Decode(pad(MaxPayloadBytes)); err != nil {
		t.Errorf("Decode(%d bytes) = %v, want nil", MaxPayloadBytes, err)
	}
	for _, n := range []int{MaxPayloadBytes + 1, 10 * MaxPayloadBytes} {
		_, err := Decode(pad(n))
		if !errors.Is(err, ErrPayloadTooLarge) {
			t.Errorf("Decode(%d bytes) = %v, want ErrPayloadTooLarge", n, err)
		}
	}
	// Size is checked before parsing: oversize garbage is still "too large".
	if _, err := Decode([]byte(strings.Repeat("x", MaxPayloadBytes+1))); !errors.Is(err, ErrPayloadTooLarge) {
		t.Errorf("Decode(oversize garbage) = %v, want ErrPayloadTooLarge", err)
	}
}

func TestDecodeSendBefore(t *testing.T) {
	t.Parallel()
	in := `{"service_sid":"KS` + hex32 + `","session_sid":"KC` + hex32 + `","participant_sid":"KP` + hex32 +
		`","body":"hi","send_before":"2030-01-02T05:04:05.5+02:00"}`
	p, err := Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2030, 1, 2, 3, 4, 5, 5e8, time.UTC)
	if p.SendBefore == nil || !p.SendBefore.Equal(want) {
		t.Fatalf("SendBefore = %v, want %v", p.SendBefore, want)
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	t.Parallel()
	sb := time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.UTC)
	tests := []struct {
		name string
		p    Payload
	}{
		{"body", validPayload()},
		{"media only", func() Payload { p := validPayload(); p.Body = ""; p.MediaURLs = mediaURLs(10); return p }()},
		{"everything", func() Payload {
			p := validPayload()
			p.Body = strings.Repeat("😀", 1600)
			p.MediaURLs = []string{"https://m.example.com/a.png?x=1&y=<2>"}
			p.SendBefore = &sb
			return p
		}()},
		{"html and quotes in body", func() Payload { p := validPayload(); p.Body = `<b>"hi" & 'bye'</b>` + "\n\u2028"; return p }()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data, err := tt.p.Encode()
			if err != nil {
				t.Fatalf("Encode() = %v", err)
			}
			got, err := Decode(data)
			if err != nil {
				t.Fatalf("Decode(Encode()) = %v", err)
			}
			if (got.SendBefore == nil) != (tt.p.SendBefore == nil) ||
				(got.SendBefore != nil && !got.SendBefore.Equal(*tt.p.SendBefore)) {
				t.Errorf("SendBefore = %v, want %v", got.SendBefore, tt.p.SendBefore)
			}
			got.SendBefore, tt.p.SendBefore = nil, nil
			if !reflect.DeepEqual(got, tt.p) {
				t.Errorf("round trip\n got %+v\nwant %+v", got, tt.p)
			}
		})
	}
}

func TestEncodeJSONKeys(t *testing.T) {
	t.Parallel()
	sb := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	p := validPayload()
	p.MediaURLs = mediaURLs(1)
	p.SendBefore = &sb
	data, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"body", "media_url", "participant_sid", "send_before", "service_sid", "session_sid"}
	if !slices.Equal(keys, want) {
		t.Errorf("encoded keys %q, want %q (the documented wire format)", keys, want)
	}
	if m["send_before"] != "2030-01-02T03:04:05Z" {
		t.Errorf("send_before encoded as %v", m["send_before"])
	}

	// Omitted when empty, so a minimal producer payload looks like what we write.
	data, err = validPayload().Encode()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "media_url") || strings.Contains(string(data), "send_before") {
		t.Errorf("empty optional keys encoded: %s", data)
	}
}

// TestEncodeTooLarge: a payload that passes Validate can still exceed MaxPayloadBytes once
// encoded (encoding/json writes & < > as 6-byte escapes), and Encode must say so rather than
// produce bytes Decode would refuse.
func TestEncodeTooLarge(t *testing.T) {
	t.Parallel()
	p := validPayload()
	for range MaxMediaURLs {
		u := "https://m.example.com/?" + strings.Repeat("&", MaxMediaURLLen-len("https://m.example.com/?"))
		p.MediaURLs = append(p.MediaURLs, u)
	}
	if err := p.Validate(); err != nil {
		t.Fatalf("Validate() = %v; the case needs a valid payload", err)
	}
	if _, err := p.Encode(); !errors.Is(err, ErrPayloadTooLarge) {
		t.Fatalf("Encode() = %v, want ErrPayloadTooLarge", err)
	}
}

// TestWireKeysMatchPayload guards the duplicate struct Decode reads into.
func TestWireKeysMatchPayload(t *testing.T) {
	t.Parallel()
	keysOf := func(v any) []string {
		var keys []string
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
			keys = append(keys, name)
		}
		return keys
	}
	if p, w := keysOf(Payload{}), keysOf(wirePayload{}); !slices.Equal(p, w) {
		t.Errorf("wirePayload keys %q differ from Payload keys %q", w, p)
	}
	if len(payloadKeys) != 8 {
		t.Errorf("payloadKeys = %v", payloadKeys)
	}
}

func TestParseOutcome(t *testing.T) {
	t.Parallel()
	if o, err := ParseOutcome(nil); o != nil || err != nil {
		t.Errorf("ParseOutcome(nil) = %v, %v; want nil, nil", o, err)
	}
	if _, err := ParseOutcome([]byte("not json")); err == nil {
		t.Error("ParseOutcome(garbage) = nil error")
	}
	sent := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	in := Outcome{State: OutcomeSent, InteractionSID: "KI" + hex32, OutboundStatus: "sent",
		OutboundResourceSID: "SM" + hex32, Attempts: 2, SentAt: &sent, Reconciled: true, RecordedAt: sent}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseOutcome(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != in.State || got.InteractionSID != in.InteractionSID || got.Attempts != 2 ||
		!got.Reconciled || got.SentAt == nil || !got.SentAt.Equal(sent) || !got.RecordedAt.Equal(sent) {
		t.Errorf("ParseOutcome = %+v, want %+v", got, in)
	}
	// New keys may be added by newer workers; older readers must not choke on them.
	if _, err := ParseOutcome([]byte(`{"state":"sent","attempts":1,"recorded_at":"2030-01-02T03:04:05Z","new_key":1}`)); err != nil {
		t.Errorf("ParseOutcome with an unknown key = %v", err)
	}
}

func TestAccountSID(t *testing.T) {
	base := `{"service_sid":"KS0123456789abcdef0123456789abcdef","session_sid":"KC0123456789abcdef0123456789abcdef","participant_sid":"KP0123456789abcdef0123456789abcdef","body":"hi"`
	p, err := Decode([]byte(base + `,"account_sid":"AC0123456789abcdef0123456789abcdef"}`))
	if err != nil || p.AccountSID != "AC0123456789abcdef0123456789abcdef" {
		t.Fatalf("Decode = %+v, %v", p, err)
	}
	if p, err := Decode([]byte(base + `}`)); err != nil || p.AccountSID != "" {
		t.Fatalf("without account_sid: %+v, %v", p, err)
	}
	for _, bad := range []string{`"SK0123456789abcdef0123456789abcdef"`, `"AC0123"`, `"ac0123456789abcdef0123456789abcdef"`, `"AC0123456789abcdef0123456789abcdeg"`} {
		_, err := Decode([]byte(base + `,"account_sid":` + bad + `}`))
		if err == nil || !strings.Contains(err.Error(), "account_sid: must match ^AC[0-9a-fA-F]{32}$") {
			t.Errorf("account_sid %s: err = %v", bad, err)
		}
	}
	data, err := Payload{ServiceSID: "KS0123456789abcdef0123456789abcdef", SessionSID: "KC0123456789abcdef0123456789abcdef",
		ParticipantSID: "KP0123456789abcdef0123456789abcdef", Body: "x"}.Encode()
	if err != nil || strings.Contains(string(data), "account_sid") {
		t.Errorf("an empty AccountSID must be omitted: %s %v", data, err)
	}
}
