package adminhttp

import (
	"fmt"
	"net"
	"strconv"
)

// Dialable turns a listener address into one a local client can dial: an unspecified host
// (":4010", "0.0.0.0", "::") becomes 127.0.0.1.
func Dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// AddrInUseError explains a listen on the worker's admin address that failed because the
// address is in use (source names where the address came from: PROXYQ_ADMIN_ADDR or
// --admin-addr). That is nearly always a second worker on the same host with the default
// :9090, so the message says what to set, with the next port as the example.
func AddrInUseError(source, addr string) error {
	example := ":9091"
	if host, port, perr := net.SplitHostPort(addr); perr == nil {
		if n, aerr := strconv.Atoi(port); aerr == nil && n > 0 && n < 65535 {
			example = net.JoinHostPort(host, strconv.Itoa(n+1))
		}
	}
	return fmt.Errorf("%s=%q: the address is already in use (another proxyq worker on this host?); "+
		"give each worker on a host its own admin address, e.g. %s=%s, or %s=off to run this one "+
		"without /metrics and health probes; nothing was started", source, addr, source, example, source)
}
