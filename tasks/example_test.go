package tasks_test

import (
	"errors"
	"fmt"

	"github.com/proxyq/proxyq/tasks"
)

// The messages below are the ones docs/producing.md documents for producers; this example keeps them
// from drifting.
func ExamplePayload_Validate() {
	p := tasks.Payload{
		ServiceSID: "KS0123456789abcdef0123456789abcdef",
		SessionSID: "KC../../Services",
		MediaURLs:  []string{"ftp://media.example.com/cat.png"},
	}
	err := p.Validate()
	fmt.Println(err)

	var verrs tasks.ValidationErrors
	if errors.As(err, &verrs) {
		for _, v := range verrs {
			fmt.Printf("field=%s rule=%q\n", v.Field, v.Rule)
		}
	}
	// Output:
	// invalid payload: session_sid: must match ^KC[0-9a-fA-F]{32}$; participant_sid: is required; media_url[0]: must be an absolute http or https URL
	// field=session_sid rule="must match ^KC[0-9a-fA-F]{32}$"
	// field=participant_sid rule="is required"
	// field=media_url[0] rule="must be an absolute http or https URL"
}

func ExampleDecode() {
	const sids = `"service_sid":"KS0123456789abcdef0123456789abcdef",` +
		`"session_sid":"KC0123456789abcdef0123456789abcdef",` +
		`"participant_sid":"KP0123456789abcdef0123456789abcdef"`
	for _, in := range []string{
		`{` + sids + `,"body":"Your driver is 2 minutes away"}`,
		`{` + sids + `,"Body":"hi"}`,
		`{` + sids + `,"body":"hi","send_before":"tomorrow"}`,
		`{` + sids + `,"body":""}`,
		`{` + sids + `,"body":"hi"} {}`,
	} {
		p, err := tasks.Decode([]byte(in))
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		fmt.Println("ok:", p.Body)
	}
	// Output:
	// ok: Your driver is 2 minutes away
	// error: Body: is not a known key
	// error: send_before: must be an RFC 3339 time
	// error: invalid payload: body: is required when media_url is empty (give a body, a media URL or both)
	// error: payload: must be a single JSON object
}

func ExampleValidateIdempotencyKey() {
	for _, key := range []string{"order-1234:reminder", "", "order/1234", ".."} {
		fmt.Printf("%q: %v\n", key, tasks.ValidateIdempotencyKey(key))
	}
	// Output:
	// "order-1234:reminder": <nil>
	// "": idempotency_key: must not be empty
	// "order/1234": idempotency_key: may contain only A-Z a-z 0-9 . _ : @ + = -
	// "..": idempotency_key: must not be . or ..
}
