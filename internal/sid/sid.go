package sid

// Valid reports whether s is prefix followed by 32 hex digits, the shape of every Twilio SID
// (e.g. ^KS[0-9a-fA-F]{32}$). It checks without a regexp because payload validation runs on
// every run of every message.
func Valid(prefix, s string) bool {
	if len(s) != len(prefix)+32 || s[:len(prefix)] != prefix {
		return false
	}
	for i := len(prefix); i < len(s); i++ {
		ch := s[i]
		if !(ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'f' || ch >= 'A' && ch <= 'F') {
			return false
		}
	}
	return true
}

// Rule is the rule Valid checks, as a regular expression for error messages, e.g.
// "^KS[0-9a-fA-F]{32}$".
func Rule(prefix string) string { return "^" + prefix + "[0-9a-fA-F]{32}$" }
