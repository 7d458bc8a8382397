package tasks

import (
	"encoding/json"
	"reflect"
	"testing"

	fastjson "github.com/segmentio/encoding/json"
)

// FuzzDecodeAsEncodingJSON: Decode's fast path reads a payload with segmentio's decoder; for
// every input it must accept and refuse what encoding/json does and read the same values, or a
// payload could mean one thing to the producer's checks and another to the worker.
func FuzzDecodeAsEncodingJSON(f *testing.F) {
	for _, s := range []string{
		`{"service_sid":"KS00000000000000000000000000000001","session_sid":"KC00000000000000000000000000000001","participant_sid":"KP00000000000000000000000000000001","body":"hi"}`,
		`{"body":"caf\u00e9 \ud83d\ude00 <b>&amp;</b> \"q\" \\ \/","media_url":["https://x.test/a?b=1&c=2"]}`,
		`{"body":"\ud800 lone surrogate","send_before":"2026-11-25T18:00:00Z","ordering_key":"k:1"}`,
		"{\"body\":\"bad \xff utf-8\"}",
		`{"body":null,"media_url":null,"send_before":null,"ordering_key":null}`,
		`{"body":1}`,
		`{"media_url":["a",2]}`,
		`{"body":"x"} trailing`,
		`{"body":"x",}`,
		`{"send_before":{"nested":[1,2,{"a":null}]},"body":"x"}`,
		`{"account_sid":"AC00000000000000000000000000000001","body":"1e400"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var std, fast wirePayload
		stdErr := json.Unmarshal(data, &std)
		fastErr := fastjson.Unmarshal(data, &fast)
		if (stdErr == nil) != (fastErr == nil) {
			t.Fatalf("%q: encoding/json err = %v, segmentio err = %v", data, stdErr, fastErr)
		}
		if stdErr == nil && !reflect.DeepEqual(std, fast) {
			t.Fatalf("%q: encoding/json read %+v, segmentio read %+v", data, std, fast)
		}
	})
}
