package proxyclient

import (
	"encoding/json"
	"reflect"
	"testing"
)

// decodeBodyStd is decodeBody with encoding/json: the reference for segmentio's decoder.
func decodeBodyStd(b []byte) (MessageInteraction, error) {
	type plain MessageInteraction
	var w struct {
		plain
		DateCreated *string `json:"date_created"`
		DateUpdated *string `json:"date_updated"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return MessageInteraction{}, err
	}
	m := MessageInteraction(w.plain)
	m.DateCreated = parseTwilioTime(w.DateCreated)
	m.DateUpdated = parseTwilioTime(w.DateUpdated)
	return m, nil
}

// FuzzDecodeBodyAsEncodingJSON: a create's answer is read with segmentio's decoder; whatever
// Twilio sends, it must read what encoding/json reads (the interaction SID is the send's record).
func FuzzDecodeBodyAsEncodingJSON(f *testing.F) {
	for _, s := range []string{
		`{"sid":"KI00000000000000000000000000000001","data":"{\"body\":\"hi \\u00e9\"}","type":"message","outbound_resource_sid":"SM00000000000000000000000000000001","outbound_resource_status":"queued","date_created":"2026-12-01T13:50:47Z","date_updated":null,"url":"https://proxy.twilio.com/v1/x"}`,
		`{"sid":null,"inbound_resource_url":null,"date_created":"Tue, 01 Dec 2026 13:50:47 +0000","extra":{"a":[1,2,{"b":null}]},"date_updated":"garbage"}`,
		`{"sid":"KI\u0031","SID":"KI2","Sid":"KI3"}`,
		"{\"sid\":\"bad \xff utf-8 \\ud800\"}",
		`{"sid":1}`,
		`{"date_created":5}`,
		`[]`,
		`{"sid":"KI1"} {"sid":"KI2"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want, stdErr := decodeBodyStd(data)
		var got MessageInteraction
		err := got.decodeBody(data)
		if (stdErr == nil) != (err == nil) {
			t.Fatalf("%q: encoding/json err = %v, decodeBody err = %v", data, stdErr, err)
		}
		if err == nil && !reflect.DeepEqual(want, got) {
			t.Fatalf("%q: encoding/json read %+v, decodeBody read %+v", data, want, got)
		}
	})
}
