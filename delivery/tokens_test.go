package delivery_test

import (
	"testing"

	"github.com/proxyq/proxyq/delivery"
)

// Tokens asks each source in turn: the default account first, then the accounts file.
func TestTokensAsksEachSource(t *testing.T) {
	const ac1, ac2, ac3 = "AC0000000000000000000000000000000a", "AC0000000000000000000000000000000b", "AC0000000000000000000000000000000c"
	ts := delivery.Tokens{nil, delivery.StaticToken{AccountSID: ac1, Token: "one"}, delivery.StaticToken{AccountSID: ac2, Token: "two"}}
	for _, tt := range []struct {
		account, want string
		ok            bool
	}{{ac1, "one", true}, {ac2, "two", true}, {ac3, "", false}} {
		if got, ok := ts.AuthToken(tt.account); got != tt.want || ok != tt.ok {
			t.Errorf("AuthToken(%s) = %q, %v; want %q, %v", tt.account, got, ok, tt.want, tt.ok)
		}
	}
}
