package conversations_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/proxyq/proxyq/conversations"
	"github.com/proxyq/proxyq/proxyclient"
)

// TestClassifyTwilioAnswers sends a create to a server answering with Twilio's JSON error
// document for each code in the table (and the codes left to their HTTP status), and checks
// the class, the rule and the retry wait the caller sees.
func TestClassifyTwilioAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		status     int
		retryAfter string
		body       string
		class      proxyclient.Class
		handling   proxyclient.Handling // HandlingByStatus: no rule
		scope      conversations.Scope
		wait       time.Duration
	}{
		{"20429 account concurrency", 429, "", `{"code": 20429, "message": "Too Many Requests", "more_info": "https://www.twilio.com/docs/errors/20429", "status": 429}`,
			proxyclient.ClassRetryable, proxyclient.HandlingRetryLater, conversations.ScopeAccount, 0},
		{"20429 with Retry-After", 429, "7", `{"code": 20429, "message": "Too Many Requests", "more_info": "https://www.twilio.com/docs/errors/20429", "status": 429}`,
			proxyclient.ClassRetryable, proxyclient.HandlingRetryLater, conversations.ScopeAccount, 7 * time.Second},
		{"bare 429 is the account's limit", 429, "", `{"code": 0, "message": "Too Many Requests", "status": 429}`,
			proxyclient.ClassRetryable, proxyclient.HandlingRetryLater, conversations.ScopeAccount, 0},
		{"20503 service unavailable", 503, "", `{"code": 20503, "message": "Service unavailable", "more_info": "https://www.twilio.com/docs/errors/20503", "status": 503}`,
			proxyclient.ClassRetryable, proxyclient.HandlingTransient, conversations.ScopeNone, 0},
		{"20003 authenticate", 401, "", `{"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}`,
			proxyclient.ClassPermanent, proxyclient.HandlingPermanent, conversations.ScopeNone, 0},
		{"20404 conversation not found", 404, "", `{"code": 20404, "message": "The requested resource /Conversations/CHaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Messages was not found", "more_info": "https://www.twilio.com/docs/errors/20404", "status": 404}`,
			proxyclient.ClassPermanent, proxyclient.HandlingPermanent, conversations.ScopeNone, 0},
		{"50350 conversation not found", 404, "", `{"code": 50350, "message": "Conversation not found", "more_info": "https://www.twilio.com/docs/errors/50350", "status": 404}`,
			proxyclient.ClassPermanent, proxyclient.HandlingPermanent, conversations.ScopeNone, 0},
		{"50377 conversation closed", 400, "", `{"code": 50377, "message": "Can't update conversation as it's in final closed state", "more_info": "https://www.twilio.com/docs/errors/50377", "status": 400}`,
			proxyclient.ClassPermanent, proxyclient.HandlingPermanent, conversations.ScopeNone, 0},
		{"50416 binding in use", 409, "", `{"code": 50416, "message": "A binding for this participant and proxy address already exists in Conversation CHaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "more_info": "https://www.twilio.com/docs/errors/50416", "status": 409}`,
			proxyclient.ClassPermanent, proxyclient.HandlingConfiguration, conversations.ScopeNone, 0},
		// Codes the brief named that Twilio's dictionary did not confirm: classified by status.
		{"unconfirmed 50431 (400) by status", 400, "", `{"code": 50431, "message": "Unknown", "status": 400}`,
			proxyclient.ClassPermanent, proxyclient.HandlingByStatus, conversations.ScopeNone, 0},
		{"unconfirmed 50300 (500) by status: ambiguous", 500, "", `{"code": 50300, "message": "Internal error", "status": 500}`,
			proxyclient.ClassAmbiguous, proxyclient.HandlingByStatus, conversations.ScopeNone, 0},
		{"20500 internal error after the request: ambiguous", 500, "", `{"code": 20500, "message": "Internal Server Error", "more_info": "https://www.twilio.com/docs/errors/20500", "status": 500}`,
			proxyclient.ClassAmbiguous, proxyclient.HandlingByStatus, conversations.ScopeNone, 0},
		{"502 gateway HTML: ambiguous", 502, "", `<html><body><h1>502 Bad Gateway</h1></body></html>`,
			proxyclient.ClassAmbiguous, proxyclient.HandlingByStatus, conversations.ScopeNone, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				w.Header().Set("Twilio-Request-Id", "RQaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			c := newClient(t, srv.URL+basePath, nil)
			_, err := c.CreateMessage(context.Background(), conversations.CreateParams{
				Conversation: conversations.Conversation{ConversationSID: testCH}, Body: "hi"})
			var he *proxyclient.Error
			if !errors.As(err, &he) || he.StatusCode != tt.status {
				t.Fatalf("err = %v, want *proxyclient.Error with status %d", err, tt.status)
			}
			if he.RequestID == "" {
				t.Error("RequestID not kept")
			}
			if got := conversations.Classify(err); got != tt.class {
				t.Errorf("Classify = %v, want %v", got, tt.class)
			}
			info, ok := conversations.Explain(err)
			if tt.handling == proxyclient.HandlingByStatus {
				if ok {
					t.Errorf("Explain = %+v, want no rule", info)
				}
			} else if !ok || info.Handling != tt.handling || info.Scope != tt.scope || info.Source == "" {
				t.Errorf("Explain = %+v, %v; want handling %v scope %v with a source", info, ok, tt.handling, tt.scope)
			}
			wait, ok := conversations.RetryAfter(err)
			if wait != tt.wait || ok != (tt.wait > 0) {
				t.Errorf("RetryAfter = %v, %v; want %v", wait, ok, tt.wait)
			}
			// A read of the same answer is never ambiguous.
			if got := conversations.ClassifyRead(err); got == proxyclient.ClassAmbiguous {
				t.Errorf("ClassifyRead = %v", got)
			}
		})
	}
}

func TestCodesTableComplete(t *testing.T) {
	t.Parallel()
	seen := map[int]bool{}
	for _, c := range conversations.Codes() {
		if seen[c.Code] {
			t.Errorf("code %d twice", c.Code)
		}
		seen[c.Code] = true
		if c.Meaning == "" || c.Why == "" || c.Source == "" || c.Handling == proxyclient.HandlingByStatus {
			t.Errorf("code %d incomplete: %+v", c.Code, c)
		}
	}
	for _, want := range []int{20429, 20503, 20404, 50350, 50377, 50416} {
		if c, ok := conversations.LookupCode(want); !ok || !c.Confirmed {
			t.Errorf("code %d missing or not confirmed", want)
		}
	}
}

// TestDocTableMatchesCodes keeps the package doc's table equal to Codes.
func TestDocTableMatchesCodes(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[int]bool{}
	for _, line := range strings.Split(string(doc), "\n") {
		if f := strings.Fields(strings.TrimPrefix(line, "//")); len(f) > 1 && len(f[0]) == 5 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				rows[n] = true
			}
		}
	}
	for _, c := range conversations.Codes() {
		if !rows[c.Code] {
			t.Errorf("code %d is not in doc.go's table", c.Code)
		}
		delete(rows, c.Code)
	}
	for n := range rows {
		t.Errorf("doc.go's table has %d, which Codes has not", n)
	}
}

func TestRetryAfterForms(t *testing.T) {
	t.Parallel()
	tests := []struct {
		header string
		want   time.Duration
	}{
		{"3", 3 * time.Second},
		{time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat), 90 * time.Second},
		{"86400", 5 * time.Minute}, // capped by MaxRetryAfter
		{"soon", 0},
		{"0", 0},
	}
	for _, tt := range tests {
		srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", tt.header)
			w.WriteHeader(429)
			_, _ = w.Write([]byte(`{"code": 20429, "message": "Too Many Requests", "status": 429}`))
		}))
		_, err := newClient(t, srv.URL+basePath, nil).CreateMessage(context.Background(),
			conversations.CreateParams{Conversation: conversations.Conversation{ConversationSID: testCH}, Body: "x"})
		got, _ := conversations.RetryAfter(err)
		if d := got - tt.want; d < -2*time.Second || d > 2*time.Second { // HTTP-date has second precision
			t.Errorf("Retry-After %q: %v, want %v", tt.header, got, tt.want)
		}
	}
}
