package proxytest_test

import (
	"context"
	"errors"
	"testing"

	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
)

func TestServiceLimits(t *testing.T) {
	const (
		ksA = "KS000000000000000000000000000000aa"
		ksB = "KS000000000000000000000000000000bb"
		kc  = "KC00000000000000000000000000000001"
		kp  = "KP00000000000000000000000000000001"
	)
	srv := proxytest.NewServer(proxytest.Config{ServiceLimits: proxytest.ServiceLimits{Rate: 2, Services: map[string]float64{ksB: 4}}})
	defer srv.Close()
	c, err := proxyclient.New(proxyclient.Config{AccountSID: "AC00000000000000000000000000000001", AuthToken: "t", BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	create := func(ks string) error {
		_, err := c.CreateMessageInteraction(ctx, proxyclient.CreateParams{ServiceSID: ks, SessionSID: kc, ParticipantSID: kp, Body: "x"})
		return err
	}
	// Rate 2 over 5 s: a burst of 10 passes, the 11th is 429/80621.
	for i := range 10 {
		if err := create(ksA); err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	err = create(ksA)
	var he *proxyclient.Error
	if !errors.As(err, &he) || he.StatusCode != 429 || he.Code != proxytest.CodeServiceRateLimited {
		t.Fatalf("11th create: %v, want 429/80621", err)
	}
	// Reads have their own budget on the same Service.
	if _, err := c.ListMessageInteractions(ctx, ksA, kc, kp, proxyclient.ListOptions{}); err != nil {
		t.Fatalf("list on a Service whose create budget is spent: %v", err)
	}
	// A raised limit (4/s: 20 per window) on another Service.
	for i := range 20 {
		if err := create(ksB); err != nil {
			t.Fatalf("Service B create %d: %v", i, err)
		}
	}
	if err := create(ksB); err == nil {
		t.Fatal("Service B's 21st create passed")
	}
	if got := srv.Fake.ServiceRateLimited(); got[ksA] != 1 || got[ksB] != 1 {
		t.Fatalf("ServiceRateLimited = %v", got)
	}
}
