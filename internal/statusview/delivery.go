package statusview

import (
	"fmt"
	"strings"
	"time"

	"github.com/proxyq/proxyq/delivery"
	"github.com/proxyq/proxyq/tasks"
)

// DeliveryRows adds the delivery timeline (status history, whether the status is final, the
// delivery time and error) to the view: the Rows `proxyq status` passes to Write.
func DeliveryRows(row func(name, value string), ts func(*time.Time) string, o *tasks.Outcome) {
	if len(o.StatusHistory) > 0 {
		parts := make([]string, 0, len(o.StatusHistory))
		for _, e := range o.StatusHistory {
			parts = append(parts, e.Status+" "+e.At.UTC().Format(time.RFC3339))
		}
		row("Status history", strings.Join(parts, ", "))
	}
	if o.State == tasks.OutcomeSent && o.InteractionSID != "" {
		switch {
		case o.Final:
			row("Delivery", "final ("+o.OutboundStatus+")")
		case o.OutboundStatus == delivery.StatusDeliveryUnknown:
			row("Delivery", "unknown: no final status from Twilio within PROXYQ_DELIVERY_MAX_AGE")
		default:
			row("Delivery", "not final yet")
		}
	}
	row("Delivered at", ts(o.DeliveredAt))
	if o.DeliveryErrorCode != 0 || o.DeliveryError != "" {
		row("Delivery error", strings.TrimSpace(fmt.Sprintf("%d %s", o.DeliveryErrorCode, o.DeliveryError)))
	}
}
