package sid

import (
	"regexp"
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	hex32 := strings.Repeat("0123456789abcdef", 2)
	tests := []struct {
		name   string
		prefix string
		s      string
		want   bool
	}{
		{"lower hex", "KS", "KS" + hex32, true},
		{"upper hex", "KP", "KP" + strings.ToUpper(hex32), true},
		{"wrong prefix", "KS", "KC" + hex32, false},
		{"short", "KS", "KS" + hex32[:31], false},
		{"long", "KS", "KS" + hex32 + "0", false},
		{"non-hex digit", "AC", "AC" + hex32[:31] + "g", false},
		{"path character", "KC", "KC" + hex32[:31] + "/", false},
		{"empty", "KS", "", false},
		{"prefix only", "KS", "KS", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Valid(tt.prefix, tt.s); got != tt.want {
				t.Errorf("Valid(%q, %q) = %v, want %v", tt.prefix, tt.s, got, tt.want)
			}
			// Rule must describe exactly what Valid accepts.
			if got := regexp.MustCompile(Rule(tt.prefix)).MatchString(tt.s); got != tt.want {
				t.Errorf("Rule(%q) matches %q = %v, want %v", tt.prefix, tt.s, got, tt.want)
			}
		})
	}
}
