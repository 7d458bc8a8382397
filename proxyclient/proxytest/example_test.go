package proxytest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/proxyq/proxyq/proxyclient/proxytest"
)

// send posts one message interaction the way any client would. In a real test the code under
// test does this (e.g. a proxyclient.Client with BaseURL set to srv.URL).
func send(srv *proxytest.Server, body string) (status int, data string) {
	const path = "/v1/Services/KS0123456789abcdef0123456789abcdef/Sessions/KC0123456789abcdef0123456789abcdef" +
		"/Participants/KP0123456789abcdef0123456789abcdef/MessageInteractions"
	req, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(url.Values{"Body": {body}}.Encode()))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("AC0123456789abcdef0123456789abcdef", "auth-token")
	resp, err := srv.Client().Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	var mi struct {
		Data string `json:"data"` // a JSON string holding {"body": …}
	}
	_ = json.NewDecoder(resp.Body).Decode(&mi)
	return resp.StatusCode, mi.Data
}

// A user's test starts a server, points the code under test at srv.URL and reads back what
// the fake "sent".
func Example() {
	srv := proxytest.NewServer(proxytest.Config{})
	defer srv.Close()

	status, data := send(srv, "Your driver is here")
	var d struct {
		Body string `json:"body"`
	}
	_ = json.Unmarshal([]byte(data), &d)

	fmt.Println(status, d.Body)
	fmt.Println("sent:", srv.Fake.CreatesForBody("Your driver is here"))
	// Output:
	// 201 Your driver is here
	// sent: 1
}

// Scripted faults are served in order, then the fake answers normally. A 500 after create is
// the dangerous kind: the message went out although the client saw an error.
func ExampleFake_Inject() {
	srv := proxytest.NewServer(proxytest.Config{})
	defer srv.Close()
	_ = srv.Fake.Inject(proxytest.Fault429RetryAfter, 1)
	_ = srv.Fake.Inject(proxytest.Fault500AfterCreate, 1)

	for range 3 {
		status, _ := send(srv, "hello")
		fmt.Println(status)
	}
	fmt.Println("created:", srv.Fake.CreatesForBody("hello"))
	fmt.Println("429s:", srv.Fake.Stats().TooManyRequests)
	// Output:
	// 429
	// 500
	// 201
	// created: 2
	// 429s: 1
}
