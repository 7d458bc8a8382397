package worker

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proxyq/proxyq/tasks"
)

// Attempt outcomes, the values of proxyq_attempts_total's outcome label.
const (
	outcomeSent        = "sent"         // Twilio created the interaction and said so
	outcomeRetried     = "retried"      // a retryable failure (503, connection refused, Redis)
	outcomeRateLimited = "rate_limited" // Twilio's 429, or our own account limits
	outcomePermanent   = "permanent"    // Twilio refused it for good; archived
	outcomeUnknown     = "unknown"      // may have been created; will reconcile
	outcomeReconciled  = "reconciled"   // found by reconciliation and recorded as sent
	outcomeExpired     = "expired"      // deadline passed; archived unsent
	outcomeInvalid     = "invalid"      // malformed payload; archived
	outcomeDuplicate   = "duplicate"    // already sent or being sent by another run; nothing done
)

// Metrics are the worker's Prometheus collectors. Names are part of the product: the alert
// rules and the Grafana dashboard in deploy/monitoring use them.
type Metrics struct {
	Attempts        *prometheus.CounterVec
	TwilioErrors    *prometheus.CounterVec
	RequestDuration *prometheus.HistogramVec
	InFlight        prometheus.Gauge
	LimitFactor     *prometheus.GaugeVec
	LimiterWait     prometheus.Histogram
	Up              prometheus.Gauge
}

// NewMetrics creates the collectors and registers them on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxyq_attempts_total",
			Help: "Message handling attempts by outcome (sent, retried, rate_limited, permanent, unknown, reconciled, expired, invalid, duplicate, lane_wait) and API (proxy, conversations).",
		}, []string{"outcome", "api"}),
		TwilioErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxyq_twilio_errors_total",
			Help: "Error answers from Twilio by Twilio error code and HTTP status (code 0: no Twilio body).",
		}, []string{"code", "status"}),
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "proxyq_request_duration_seconds",
			Help:    "Duration of requests to Twilio by operation (create, list) and API (proxy, conversations).",
			Buckets: []float64{.01, .025, .05, .1, .2, .35, .5, .75, 1, 1.5, 2.5, 5, 10, 15, 30},
		}, []string{"operation", "api"}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "proxyq_in_flight_sends",
			Help: "Create requests to the Proxy API in flight in this process.",
		}),
		LimitFactor: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "proxyq_limit_factor",
			Help: "Adaptive share (0..1] of the configured account limits in force; lowered by 429s, restored gradually.",
		}, []string{"account"}),
		LimiterWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "proxyq_limiter_wait_seconds",
			Help:    "Time spent waiting for an account slot before a request.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}),
		Up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "proxyq_worker_up",
			Help: "1 while this worker process is running and taking work.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.Attempts, m.TwilioErrors, m.RequestDuration, m.InFlight, m.LimitFactor, m.LimiterWait, m.Up)
	}
	return m
}

// apiOfType is the api label (apiProxy or apiConversations, sender.go) of a task type.
func apiOfType(taskType string) string {
	if taskType == tasks.TypeSendConversationMessage {
		return apiConversations
	}
	return apiProxy
}

// apiLabel is the api label of the run's message.
func (r *run) apiLabel() string { return apiOfType(r.task.Type()) }

func (m *Metrics) twilioError(code, status int) {
	m.TwilioErrors.WithLabelValues(strconv.Itoa(code), strconv.Itoa(status)).Inc()
}
