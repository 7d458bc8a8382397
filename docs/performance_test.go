package docs_test

import (
	"strings"
	"testing"
)

// The bench's table in docs/performance.md sits between these two lines; `proxyq bench
// --write-docs` replaces what is between them, so each must be there exactly once, alone on its
// line, in this order.
const (
	benchBegin = "<!-- bench:begin -->"
	benchEnd   = "<!-- bench:end -->"
)

func TestPerformanceBenchMarkers(t *testing.T) {
	t.Parallel()
	doc := readRepoFile(t, "docs/performance.md")
	lines := strings.Split(doc, "\n")
	begin, end := -1, -1
	for i, line := range lines {
		switch {
		case line == benchBegin && begin == -1:
			begin = i
		case line == benchEnd && end == -1:
			end = i
		case strings.Contains(line, benchBegin) || strings.Contains(line, benchEnd):
			t.Errorf("docs/performance.md:%d: a bench marker must appear once, alone on its line: %q", i+1, line)
		}
	}
	if begin == -1 || end == -1 || end < begin {
		t.Fatalf("docs/performance.md needs %q and then %q, each alone on a line (found lines %d and %d)", benchBegin, benchEnd, begin+1, end+1)
	}
	between := strings.Join(lines[begin+1:end], "\n")
	// What bench.Report.Markdown writes: the run's date and machine, then the table.
	for _, want := range []string{"Measured by `proxyq bench` on ", "| # | measure | unit | proxyq | peer | ratio | target | met |"} {
		if !strings.Contains(between, want) {
			t.Errorf("docs/performance.md: the bench block lacks %q", want)
		}
	}
}
