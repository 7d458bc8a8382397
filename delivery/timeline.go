package delivery

import (
	"slices"
	"strings"
	"time"

	"github.com/proxyq/proxyq/tasks"
)

// Statuses with a meaning to the timeline. Others are kept as opaque history entries.
const (
	StatusDelivered       = "delivered"
	StatusUndelivered     = "undelivered"
	StatusFailed          = "failed"
	StatusDeliveryUnknown = "delivery-unknown"
)

// MaxHistory bounds status_history: each status appears once, so only opaque statuses could
// grow it past the dozen Twilio defines.
const MaxHistory = 16

// rank orders the outbound statuses of a message:
// accepted|scheduled < queued < sending < sent < delivery-unknown < delivered|undelivered|failed.
// The last three are terminal. 0 means unknown to us (opaque: recorded, never moves the rank).
// delivery-unknown is Twilio's own status for a carrier that never answered; proxyq also
// writes it when polling gives up; a later final status still replaces it.
func rank(status string) int {
	switch strings.ToLower(status) {
	case "accepted", "scheduled":
		return 1
	case "queued":
		return 2
	case "sending":
		return 3
	case "sent":
		return 4
	case StatusDeliveryUnknown:
		return 5
	case StatusDelivered, StatusUndelivered, StatusFailed:
		return 6
	}
	return 0
}

// IsFinal reports whether status is terminal: delivered, undelivered or failed.
func IsFinal(status string) bool { return rank(status) == 6 }

// Update is one status report for a message: from a callback, a poll or a fetch.
type Update struct {
	Status string    `json:"status"`
	At     time.Time `json:"at"`
	// ErrorCode and ErrorMessage come from the Message resource (fetch or poll), never from a
	// callback (Twilio's callback carries no error code).
	ErrorCode    int    `json:"error_code,omitempty"`
	ErrorMessage string `json:"error_message,omitempty"`
}

// Change is what one update did to a message's timeline.
type Change int

const (
	Unchanged  Change = iota // a duplicate: the status is already in the history
	Stale                    // new to the history, but ranked at or below the current status
	Advanced                 // the current status moved forward
	ErrorAdded               // only the delivery error was recorded
)

// applyUpdate folds u into o and says what changed. It never moves outbound_status back:
// duplicates change nothing, out-of-order statuses are recorded in the history only, and a
// terminal status is never replaced. The history is kept in time order.
//
// When the history starts, the status the worker recorded is its first entry: at sent_at for
// the status of a fresh create, at recorded_at for one learned later (a reconciled send can
// already say delivered). A recorded status that is already final makes the record final
// (Advanced), so it is counted and announced like a callback's.
func applyUpdate(o *tasks.Outcome, u Update) Change {
	status := strings.ToLower(strings.TrimSpace(u.Status))
	if status == "" {
		return Unchanged
	}
	change := Unchanged
	if len(o.StatusHistory) == 0 && o.OutboundStatus != "" {
		o.OutboundStatus = strings.ToLower(o.OutboundStatus)
		at := o.RecordedAt
		if o.SentAt != nil && rank(o.OutboundStatus) <= rank("queued") {
			at = *o.SentAt
		}
		at = at.UTC()
		o.StatusHistory = append(o.StatusHistory, tasks.StatusEvent{Status: o.OutboundStatus, At: at})
		if IsFinal(o.OutboundStatus) && !o.Final {
			o.Final, change = true, Advanced
			if o.OutboundStatus == StatusDelivered {
				o.DeliveredAt = &at
			}
		}
	}
	seen := false
	for _, e := range o.StatusHistory {
		if e.Status == status {
			seen = true
			break
		}
	}
	if !seen && len(o.StatusHistory) < MaxHistory {
		at := u.At.UTC()
		i := len(o.StatusHistory)
		for i > 0 && o.StatusHistory[i-1].At.After(at) {
			i--
		}
		o.StatusHistory = slices.Insert(o.StatusHistory, i, tasks.StatusEvent{Status: status, At: at})
		if change == Unchanged {
			change = Stale
		}
	}
	cur := rank(o.OutboundStatus)
	if r := rank(status); r > 0 && r > cur && !o.Final {
		o.OutboundStatus = status
		change = Advanced
		if r == 6 {
			o.Final = true
		}
		if status == StatusDelivered {
			at := u.At.UTC()
			o.DeliveredAt = &at
		}
	}
	if u.ErrorCode != 0 && o.DeliveryErrorCode == 0 && (status == StatusUndelivered || status == StatusFailed) {
		o.DeliveryErrorCode, o.DeliveryError = u.ErrorCode, u.ErrorMessage
		if change != Advanced {
			change = ErrorAdded
		}
	}
	return change
}
