package dashboard

import (
	"errors"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	basic := Config{User: "admin", Password: "s3cret"}
	tests := []struct {
		name      string
		cfg       Config
		wantField string // "" means valid
		wantRule  string // substring of the rule
	}{
		{"basic", basic, "", ""},
		{"token", Config{Token: "tok-123"}, "", ""},
		{"basic and token", Config{User: "a", Password: "b", Token: "c"}, "", ""},
		{"no auth allowed", Config{AllowNoAuth: true}, "", ""},
		{"credentials win over AllowNoAuth", Config{AllowNoAuth: true, Token: "t"}, "", ""},
		{"root path", Config{Token: "t", RootPath: "/dashboard"}, "", ""},
		{"nested root path", Config{Token: "t", RootPath: "/ops/queues/"}, "", ""},

		{"nothing", Config{}, "auth", "set User and Password, or Token, or AllowNoAuth"},
		{"user without password", Config{User: "admin"}, "Password", "is required when User is set"},
		{"password without user", Config{Password: "x"}, "User", "is required when Password is set"},
		{"colon in user", Config{User: "a:b", Password: "x"}, "User", `must not contain ":"`},
		{"space in user", Config{User: "a b", Password: "x"}, "User", "spaces or control"},
		{"newline in token", Config{Token: "abc\n"}, "Token", "spaces or control"},
		{"relative root", Config{Token: "t", RootPath: "dashboard"}, "RootPath", `must start with "/"`},
		{"dot segment", Config{Token: "t", RootPath: "/../x"}, "RootPath", "segments"},
		{"query in root", Config{Token: "t", RootPath: "/d?x=1"}, "RootPath", "segments"},
		{"quote in root", Config{Token: "t", RootPath: `/d"><script>`}, "RootPath", "segments"},
		{"double slash", Config{Token: "t", RootPath: "//evil.example"}, "RootPath", "segments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.WithDefaults().Validate()
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("Validate() = %v (%T), want *ConfigError", err, err)
			}
			if ce.Field != tt.wantField || !strings.Contains(ce.Rule, tt.wantRule) {
				t.Errorf("Validate() = {Field:%q Rule:%q}, want field %q and rule containing %q", ce.Field, ce.Rule, tt.wantField, tt.wantRule)
			}
			if !strings.HasPrefix(err.Error(), "dashboard: ") {
				t.Errorf("Error() = %q, want prefix %q", err, "dashboard: ")
			}
			if tt.cfg.Password != "" && strings.Contains(err.Error(), tt.cfg.Password) {
				t.Errorf("Error() = %q echoes the password", err)
			}
		})
	}
}

func TestConfigWithDefaults(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"": "/", "/": "/", "/dashboard/": "/dashboard", "/a/b": "/a/b", "///": "/"} {
		if got := (Config{RootPath: in}).WithDefaults().RootPath; got != want {
			t.Errorf("WithDefaults().RootPath for %q = %q, want %q", in, got, want)
		}
	}
}
