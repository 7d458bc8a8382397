package docs_test

import (
	"strings"
	"testing"
)

// movedSections lists every heading of README.md as it was before it became a front door
// (1,571 lines, December 2026) and where that section lives now. A reader who bookmarked one
// must still find it from the README.
var movedSections = []struct {
	heading string // as it was in the old README
	now     string // file#anchor
}{
	{"proxyq", "README.md#proxyq"},
	{"Fresh machine: two commands", "README.md#fresh-machine-two-commands"},
	{"How one message travels", "README.md#how-one-message-travels"},
	{"The delivery guarantee", "docs/guarantee.md#the-delivery-guarantee"},
	{"Retries, deadlines, limits", "docs/limits.md#retries-deadlines-limits"},
	{"Per-Service limits", "docs/limits.md#per-service-limits"},
	{"Many accounts", "docs/limits.md#many-accounts"},
	{"Twilio error codes", "docs/limits.md#twilio-error-codes"},
	{"Payload schema (task type `proxy:send_interaction`)", "docs/producing.md#payload-schema-task-type-proxysend_interaction"},
	{"Outcome record (the asynq task result)", "docs/producing.md#outcome-record-the-asynq-task-result"},
	{"Delivery status: what reached the person", "docs/delivery-status.md#delivery-status-what-reached-the-person"},
	{"Ordered lanes (`ordering_key`)", "docs/lanes.md#ordered-lanes-ordering_key"},
	{"Enqueuing", "docs/producing.md#enqueuing"},
	{"CLI reference", "docs/cli.md#cli-reference"},
	{"Configuration", "docs/configuration.md#configuration-reference"},
	{"Metrics and health", "docs/operations.md#metrics-and-health"},
	{"Tracing", "docs/operations.md#tracing"},
	{"Dashboard", "docs/operations.md#dashboard"},
	{"Redis Cluster and Sentinel", "docs/operations.md#redis-cluster-and-sentinel"},
	{"Replication lag and the send guarantee", "docs/operations.md#replication-lag-and-the-send-guarantee"},
	{"Running the Cluster and Sentinel tests", "docs/operations.md#running-the-cluster-and-sentinel-tests"},
	{"Deploying", "docs/operations.md#deploying"},
	{"Testing your own code against the fake", "docs/testing.md#testing-your-own-code-against-the-fake"},
	{"Performance", "docs/performance.md#performance"},
	{"Redis cost per message (scenarios 7 and 8)", "docs/performance.md#redis-cost-per-message"},
	{"Sizing (defaults: retention 72h, claims 72h after their day, no account limits)", "docs/performance.md#sizing"},
	{"Ordered lanes (scenario 9, `make chaos-lanes`)", "docs/performance.md#ordered-lanes-scenario-9"},
	{"Not done yet", "README.md#not-done-yet"},
}

// TestOldREADMESectionsReachable checks that every section of the old README has a home that
// exists and that a reader can reach from README.md by following links.
func TestOldREADMESectionsReachable(t *testing.T) {
	t.Parallel()
	if len(movedSections) != 28 {
		t.Fatalf("the old README had 28 headings, the table lists %d", len(movedSections))
	}
	fromREADME := reachable(t, repoRoot, "README.md")
	for _, s := range movedSections {
		file, anchor, _ := strings.Cut(s.now, "#")
		if !fromREADME[file] {
			t.Errorf("%q moved to %s, which no chain of links from README.md reaches", s.heading, file)
			continue
		}
		if !anchors(readRepoFile(t, file))[anchor] {
			t.Errorf("%q moved to %s, which has no heading with anchor #%s", s.heading, file, anchor)
		}
	}
}

// TestREADMEIsAFrontDoor keeps the README short and its two fresh-machine commands exact (the
// Makefile's first line and CI name them).
func TestREADMEIsAFrontDoor(t *testing.T) {
	t.Parallel()
	readme := readRepoFile(t, "README.md")
	if n := strings.Count(readme, "\n"); n > 300 {
		t.Errorf("README.md has %d lines; the front door stays at 300 or fewer: move depth to docs/", n)
	}
	for _, cmd := range []string{"go run ./cmd/proxyq dev --demo 50", "make test"} {
		if !strings.Contains(readme, "\n"+cmd+" ") {
			t.Errorf("README.md lost the fresh-machine command %q at the start of a line", cmd)
		}
	}
	if !strings.Contains(readRepoFile(t, "Makefile"), "`go run ./cmd/proxyq dev --demo 50` and `make test`") {
		t.Error("the Makefile's first line no longer names the README's two commands")
	}
	for _, page := range []string{"docs/guarantee.md", "docs/configuration.md", "docs/operations.md", "CONTRIBUTING.md"} {
		if !strings.Contains(readme, "("+page) {
			t.Errorf("README.md does not link %s", page)
		}
	}
	// Each docs page opens with its title and a paragraph saying what its reader came for.
	for _, f := range markdownFiles(t, repoRoot) {
		if !strings.HasPrefix(f, "docs/") {
			continue
		}
		lines := strings.Split(readRepoFile(t, f), "\n")
		if len(lines) < 3 || !strings.HasPrefix(lines[0], "# ") || lines[1] != "" || lines[2] == "" || strings.HasPrefix(lines[2], "#") || strings.HasPrefix(lines[2], "|") || strings.HasPrefix(lines[2], "```") {
			t.Errorf("%s must open with a title and then a paragraph saying what its reader comes for", f)
		}
	}
}
