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
		`{"s":"sent","i":"KI00000000000000000000000000000001","n":1,"t":1765000000000,"hl":"queued,0;sent,k"}`,
		`{"s":"sent","zz":{"s":1},"\u0073":2}`,
		`{"state":"sent","status_history":[{"status":"queued","at":1}]}`,
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
		// The outcome record is read (ParseOutcome) and its keys checked (PatchOutcome) with
		// segmentio too: the same must hold, and the keys must be the ones a map would hold.
		var stdRec, fastRec storedOutcome
		stdErr, fastErr = json.Unmarshal(data, &stdRec), fastjson.Unmarshal(data, &fastRec)
		if (stdErr == nil) != (fastErr == nil) || stdErr == nil && !reflect.DeepEqual(stdRec, fastRec) {
			t.Fatalf("%q: outcome record: encoding/json read %+v (%v), segmentio %+v (%v)", data, stdRec, stdErr, fastRec, fastErr)
		}
		var fields map[string]json.RawMessage
		mapErr := json.Unmarshal(data, &fields)
		known, keysErr := onlyKnownKeys(data)
		if (mapErr == nil) != (keysErr == nil) {
			t.Fatalf("%q: as a map: %v; onlyKnownKeys: %v", data, mapErr, keysErr)
		}
		if mapErr == nil {
			want := true
			for k := range fields {
				want = want && knownKeys[k]
			}
			if known != want {
				t.Fatalf("%q: onlyKnownKeys = %v, keys %v", data, known, fields)
			}
		}
	})
}
