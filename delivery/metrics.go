package delivery

import "github.com/prometheus/client_golang/prometheus"

// Callback results (label "result" of proxyq_delivery_callbacks_total).
const (
	ResultAccepted           = "accepted"            // moved the message's status forward
	ResultDuplicateOrStale   = "duplicate_or_stale"  // a repeat, or older than the current status
	ResultPending            = "pending"             // interaction not recorded yet: kept until it is
	ResultUnknownInteraction = "unknown_interaction" // never matched (dropped after PendingTTL) or its message is gone
	ResultBadSignature       = "bad_signature"       // 403: missing or wrong X-Twilio-Signature
	ResultUnknownAccount     = "unknown_account"     // 403: no Auth Token for interactionAccountSid
	ResultIgnored            = "ignored"             // signed, but no outbound status (inbound interactions)
	ResultNotOurs            = "not_ours"            // signed, for an interaction proxyq never creates (inbound relay, voice): not kept
	ResultWrongAccount       = "wrong_account"       // signed by another account than the interaction was recorded under: changes nothing
	ResultDropped            = "dropped"             // early callback refused: PendingMax reached
	ResultError              = "error"               // Redis failed: 503, Twilio may retry
)

// Metrics are the delivery metrics. Each process registers its own; Prometheus sums them.
type Metrics struct {
	Callbacks       *prometheus.CounterVec // result
	Statuses        *prometheus.CounterVec // status, error_code
	Errors          *prometheus.CounterVec // error_code: delivery errors recorded from the Message
	CreateDelivered prometheus.Histogram
	Polls           *prometheus.CounterVec // result
	Webhooks        *prometheus.CounterVec // result
}

// NewMetrics creates the metrics and registers them with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "proxyq_delivery_callbacks_total",
			Help: "Twilio Proxy status callbacks received, by result."}, []string{"result"}),
		Statuses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "proxyq_delivery_status_total",
			Help: "Messages whose outbound status moved to status (error_code: the Message's error code when known at that moment, else none)."}, []string{"status", "error_code"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "proxyq_delivery_errors_total",
			Help: "Delivery error codes recorded for undelivered or failed messages."}, []string{"error_code"}),
		CreateDelivered: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "proxyq_delivery_create_to_delivered_seconds",
			Help:    "Time from the interaction's creation to its delivered status.",
			Buckets: []float64{1, 2, 5, 10, 30, 60, 120, 300, 900, 3600, 4 * 3600, 24 * 3600}}),
		Polls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "proxyq_delivery_polls_total",
			Help: "Polling fallback: messages examined, by result."}, []string{"result"}),
		Webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "proxyq_delivery_webhooks_total",
			Help: "Status webhook POSTs to the application, by result."}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.Callbacks, m.Statuses, m.Errors, m.CreateDelivered, m.Polls, m.Webhooks)
	}
	return m
}
