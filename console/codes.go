package console

import (
	"net/url"
	"strings"

	"github.com/proxyq/proxyq/proxyclient"
)

// messagingCodes are the meanings of Twilio's Messaging delivery error codes (a Message's
// error_code when it ends undelivered or failed), from Twilio's error reference. The API
// codes of a refused create come from proxyclient's table.
var messagingCodes = map[int]string{
	30001: "queue overflow: too many messages queued for the sender",
	30002: "account suspended",
	30003: "unreachable destination handset: the phone is off, out of coverage or cannot take SMS",
	30004: "message blocked: the recipient blocked it or unsubscribed (STOP)",
	30005: "unknown destination handset: the number does not exist or is no longer in service",
	30006: "landline or unreachable carrier: the number cannot receive SMS",
	30007: "message filtered by the carrier (spam or content filtering)",
	30008: "unknown error from the carrier",
	30010: "message price exceeds the max price",
	30034: "message from an unregistered US A2P 10DLC number",
}

// codeMeaning is what a Twilio error code means, "" when neither table knows it.
func codeMeaning(code int) string {
	if m, ok := messagingCodes[code]; ok {
		return m
	}
	if info, ok := proxyclient.LookupCode(code); ok {
		return info.Meaning
	}
	return ""
}

// twilioURL links a SID to its page in Twilio's console, "" for a SID without one.
func twilioURL(sid string) string {
	switch {
	case strings.HasPrefix(sid, "SM"):
		return "https://console.twilio.com/us1/monitor/logs/sms/" + url.PathEscape(sid)
	case strings.HasPrefix(sid, "KI"), strings.HasPrefix(sid, "KC"), strings.HasPrefix(sid, "KP"), strings.HasPrefix(sid, "KS"):
		return "https://console.twilio.com/us1/develop/proxy/services"
	case strings.HasPrefix(sid, "IM"), strings.HasPrefix(sid, "CH"), strings.HasPrefix(sid, "IS"):
		return "https://console.twilio.com/us1/develop/conversations/manage/services"
	}
	return ""
}

// pathEscape escapes a message ID for a path segment (idempotency keys may hold : @ + =).
func pathEscape(s string) string { return url.PathEscape(s) }
