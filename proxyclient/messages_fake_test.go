package proxyclient_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
)

// TestFetchMessageAgainstFake reads a message's delivery status from proxytest, mounted
// under its default non-empty prefix, as the status moves and ends undelivered with a code.
func TestFetchMessageAgainstFake(t *testing.T) {
	t.Parallel()
	srv := proxytest.NewServer(proxytest.Config{
		Credentials: map[string]string{testAccount: testToken},
		Callbacks:   proxytest.CallbackConfig{Advance: true, Delay: 40 * time.Millisecond},
	})
	t.Cleanup(srv.Close)
	if err := srv.Fake.ScriptDelivery(proxytest.DeliveryPlan{Final: proxytest.StatusUndelivered, ErrorCode: 30003}, 1); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, srv.URL, func(cfg *proxyclient.Config) { cfg.BaseURL = srv.URL })
	if !strings.HasSuffix(c.MessagingEndpoint(), proxytest.DefaultPrefix) {
		t.Fatalf("MessagingEndpoint %q does not keep the base path", c.MessagingEndpoint())
	}
	ctx := context.Background()
	mi, err := c.CreateMessageInteraction(ctx, createParams())
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.FetchMessage(ctx, mi.AccountSID, mi.OutboundResourceSID)
	if err != nil {
		t.Fatal(err)
	}
	if m.SID != mi.OutboundResourceSID || m.AccountSID != testAccount || m.ErrorCode != 0 || m.ErrorMessage != "" ||
		m.DateCreated.IsZero() || m.DateCreated.Location() != time.UTC {
		t.Errorf("fresh message %+v", m)
	}
	if m.Status != "queued" && m.Status != "sent" {
		t.Errorf("fresh message status %q", m.Status)
	}
	deadline := time.Now().Add(5 * time.Second)
	for m.Status != "undelivered" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		if m, err = c.FetchMessage(ctx, mi.AccountSID, mi.OutboundResourceSID); err != nil {
			t.Fatal(err)
		}
	}
	if m.Status != "undelivered" || m.ErrorCode != 30003 || m.ErrorMessage != "Unreachable destination handset" || m.DateSent.IsZero() {
		t.Errorf("final message %+v", m)
	}
	// The interaction's fetch agrees.
	got, err := c.FetchMessageInteraction(ctx, testKS, testKC, testKP, mi.SID)
	if err != nil || got.OutboundResourceStatus != "undelivered" {
		t.Errorf("interaction %+v, %v", got, err)
	}

	// A 500 on a read is retryable (Classify would call it ambiguous); the retry succeeds.
	if err := srv.Fake.FailMessageFetches(500, 1); err != nil {
		t.Fatal(err)
	}
	_, err = c.FetchMessage(ctx, mi.AccountSID, mi.OutboundResourceSID)
	var he *proxyclient.Error
	if !errors.As(err, &he) || he.StatusCode != 500 || he.Code != 20500 || proxyclient.ClassifyRead(err) != proxyclient.ClassRetryable {
		t.Errorf("scripted 500: %v", err)
	}
	if m, err = c.FetchMessage(ctx, mi.AccountSID, mi.OutboundResourceSID); err != nil || m.ErrorCode != 30003 {
		t.Errorf("after the 500: %+v, %v", m, err)
	}

	// Unknown message: typed 404, permanent for a read.
	_, err = c.FetchMessage(ctx, testAccount, "SM"+strings.Repeat("f", 32))
	if !errors.As(err, &he) || he.StatusCode != 404 || he.Code != 20404 || proxyclient.ClassifyRead(err) != proxyclient.ClassPermanent {
		t.Errorf("unknown message: %v", err)
	}
	// Wrong credentials: 401 code 20003, and the error does not leak the secret.
	bad := newClient(t, srv.URL, func(cfg *proxyclient.Config) { cfg.BaseURL = srv.URL; cfg.AuthToken = "wrong-token" })
	_, err = bad.FetchMessage(ctx, testAccount, mi.OutboundResourceSID)
	if !errors.As(err, &he) || he.StatusCode != 401 || he.Code != 20003 {
		t.Errorf("bad credentials: %v", err)
	}
	if leaked := secretsIn(err.Error(), "wrong-token"); leaked != nil {
		t.Errorf("error leaks %q", leaked)
	}
	// A closed fake answers 503: retryable.
	srv.Fake.Close()
	_, err = c.FetchMessage(ctx, testAccount, mi.OutboundResourceSID)
	if !errors.As(err, &he) || he.StatusCode != 503 || proxyclient.ClassifyRead(err) != proxyclient.ClassRetryable {
		t.Errorf("closed fake: %v", err)
	}
}
