package proxyclient_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/proxyq/proxyq/proxyclient"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ok := proxyclient.Config{AccountSID: testAccount, AuthToken: testToken}
	with := func(f func(*proxyclient.Config)) proxyclient.Config { c := ok; f(&c); return c }
	tests := []struct {
		name    string
		cfg     proxyclient.Config
		wantMsg string // "" means valid
	}{
		{"account and token", ok, ""},
		{"API key only", proxyclient.Config{APIKey: testAPIKey, APISecret: testAPISecret}, ""},
		{"both pairs", with(func(c *proxyclient.Config) { c.APIKey, c.APISecret = testAPIKey, testAPISecret }), ""},
		{"API key with account SID, no token", proxyclient.Config{AccountSID: testAccount, APIKey: testAPIKey, APISecret: testAPISecret}, ""},
		{"edge and region", with(func(c *proxyclient.Config) { c.Edge, c.Region = "dublin", "ie1" }), ""},
		{"sandbox base URL with prefix", with(func(c *proxyclient.Config) { c.BaseURL = "http://127.0.0.1:4010/twilio" }), ""},
		{"nothing", proxyclient.Config{},
			"proxyclient: AccountSID is required (or APIKey with APISecret)"},
		{"bad account SID", with(func(c *proxyclient.Config) { c.AccountSID = "AC123" }),
			"proxyclient: AccountSID must match ^AC[0-9a-fA-F]{32}$"},
		{"account SID with wrong prefix", with(func(c *proxyclient.Config) { c.AccountSID = "SK" + testAccount[2:] }),
			"proxyclient: AccountSID must match ^AC[0-9a-fA-F]{32}$"},
		{"bad API key", proxyclient.Config{APIKey: "AC" + testAPIKey[2:], APISecret: "x"},
			"proxyclient: APIKey must match ^SK[0-9a-fA-F]{32}$"},
		{"API key without secret", proxyclient.Config{APIKey: testAPIKey},
			"proxyclient: APISecret is required when APIKey is set"},
		{"secret without API key", with(func(c *proxyclient.Config) { c.APISecret = testAPISecret }),
			"proxyclient: APIKey is required when APISecret is set"},
		{"account without token", proxyclient.Config{AccountSID: testAccount},
			"proxyclient: AuthToken is required when APIKey is empty"},
		{"token with trailing newline", with(func(c *proxyclient.Config) { c.AuthToken = testToken + "\n" }),
			"proxyclient: AuthToken must not contain whitespace or control characters"},
		{"secret with space", proxyclient.Config{APIKey: testAPIKey, APISecret: "a b"},
			"proxyclient: APISecret must not contain whitespace or control characters"},
		{"bad edge", with(func(c *proxyclient.Config) { c.Edge = "dublin.evil.com" }),
			"proxyclient: Edge must be a DNS label (letters, digits, '-'), e.g. dublin"},
		{"bad region", with(func(c *proxyclient.Config) { c.Region = "-ie1" }),
			"proxyclient: Region must be a DNS label (letters, digits, '-'), e.g. ie1"},
		{"negative timeout", with(func(c *proxyclient.Config) { c.HTTPTimeout = -time.Second }),
			"proxyclient: HTTPTimeout must not be negative (0 means 15s)"},
		{"negative max retry after", with(func(c *proxyclient.Config) { c.MaxRetryAfter = -1 }),
			"proxyclient: MaxRetryAfter must not be negative (0 means 5m)"},
		{"user agent header injection", with(func(c *proxyclient.Config) { c.UserAgent = "x\r\nX-Evil: 1" }),
			"proxyclient: UserAgent must not contain control characters"},
		{"base URL relative", with(func(c *proxyclient.Config) { c.BaseURL = "/twilio" }),
			"proxyclient: BaseURL must be an absolute http or https URL"},
		{"base URL scheme", with(func(c *proxyclient.Config) { c.BaseURL = "ftp://proxy.twilio.com" }),
			"proxyclient: BaseURL must be an absolute http or https URL"},
		{"base URL unparseable", with(func(c *proxyclient.Config) { c.BaseURL = "http://a b:pw@x/%zz" }),
			"proxyclient: BaseURL must be an absolute http or https URL"},
		{"base URL userinfo", with(func(c *proxyclient.Config) {
			c.BaseURL = "https://" + testAccount + ":" + testToken + "@proxy.twilio.com"
		}),
			"proxyclient: BaseURL must not contain user info (credentials go in AccountSID/AuthToken or APIKey/APISecret)"},
		{"base URL query", with(func(c *proxyclient.Config) { c.BaseURL = "https://proxy.twilio.com/?x=1" }),
			"proxyclient: BaseURL must not contain a query or fragment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, cfg := range []proxyclient.Config{tt.cfg, tt.cfg.WithDefaults()} {
				err := cfg.Validate()
				if tt.wantMsg == "" {
					if err != nil {
						t.Fatalf("Validate: %v", err)
					}
					continue
				}
				if err == nil || err.Error() != tt.wantMsg {
					t.Fatalf("Validate = %v, want %q", err, tt.wantMsg)
				}
				var ve *proxyclient.ValidationError
				if !errors.As(err, &ve) || !strings.HasPrefix(tt.wantMsg, "proxyclient: "+ve.Field+" ") {
					t.Errorf("want *ValidationError naming the field, got %#v", err)
				}
				if leaked := secretsIn(err.Error()); leaked != nil {
					t.Errorf("message leaks %q", leaked)
				}
				if _, nerr := proxyclient.New(cfg); nerr == nil || nerr.Error() != tt.wantMsg {
					t.Errorf("New = %v, want the same error", nerr)
				}
			}
		})
	}
}

func TestConfigWithDefaults(t *testing.T) {
	t.Parallel()
	got := proxyclient.Config{Edge: "sydney"}.WithDefaults()
	if got.HTTPTimeout != 15*time.Second || got.MaxRetryAfter != 5*time.Minute || got.Region != "us1" || got.BaseURL != "" {
		t.Errorf("WithDefaults = %+v", got)
	}
	kept := proxyclient.Config{HTTPTimeout: time.Second, MaxRetryAfter: time.Minute, Region: "ie1"}.WithDefaults()
	if kept.HTTPTimeout != time.Second || kept.MaxRetryAfter != time.Minute || kept.Region != "ie1" || kept.Edge != "" {
		t.Errorf("WithDefaults overwrote set values: %+v", kept)
	}
}

// roundTripFunc lets a test see the outgoing request without any network.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestEdgeRegionHosts(t *testing.T) {
	t.Parallel()
	// Twilio's SDK rules: edge+region → proxy.{edge}.{region}; edge alone → region us1;
	// region alone → proxy.{region}; BaseURL overrides both.
	tests := []struct {
		edge, region, baseURL string
		want                  string
	}{
		{"", "", "", "https://proxy.twilio.com"},
		{"dublin", "ie1", "", "https://proxy.dublin.ie1.twilio.com"},
		{"sydney", "", "", "https://proxy.sydney.us1.twilio.com"},
		{"", "au1", "", "https://proxy.au1.twilio.com"},
		{"Tokyo", "JP1", "", "https://proxy.tokyo.jp1.twilio.com"},
		{"dublin", "ie1", "http://127.0.0.1:4010/twilio/", "http://127.0.0.1:4010/twilio"},
	}
	for _, tt := range tests {
		t.Run(tt.want+"/"+tt.edge+"/"+tt.region, func(t *testing.T) {
			t.Parallel()
			cfg := proxyclient.Config{AccountSID: testAccount, AuthToken: testToken, Edge: tt.edge, Region: tt.region, BaseURL: tt.baseURL}
			if got := cfg.Endpoint(); got != tt.want {
				t.Errorf("Config.Endpoint = %q, want %q", got, tt.want)
			}
			if got := cfg.WithDefaults().Endpoint(); got != tt.want {
				t.Errorf("WithDefaults().Endpoint = %q, want %q", got, tt.want)
			}
			var gotURL string
			cfg.HTTPClient = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				gotURL = r.URL.String()
				return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(interactionJSON)), Request: r}, nil
			})}
			c, err := proxyclient.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if c.Endpoint() != tt.want {
				t.Errorf("Client.Endpoint = %q, want %q", c.Endpoint(), tt.want)
			}
			if _, err := c.CreateMessageInteraction(context.Background(), createParams()); err != nil {
				t.Fatal(err)
			}
			wantURL := tt.want + "/v1/Services/" + testKS + "/Sessions/" + testKC + "/Participants/" + testKP + "/MessageInteractions"
			if gotURL != wantURL {
				t.Errorf("request URL = %q, want %q", gotURL, wantURL)
			}
		})
	}
}
