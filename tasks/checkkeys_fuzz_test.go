package tasks

import (
	"bytes"
	"encoding/json"
	"testing"
)

// checkKeysByTokens is the reference checkKeys (encoding/json's token API): for valid JSON the
// one-pass scanner must refuse exactly what it refuses, with the same field and rule. ok is
// false when the token API could not read the input (nesting beyond its depth limit, a number
// beyond float64): then the decoder refuses the payload whatever checkKeys says.
func checkKeysByTokens(data []byte) (err error, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, false
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return &ValidationError{Field: "payload", Rule: "must be a JSON object"}, true
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, false
		}
		key, _ := tok.(string)
		switch {
		case !payloadKeys[key]:
			return &ValidationError{Field: key, Rule: "is not a known key"}, true
		case seen[key]:
			return &ValidationError{Field: key, Rule: "must appear only once"}, true
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, false
		}
	}
	return nil, true
}

func FuzzCheckKeys(f *testing.F) {
	for _, s := range []string{
		`{"body":"hi","service_sid":"KS1"}`,
		`{"body":"hi","body":"bye"}`,
		`{"bo\u0064y":"x","body":"y"}`,
		`{"media_url":["a","b"],"body":"{\"x\":1}"}`,
		`{"a\"b":1}`,
		` [1,2]`,
		`{"send_before":null,"ordering_key":"k:1","account_sid":"AC"}`,
		`{"body":{"service_sid":1},"Body":2}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			return // invalid JSON: Decode names the syntax error whatever checkKeys says
		}
		if rest := bytes.TrimLeft(data, " \t\r\n"); len(rest) > 0 && rest[0] != '{' {
			// Not an object: refused as such (the token API cannot even read some of these,
			// e.g. 1e1000, and leaves them to the decoder).
			if err := checkKeys(data); err == nil || err.Error() != "payload: must be a JSON object" {
				t.Fatalf("checkKeys(%q) = %v, want it refused as not an object", data, err)
			}
			return
		}
		want, ok := checkKeysByTokens(data)
		if !ok {
			return
		}
		got := checkKeys(data)
		if (got == nil) != (want == nil) || (got != nil && got.Error() != want.Error()) {
			t.Fatalf("checkKeys(%q) = %v, token reference says %v", data, got, want)
		}
	})
}
