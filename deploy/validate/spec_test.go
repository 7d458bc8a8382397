package validate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Facts copied from the project's build spec (ports, names, environment,
// metrics). They are duplicated here on purpose: the deployment files must
// agree with the product's contract, not merely with themselves.

// subcommands of the proxyq binary.
var subcommands = map[string]bool{
	"worker": true, "enqueue": true, "status": true, "dev": true, "sandbox": true,
	"dashboard": true, "serve": true, "bench": true, "version": true,
	// Not in the spec's list yet: the compose healthcheck needs it because the
	// distroless image has no shell or curl (see deploy/README.md).
	"healthcheck": true,
}

// envVars the product reads (cmd maps them).
var envVars = map[string]bool{
	"REDIS_URL": true, "TWILIO_ACCOUNT_SID": true, "TWILIO_AUTH_TOKEN": true, "TWILIO_API_KEY": true,
	"TWILIO_API_SECRET": true, "TWILIO_EDGE": true, "TWILIO_REGION": true, "PROXYQ_API_BASE_URL": true,
	"PROXYQ_CONCURRENCY": true, "PROXYQ_HTTP_TIMEOUT": true, "PROXYQ_LOG_LEVEL": true,
	"PROXYQ_LOG_FORMAT": true, "PROXYQ_QUEUES": true, "PROXYQ_SHUTDOWN_TIMEOUT": true,
	"PROXYQ_MAX_RETRY": true, "PROXYQ_SEND_WITHIN": true, "PROXYQ_RETENTION": true,
	"PROXYQ_POLL_INTERVAL": true, "PROXYQ_ADMIN_ADDR": true, "PROXYQ_MAX_IN_FLIGHT": true,
	"PROXYQ_RATE_LIMIT": true, "PROXYQ_RATE_BURST": true, "PROXYQ_DASHBOARD_USER": true,
	"PROXYQ_DASHBOARD_PASSWORD": true, "PROXYQ_DASHBOARD_TOKEN": true, "PROXYQ_API_TOKENS": true,
	"PROXYQ_API_TOKENS_FILE": true,
	// Delivery status: the callback route, status webhooks, polling.
	"PROXYQ_PUBLIC_URL": true, "PROXYQ_STATUS_WEBHOOK_URL": true, "PROXYQ_STATUS_WEBHOOK_SECRET": true,
	"PROXYQ_STATUS_WEBHOOK_SECRET_FILE": true, "PROXYQ_DELIVERY_POLL": true, "PROXYQ_DELIVERY_POLL_AFTER": true,
	"PROXYQ_DELIVERY_POLL_EVERY": true, "PROXYQ_DELIVERY_MAX_AGE": true, "PROXYQ_DELIVERY_POLL_BATCH": true,
	"PROXYQ_DELIVERY_SWEEP_INTERVAL": true, "PROXYQ_DELIVERY_PENDING_TTL": true, "PROXYQ_DELIVERY_INDEX_TTL": true,
	// Compose-only: the image version stamp passed as a build arg.
	"PROXYQ_VERSION": true,
}

// Fixed ports.
const (
	adminPort     = 9090
	dashboardPort = 8080
	apiPort       = 8081
	sandboxPort   = 4010
)

// metricKind maps every Prometheus metric name the product exports to its type.
var metricKind = map[string]string{
	"proxyq_attempts_total":                 "counter",
	"proxyq_twilio_errors_total":            "counter",
	"proxyq_request_duration_seconds":       "histogram",
	"proxyq_in_flight_sends":                "gauge",
	"proxyq_limit_factor":                   "gauge",
	"proxyq_limiter_wait_seconds":           "histogram",
	"proxyq_worker_up":                      "gauge",
	"asynq_tasks_enqueued_total":            "gauge", // asynq x/metrics exports it as a gauge
	"asynq_queue_size":                      "gauge",
	"asynq_queue_latency_seconds":           "gauge",
	"asynq_queue_memory_usage_approx_bytes": "gauge",
	"asynq_tasks_processed_total":           "counter",
	"asynq_tasks_failed_total":              "counter",
	"asynq_queue_paused_total":              "gauge",
	// Delivery status (package delivery): serve and worker.
	"proxyq_delivery_callbacks_total":             "counter",
	"proxyq_delivery_status_total":                "counter",
	"proxyq_delivery_errors_total":                "counter",
	"proxyq_delivery_create_to_delivered_seconds": "histogram",
	"proxyq_delivery_polls_total":                 "counter",
	"proxyq_delivery_webhooks_total":              "counter",
}

// metricAllowed reports whether name is an exported series name: a metric
// itself or, for histograms, one of its _bucket/_sum/_count series.
func metricAllowed(name string) bool {
	if _, ok := metricKind[name]; ok {
		return metricKind[name] != "histogram" // histograms have no bare series
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && metricKind[base] == "histogram" {
			return true
		}
	}
	return false
}

// repoPath returns the path of a repository file, relative to this directory.
func repoPath(elem ...string) string {
	return filepath.Join(append([]string{"..", ".."}, elem...)...)
}

// readRepoFile reads a repository file or fails the test.
func readRepoFile(t *testing.T, elem ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(repoPath(elem...))
	if err != nil {
		t.Fatalf("read %s: %v", filepath.Join(elem...), err)
	}
	return b
}

func TestMetricAllowed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		want bool
	}{
		{"proxyq_attempts_total", true},
		{"proxyq_request_duration_seconds_bucket", true},
		{"proxyq_request_duration_seconds", false},
		{"proxyq_attempts_total_bucket", false},
		{"asynq_queue_size", true},
		{"proxyq_unknown_metric", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := metricAllowed(tc.name); got != tc.want {
				t.Errorf("metricAllowed(%q) = %v, want %v", tc.name, got, tc.want)
			}
		})
	}
}
