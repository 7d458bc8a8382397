package conversations

import "github.com/proxyq/proxyq/proxyclient"

// SID prefixes of the Conversations resources this package names. They live here until
// proxyq's SID rules move to one leaf package.
const (
	PrefixConversation = "CH" // a Conversation
	PrefixChatService  = "IS" // a Conversation Service (Chat Service)
	PrefixMessage      = "IM" // a Conversation Message
	PrefixMedia        = "ME" // a Media Content Service upload
	PrefixReceipt      = "DY" // a delivery receipt
	PrefixContent      = "HX" // a Content (template) resource
	PrefixParticipant  = "MB" // a Conversation Participant
)

// ValidSID reports whether s is prefix followed by 32 hex digits (e.g. ^CH[0-9a-fA-F]{32}$).
func ValidSID(prefix, s string) bool { return proxyclient.ValidSID(prefix, s) }

// SIDRule is the rule text for a SID field, as errors quote it.
func SIDRule(prefix string) string { return "must match ^" + prefix + "[0-9a-fA-F]{32}$" }

func invalid(field, rule string) error { return &proxyclient.ValidationError{Field: field, Rule: rule} }

func checkSID(field, prefix, s string) error {
	if !ValidSID(prefix, s) {
		return invalid(field, SIDRule(prefix))
	}
	return nil
}
