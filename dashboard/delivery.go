package dashboard

import (
	"fmt"

	"github.com/proxyq/proxyq/tasks"
)

// deliverySummary is the delivery part of a sent message's summary line: what Twilio's status
// callbacks (or polls) said became of the SMS, with the delivery error when there is one. The
// record's status_history, delivered_at and delivery_error keys follow in the JSON below it.
func deliverySummary(o *tasks.Outcome) string {
	switch {
	case len(o.StatusHistory) == 0:
		return ""
	case o.DeliveryErrorCode != 0:
		return fmt.Sprintf("; %s: error %d %s", o.OutboundStatus, o.DeliveryErrorCode, o.DeliveryError)
	case o.Final:
		return "; " + o.OutboundStatus
	case o.OutboundStatus == "delivery-unknown":
		return "; delivery unknown (no final status from Twilio)"
	}
	return "; " + o.OutboundStatus + ", not final yet"
}
