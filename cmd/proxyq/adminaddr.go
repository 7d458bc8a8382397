package main

import (
	"errors"
	"net"
	"strconv"
	"syscall"
)

// adminListenError explains a failed listen on the worker's admin address (source names where
// the address came from: PROXYQ_ADMIN_ADDR or --admin-addr). An address in use is nearly
// always a second worker on the same host with the default :9090, so it is a configuration
// error (exit 2, nothing started) that says what to set; other errors pass through.
func adminListenError(err error, source, addr string) error {
	if !errors.Is(err, syscall.EADDRINUSE) {
		return err
	}
	example := ":9091"
	if host, port, perr := net.SplitHostPort(addr); perr == nil {
		if n, aerr := strconv.Atoi(port); aerr == nil && n > 0 && n < 65535 {
			example = net.JoinHostPort(host, strconv.Itoa(n+1))
		}
	}
	return usagef("%s=%q: the address is already in use (another proxyq worker on this host?); "+
		"give each worker on a host its own admin address, e.g. %s=%s, or %s=off to run this one "+
		"without /metrics and health probes; nothing was started", source, addr, source, example, source)
}
