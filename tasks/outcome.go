package tasks

import (
	"encoding/json"
	"time"
)

// Outcome states written by the worker.
const (
	OutcomeSent    = "sent"    // the interaction exists at Twilio; InteractionSID is set
	OutcomeFailed  = "failed"  // Twilio refused it permanently; ErrorCode and Error say why
	OutcomeExpired = "expired" // not sent by its deadline; nothing was created
	// OutcomeUnknown means the last request may or may not have created the interaction; the
	// worker reconciles before it sends again, so a task in this state must not be cancelled
	// or re-sent by hand.
	OutcomeUnknown = "unknown"
)

// Outcome is the record the worker writes as the asynq task result (JSON), read by the asynq
// dashboard, `proxyq status` and the HTTP API. New keys may be added; existing ones keep their
// meaning.
type Outcome struct {
	State               string     `json:"state"`                           // one of the Outcome* constants
	InteractionSID      string     `json:"interaction_sid,omitempty"`       // KI…
	OutboundStatus      string     `json:"outbound_status,omitempty"`       // e.g. queued, sent, delivered
	OutboundResourceSID string     `json:"outbound_resource_sid,omitempty"` // SM…, the message
	Attempts            int        `json:"attempts"`                        // requests that could have created it (POSTs)
	SentAt              *time.Time `json:"sent_at,omitempty"`               // Twilio's date_created, else when we learned it
	// Reconciled is true when the worker did not see Twilio's answer to its own request but found
	// the interaction afterwards by listing the participant's interactions.
	Reconciled bool      `json:"reconciled,omitempty"`
	ErrorCode  int       `json:"error_code,omitempty"`  // Twilio error code, for failed
	HTTPStatus int       `json:"http_status,omitempty"` // for failed
	Error      string    `json:"error,omitempty"`       // human-readable reason, for failed/expired/unknown
	RecordedAt time.Time `json:"recorded_at"`

	// Delivery: what became of the SMS after Twilio accepted it, from Proxy's status callbacks
	// or a poll (package delivery). OutboundStatus above is then the latest status by rank.
	StatusHistory     []StatusEvent `json:"status_history,omitempty"`      // each status once, in order of arrival, bounded
	DeliveredAt       *time.Time    `json:"delivered_at,omitempty"`        // when delivered was reported
	Final             bool          `json:"final,omitempty"`               // delivered, undelivered or failed: it no longer changes
	DeliveryErrorCode int           `json:"delivery_error_code,omitempty"` // the Message's error_code (30003…), for undelivered/failed
	DeliveryError     string        `json:"delivery_error,omitempty"`      // the Message's error_message
}

// StatusEvent is one entry of Outcome.StatusHistory: a status and when proxyq learned it.
type StatusEvent struct {
	Status string    `json:"status"`
	At     time.Time `json:"at"`
}

// ParseOutcome decodes an outcome record; an empty result yields nil, nil.
func ParseOutcome(result []byte) (*Outcome, error) {
	if len(result) == 0 {
		return nil, nil
	}
	var o Outcome
	if err := json.Unmarshal(result, &o); err != nil {
		return nil, err
	}
	return &o, nil
}
