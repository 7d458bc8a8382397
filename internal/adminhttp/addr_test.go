package adminhttp

import (
	"strings"
	"testing"
)

func TestDialable(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		":4010": "127.0.0.1:4010", "0.0.0.0:80": "127.0.0.1:80", "[::]:9090": "127.0.0.1:9090",
		"10.0.0.2:81": "10.0.0.2:81", "localhost:1": "localhost:1", "no-port": "no-port",
	} {
		if got := Dialable(in); got != want {
			t.Errorf("Dialable(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestAddrInUseErrorSuggestsTheNextPort(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ source, addr, want string }{
		{"PROXYQ_ADMIN_ADDR", ":9090", `PROXYQ_ADMIN_ADDR=":9090": the address is already in use (another proxyq worker on this host?); give each worker on a host its own admin address, e.g. PROXYQ_ADMIN_ADDR=:9091, or PROXYQ_ADMIN_ADDR=off`},
		{"--admin-addr", "127.0.0.1:65535", "e.g. --admin-addr=:9091"},
		{"--admin-addr", "127.0.0.1:8000", "e.g. --admin-addr=127.0.0.1:8001"},
	} {
		if err := AddrInUseError(tt.source, tt.addr); !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s=%s: %v; want %q in it", tt.source, tt.addr, err, tt.want)
		}
	}
}
