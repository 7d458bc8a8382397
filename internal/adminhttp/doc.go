// Package adminhttp serves a process's operational endpoints: Prometheus metrics, liveness and
// readiness. The worker mounts it on PROXYQ_ADMIN_ADDR (default :9090); other long-running
// commands may do the same.
//
// Guarantees:
//   - GET /healthz answers 200 "ok" for as long as the process can serve HTTP at all; it checks
//     nothing else, so an orchestrator restarts only a process that is truly wedged.
//   - GET /readyz answers 200 "ready" when the ready function returns nil within ReadyTimeout
//     (2s), and 503 with the reason otherwise, including when the function is still running at
//     the deadline: a hung Redis makes the process unready, it never hangs the probe.
//   - GET /metrics serves the given registry in the Prometheus exposition format. A collector that
//     fails (Redis down under the queue collector) does not empty the scrape: the other metrics
//     are still served.
//   - Other methods answer 405 and other paths 404. Nothing here reads or writes message content.
package adminhttp
