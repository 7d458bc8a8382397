package envconfig

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/proxyq/proxyq/conversations"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/worker"
)

// DefaultAdminAddr is PROXYQ_ADMIN_ADDR's default: the worker's metrics and health probes.
const DefaultAdminAddr = ":9090"

// WorkerFlags are the flags of `proxyq worker`, each overriding its variable when Set names it
// (the flag's name without dashes: "concurrency", "queues", "http-timeout", "admin-addr").
type WorkerFlags struct {
	Concurrency int
	Queues      string
	HTTPTimeout time.Duration
	AdminAddr   string
	Set         map[string]bool // flags given on the command line
}

// WorkerProcess is the checked configuration of one `proxyq worker`.
type WorkerProcess struct {
	Worker worker.Config
	Client proxyclient.Config
	// Conversations is the Conversations client's: Client's credentials and timeout, its own
	// base URL (PROXYQ_CONVERSATIONS_BASE_URL).
	Conversations conversations.Config
	AdminAddr     string // "": the admin server is off
	// AdminSource names where AdminAddr came from, PROXYQ_ADMIN_ADDR or --admin-addr, for
	// errors about it.
	AdminSource string
}

// WorkerWithFlags reads the worker's and the client's configuration from the environment and
// applies the flags over it. Errors name the variable or the flag that set the value.
func WorkerWithFlags(getenv func(string) string, f WorkerFlags) (WorkerProcess, error) {
	var p WorkerProcess
	wcfg, err := RawWorker(getenv)
	if err != nil {
		return p, err
	}
	flagOf := map[string]string{}
	if f.Set["concurrency"] {
		if f.Concurrency < 1 {
			return p, fmt.Errorf("--concurrency=%d: want 1 or more", f.Concurrency)
		}
		wcfg.Concurrency, flagOf["Concurrency"] = f.Concurrency, "--concurrency"
	}
	if f.Set["queues"] {
		queues, err := worker.ParseQueues(f.Queues)
		if err != nil {
			return p, fmt.Errorf("--queues=%q: %v", f.Queues, err)
		}
		wcfg.Queues, flagOf["Queues"] = queues, "--queues"
	}
	if f.Set["http-timeout"] {
		if f.HTTPTimeout <= 0 {
			return p, fmt.Errorf("--http-timeout=%v: want a positive duration such as 15s", f.HTTPTimeout)
		}
		wcfg.HTTPTimeout, flagOf["HTTPTimeout"] = f.HTTPTimeout, "--http-timeout"
	}
	// The Service limits first: the worker's checks read their window.
	if wcfg.ServiceLimits, err = ServiceLimits(getenv); err != nil {
		return p, err
	}
	if p.Worker, err = FinishWorker(wcfg, flagOf); err != nil {
		return p, err
	}
	if p.Client, err = Client(getenv); err != nil {
		return p, err
	}
	// The worker derives leases and the shutdown timeout from its HTTPTimeout: the client must
	// use the same one.
	p.Client.HTTPTimeout = p.Worker.HTTPTimeout
	p.Client.UserAgent = "worker"
	if p.Conversations, err = Conversations(getenv, p.Client); err != nil {
		return p, err
	}

	addr, source := New(getenv).String("PROXYQ_ADMIN_ADDR", DefaultAdminAddr), "PROXYQ_ADMIN_ADDR"
	if f.Set["admin-addr"] {
		addr, source = strings.TrimSpace(f.AdminAddr), "--admin-addr"
	}
	p.AdminSource = source
	if strings.EqualFold(addr, "off") {
		return p, nil
	}
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return p, fmt.Errorf(`%s=%q: want host:port such as :9090 or 127.0.0.1:9090, or "off"`, source, addr)
	}
	p.AdminAddr = addr
	return p, nil
}
