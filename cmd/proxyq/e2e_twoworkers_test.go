package main

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/proxyq/proxyq/proxyclient/proxytest"
)

// Two `proxyq worker` processes on one host: the second on the first's admin address exits 2
// at once with a message that names PROXYQ_ADMIN_ADDR (or --admin-addr) and what to set,
// leaving the first untouched; with an address of its own it runs beside the first and they
// share the queue.
func TestE2ETwoWorkersOneHost(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	h := newHarness(t, proxytest.Config{})
	addr := freeAddr(t)
	first := h.startWorker("PROXYQ_ADMIN_ADDR=" + addr)
	host, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	next := net.JoinHostPort(host, strconv.Itoa(n+1))

	for _, tt := range []struct {
		name   string
		env    []string
		args   []string
		source string
	}{
		{"from the environment", h.env("PROXYQ_ADMIN_ADDR=" + addr), []string{"worker"}, "PROXYQ_ADMIN_ADDR"},
		{"from the flag", h.env(), []string{"worker", "--admin-addr", addr}, "--admin-addr"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			r := runBinary(t, tt.env, "", tt.args...)
			if r.code != exitUsage {
				t.Fatalf("second worker: exit %d, want %d; stderr %s", r.code, exitUsage, r.stderr)
			}
			for _, want := range []string{
				fmt.Sprintf("%s=%q: the address is already in use (another proxyq worker on this host?)", tt.source, addr),
				fmt.Sprintf("e.g. %s=%s, or %s=off", tt.source, next, tt.source),
				"nothing was started",
			} {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
				}
			}
			if took := time.Since(start); took > 15*time.Second {
				t.Errorf("second worker took %v to give up", took)
			}
		})
	}
	if status, _ := httpGet(t, "http://"+first.admin+"/readyz"); status != http.StatusOK || first.hasExited() {
		t.Fatalf("first worker after the clash: readyz %d, exited %v", status, first.hasExited())
	}

	// With its own address (port 0: a free one, logged) the second worker runs beside the
	// first, and every message is still sent once.
	second := h.startWorker("PROXYQ_ADMIN_ADDR=127.0.0.1:0")
	if second.admin == first.admin {
		t.Fatalf("both workers on %s", first.admin)
	}
	msgs := make([]message, 10)
	for i := range msgs {
		msgs[i] = newMessage(i, fmt.Sprintf("two workers message %d", i))
	}
	ids := h.enqueueFile(msgs)
	eventually(t, 30*time.Second, "every message sent", func() bool {
		for _, id := range ids {
			if st := h.status(id); st.Outcome == nil || st.Outcome.State != "sent" {
				return false
			}
		}
		return true
	})
	for _, m := range msgs {
		if c := h.fake.Fake.CreatesForBody(m.body); c != 1 {
			t.Errorf("%q created %d times, want once", m.body, c)
		}
	}
}
