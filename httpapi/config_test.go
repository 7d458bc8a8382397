package httpapi

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/tasks"
)

func TestConfigWithDefaults(t *testing.T) {
	t.Parallel()
	c := Config{Tokens: []string{tokenA}}.WithDefaults()
	if c.MaxBodyBytes != 1<<20 || c.MaxBatch != 100 || c.RequestTimeout != DefaultRequestTimeout ||
		c.ReadyTimeout != DefaultReadyTimeout || strings.Join(c.Queues, ",") != "critical,default,low" {
		t.Fatalf("defaults: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	// Set fields are kept.
	c = Config{MaxBatch: 7, MaxBodyBytes: 4096, Queues: []string{"default"}}.WithDefaults()
	if c.MaxBatch != 7 || c.MaxBodyBytes != 4096 || len(c.Queues) != 1 {
		t.Fatalf("overrides lost: %+v", c)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ok := []string{tokenA}
	tests := []struct {
		name      string
		cfg       Config
		field     string // "" = valid
		noTokens  bool
		mustNotIn string // the error must not quote this (a secret)
	}{
		{name: "minimal", cfg: Config{Tokens: ok}},
		{name: "no tokens", cfg: Config{}, field: "Tokens", noTokens: true},
		{name: "short token", cfg: Config{Tokens: []string{tokenA, "short"}}, field: "Tokens[1]", mustNotIn: "short"},
		{name: "token with space", cfg: Config{Tokens: []string{"abcdefgh ijklmnopqrstu"}}, field: "Tokens[0]", mustNotIn: "ijklm"},
		{name: "token with newline", cfg: Config{Tokens: []string{tokenA + "\n"}}, field: "Tokens[0]"},
		{name: "token padding only at end", cfg: Config{Tokens: []string{"abc=defghijklmnopqrst"}}, field: "Tokens[0]"},
		{name: "token padded", cfg: Config{Tokens: []string{"abcdefghijklmnopqrst=="}}},
		{name: "negative batch", cfg: Config{Tokens: ok, MaxBatch: -1}, field: "MaxBatch"},
		{name: "huge batch", cfg: Config{Tokens: ok, MaxBatch: MaxMaxBatch + 1}, field: "MaxBatch"},
		{name: "negative body", cfg: Config{Tokens: ok, MaxBodyBytes: -1}, field: "MaxBodyBytes"},
		{name: "tiny body", cfg: Config{Tokens: ok, MaxBodyBytes: 10}, field: "MaxBodyBytes"},
		{name: "negative request timeout", cfg: Config{Tokens: ok, RequestTimeout: -1}, field: "RequestTimeout"},
		{name: "negative ready timeout", cfg: Config{Tokens: ok, ReadyTimeout: -1}, field: "ReadyTimeout"},
		{name: "queues without default", cfg: Config{Tokens: ok, Queues: []string{"critical"}}, field: "Queues"},
		{name: "blank queue", cfg: Config{Tokens: ok, Queues: []string{"default", " "}}, field: "Queues[1]"},
		{name: "repeated queue", cfg: Config{Tokens: ok, Queues: []string{"default", "default"}}, field: "Queues[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tt.field {
				t.Fatalf("Validate = %v, want *ConfigError for %s", err, tt.field)
			}
			if errors.Is(err, ErrNoTokens) != tt.noTokens {
				t.Fatalf("errors.Is(ErrNoTokens) = %v, want %v", !tt.noTokens, tt.noTokens)
			}
			if tt.mustNotIn != "" && strings.Contains(err.Error(), tt.mustNotIn) {
				t.Fatalf("error %q quotes the token", err)
			}
		})
	}
}

func TestNewRefusesMissingTokensAndDeps(t *testing.T) {
	t.Parallel()
	db := unusedRedis(t)
	enq := tasks.NewEnqueuer(db)
	insp := asynq.NewInspector(db)
	t.Cleanup(func() { _ = enq.Close(); _ = insp.Close() })
	if _, err := New(Config{}, enq, insp, nil, nil); !errors.Is(err, ErrNoTokens) {
		t.Fatalf("New without tokens = %v, want ErrNoTokens", err)
	}
	if _, err := New(Config{Tokens: []string{tokenA}}, nil, insp, nil, nil); err == nil {
		t.Fatal("New without an Enqueuer succeeded")
	}
	if _, err := New(Config{Tokens: []string{tokenA}}, enq, nil, nil, nil); err == nil {
		t.Fatal("New without an Inspector succeeded")
	}
	if _, err := New(Config{Tokens: []string{tokenA}}, enq, insp, nil, nil); err != nil {
		t.Fatalf("New with a nil guard and logger: %v", err)
	}
}

// unusedRedis returns a connection option that New only stores (it makes no Redis call).
func unusedRedis(t *testing.T) asynq.RedisClientOpt {
	t.Helper()
	return asynq.RedisClientOpt{Addr: "127.0.0.1:1"}
}

func TestLoadTokens(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "# rotated 2030-01-01\n"+tokenB+"\n\n  "+tokenA+"  # the old one\n")
	bad := write("bad", tokenA+"\nnot a token at all\n")
	empty := write("empty", "# nothing here\n\n")

	tests := []struct {
		name    string
		env     string
		file    string
		want    []string
		errHas  []string // substrings of the error; nil = success
		noToken bool
	}{
		{name: "env comma separated", env: tokenA + ", " + tokenB + ",", want: []string{tokenA, tokenB}},
		{name: "env newline and comment", env: tokenA + "\n# x\n" + tokenB, want: []string{tokenA, tokenB}},
		{name: "file", file: good, want: []string{tokenB, tokenA}},
		{name: "env and file, de-duplicated", env: tokenA, file: good, want: []string{tokenA, tokenB}},
		{name: "bad token in file names file and line", file: bad, errHas: []string{bad, "line 2"}},
		{name: "bad token in env names the variable", env: "short", errHas: []string{"PROXYQ_API_TOKENS", "at least 16"}},
		{name: "missing file names it", file: filepath.Join(dir, "missing"), errHas: []string{filepath.Join(dir, "missing")}},
		{name: "nothing anywhere", env: " , ", file: empty, errHas: []string{empty}, noToken: true},
		{name: "nothing at all", errHas: []string{"PROXYQ_API_TOKENS"}, noToken: true},
		{name: "named tokens", env: "billing:" + tokenA + ", " + tokenB + "\nops.team-2_b:" + tokenC, want: []string{"billing:" + tokenA, tokenB, "ops.team-2_b:" + tokenC}},
		{name: "a named token repeated is de-duplicated", env: "billing:" + tokenA + ",billing:" + tokenA, want: []string{"billing:" + tokenA}},
		{name: "one token under two names", env: "billing:" + tokenA + "\nops:" + tokenA, errHas: []string{"line 2", "another name"}},
		{name: "a name with a space", env: "bil ling:" + tokenA, errHas: []string{"name", "A-Z a-z 0-9 _ . -"}},
		{name: "an empty name", env: ":" + tokenA, errHas: []string{"name"}},
		{name: "a name too long", env: strings.Repeat("n", 33) + ":" + tokenA, errHas: []string{"name"}},
		{name: "a named short token", env: "billing:short", errHas: []string{"at least 16"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := LoadTokens(tt.env, tt.file)
			if tt.errHas == nil {
				if err != nil {
					t.Fatalf("LoadTokens: %v", err)
				}
				if strings.Join(got, "|") != strings.Join(tt.want, "|") {
					t.Fatalf("tokens %q, want %q", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadTokens = %q, want an error", got)
			}
			for _, s := range tt.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not name %q", err, s)
				}
			}
			if strings.Contains(err.Error(), "not a token at all") {
				t.Errorf("error %q quotes the token", err)
			}
			if errors.Is(err, ErrNoTokens) != tt.noToken {
				t.Errorf("errors.Is(err, ErrNoTokens) = %v, want %v", !tt.noToken, tt.noToken)
			}
		})
	}
}

func TestTokenSetMatch(t *testing.T) {
	t.Parallel()
	set := newTokenSet([]string{tokenA, "billing:" + tokenB})
	for tok, want := range map[string]bool{
		tokenA: true, tokenB: true, "": false, tokenA + "x": false, tokenA[:len(tokenA)-1]: false, strings.ToUpper(tokenA): false,
		"billing:" + tokenB: false,
	} {
		if _, got := set.match(tok); got != want {
			t.Errorf("match(%q) = %v, want %v", tok, got, want)
		}
	}
	if name, _ := set.match(tokenB); name != "billing" {
		t.Errorf("the named token matched as %q, want billing", name)
	}
	if name, _ := set.match(tokenA); name != "" {
		t.Errorf("the unnamed token matched as %q, want none", name)
	}
}
