package proxyclient_test

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/proxyq/proxyq/proxyclient"
)

func TestCodeClassification(t *testing.T) {
	t.Parallel()
	twilio := func(status, code int) error {
		return fmt.Errorf("send: %w", &proxyclient.Error{Method: "POST", Path: "/v1/x", StatusCode: status, Code: code, Message: "m"})
	}
	tests := []struct {
		name     string
		err      error
		class    proxyclient.Class
		handling proxyclient.Handling
		scope    proxyclient.Scope
		retry    time.Duration // RetryAfter; 0: none
	}{
		{"20429 account concurrency", twilio(429, 20429), proxyclient.ClassRetryable, proxyclient.HandlingRetryLater, proxyclient.ScopeAccount, 0},
		{"bare 429 is the account's", twilio(429, 0), proxyclient.ClassRetryable, proxyclient.HandlingRetryLater, proxyclient.ScopeAccount, 0},
		{"80621 service rate", twilio(429, 80621), proxyclient.ClassRetryable, proxyclient.HandlingRetryLater, proxyclient.ScopeService, 0},
		{"80623 duplicate in progress", twilio(409, 80623), proxyclient.ClassRetryable, proxyclient.HandlingRetryLater, proxyclient.ScopeNone, 10 * time.Second},
		{"14107 pair window, 400", twilio(400, 14107), proxyclient.ClassRetryable, proxyclient.HandlingRetryLater, proxyclient.ScopePair, 30 * time.Second},
		{"14107 pair window, 429", twilio(429, 14107), proxyclient.ClassRetryable, proxyclient.HandlingRetryLater, proxyclient.ScopePair, 30 * time.Second},
		{"20503 unavailable", twilio(503, 20503), proxyclient.ClassRetryable, proxyclient.HandlingTransient, proxyclient.ScopeNone, 0},
		{"80203 no number for country", twilio(400, 80203), proxyclient.ClassPermanent, proxyclient.HandlingConfiguration, proxyclient.ScopeNone, 0},
		{"80205 no numbers configured", twilio(400, 80205), proxyclient.ClassPermanent, proxyclient.HandlingConfiguration, proxyclient.ScopeNone, 0},
		{"80206 no compatible number free", twilio(400, 80206), proxyclient.ClassRetryable, proxyclient.HandlingCapacity, proxyclient.ScopeNone, 10 * time.Minute},
		{"80208 all numbers in use", twilio(400, 80208), proxyclient.ClassRetryable, proxyclient.HandlingCapacity, proxyclient.ScopeNone, 10 * time.Minute},
		{"20404 not found", twilio(404, 20404), proxyclient.ClassPermanent, proxyclient.HandlingPermanent, proxyclient.ScopeNone, 0},
		{"80405 invalid participant", twilio(400, 80405), proxyclient.ClassPermanent, proxyclient.HandlingPermanent, proxyclient.ScopeNone, 0},
		{"80607 session closed", twilio(400, 80607), proxyclient.ClassPermanent, proxyclient.HandlingPermanent, proxyclient.ScopeNone, 0},
		{"80608 status change", twilio(400, 80608), proxyclient.ClassPermanent, proxyclient.HandlingPermanent, proxyclient.ScopeNone, 0},
		{"80609 too many participants", twilio(400, 80609), proxyclient.ClassPermanent, proxyclient.HandlingPermanent, proxyclient.ScopeNone, 0},
		{"80909 intercepted", twilio(403, 80909), proxyclient.ClassPermanent, proxyclient.HandlingPermanent, proxyclient.ScopeNone, 0},
		{"80911 wrong channel", twilio(400, 80911), proxyclient.ClassPermanent, proxyclient.HandlingPermanent, proxyclient.ScopeNone, 0},
		// A known code never makes a 5xx look unambiguous: the status says it may have been processed.
		{"permanent code on a 500 stays ambiguous", twilio(500, 80607), proxyclient.ClassAmbiguous, proxyclient.HandlingPermanent, proxyclient.ScopeNone, 0},
		{"unknown 4xx code", twilio(400, 12345), proxyclient.ClassPermanent, proxyclient.HandlingByStatus, proxyclient.ScopeNone, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := proxyclient.Classify(tt.err); got != tt.class {
				t.Errorf("Classify = %v, want %v", got, tt.class)
			}
			info, _ := proxyclient.Explain(tt.err)
			if info.Handling != tt.handling || info.Scope != tt.scope {
				t.Errorf("Explain = %v/%v, want %v/%v", info.Handling, info.Scope, tt.handling, tt.scope)
			}
			d, ok := proxyclient.RetryAfter(tt.err)
			if d != tt.retry || ok != (tt.retry > 0) {
				t.Errorf("RetryAfter = %v, %v; want %v", d, ok, tt.retry)
			}
		})
	}
	// A server's Retry-After wins over the code's own wait.
	withHeader := &proxyclient.Error{StatusCode: 400, Code: 14107, RetryAfter: 7 * time.Second}
	if d, _ := proxyclient.RetryAfter(withHeader); d != 7*time.Second {
		t.Errorf("RetryAfter with header = %v, want 7s", d)
	}
	if info, ok := proxyclient.Explain(withHeader); !ok || !strings.Contains(info.Why, "30 s") {
		t.Errorf("Explain(14107) = %+v, %v", info, ok)
	}
	if info, _ := proxyclient.LookupCode(80623); !info.MayBeInProgress {
		t.Error("80623 must ask for reconciliation before a resend")
	}
}

// TestCodeTableInDocs keeps the classification table of docs/limits.md ("Twilio error codes")
// equal to Codes().
func TestCodeTableInDocs(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../docs/limits.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `(\\d+)` \\| [^|]+ \\| ([a-z-]+) \\|")
	got := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(data), -1) {
		got[m[1]] = m[2]
	}
	for _, c := range proxyclient.Codes() {
		if h := got[fmt.Sprint(c.Code)]; h != c.Handling.String() {
			t.Errorf("docs/limits.md row for %d says %q, the code says %q", c.Code, h, c.Handling)
		}
	}
	if len(got) != len(proxyclient.Codes()) {
		t.Errorf("docs/limits.md has %d code rows, Codes() has %d", len(got), len(proxyclient.Codes()))
	}
}
