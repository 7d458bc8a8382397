package docs_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/proxyq/proxyq/conversations"
)

// TestConversationsCodeTable keeps docs/conversations.md's code table equal to the client's.
func TestConversationsCodeTable(t *testing.T) {
	t.Parallel()
	doc := readRepoFile(t, "docs/conversations.md")
	rows := 0
	for _, line := range strings.Split(doc, "\n") {
		if len(line) > 2 && line[0] == '|' && line[2] >= '0' && line[2] <= '9' {
			rows++
		}
	}
	for _, c := range conversations.Codes() {
		if !strings.Contains(doc, fmt.Sprintf("| %d | %s |", c.Code, c.Meaning)) {
			t.Errorf("docs/conversations.md has no row for %d (%s)", c.Code, c.Meaning)
		}
	}
	if rows != len(conversations.Codes()) {
		t.Errorf("docs/conversations.md has %d code rows, the client %d", rows, len(conversations.Codes()))
	}
}
