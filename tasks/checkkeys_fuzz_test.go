package tasks

import (
	"bytes"
	"encoding/json"
	"testing"
)

// checkKeysByTokens is the reference checkKeys (encoding/json's token API): for valid JSON the
// one-pass scanner must refuse exactly what it refuses, with the same field and rule.
func checkKeysByTokens(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return &ValidationError{Field: "payload", Rule: "must be a JSON object"}
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		key, _ := tok.(string)
		switch {
		case !payloadKeys[key]:
			return &ValidationError{Field: key, Rule: "is not a known key"}
		case seen[key]:
			return &ValidationError{Field: key, Rule: "must appear only once"}
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
	}
	return nil
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
		got, want := checkKeys(data), checkKeysByTokens(data)
		if (got == nil) != (want == nil) || (got != nil && got.Error() != want.Error()) {
			t.Fatalf("checkKeys(%q) = %v, token reference says %v", data, got, want)
		}
	})
}
