package bench

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sampleReport() *Report {
	return &Report{
		Machine: "linux/amd64, 2 CPUs (Test CPU @ 2.0GHz), 7.8 GiB memory, go1.26.8, redis 7.2.4",
		Date:    time.Date(2026, 12, 7, 23, 30, 0, 0, time.FixedZone("X", -2*3600)), // 2026-12-08 in UTC
		Took:    754 * time.Second,
		Rows: []Row{
			{Scenario: 1, Measure: "throughput", Unit: "msgs/s", Proxyq: 1234.5, Peer: 1000, Ratio: 1.2345, Target: "≥ 0.9", Met: met(true)},
			{Scenario: 3, Measure: "sends per message", Unit: "", Proxyq: 1, Peer: math.NaN(), Ratio: math.NaN(), Target: "exactly 1", Met: met(false)},
			{Scenario: 4, Measure: "memory", Unit: "MiB", Proxyq: 12.34, Peer: 9.5, Ratio: 1.3},
		},
	}
}

func TestMarkdown(t *testing.T) {
	got := sampleReport().Markdown()
	want := "Measured by `proxyq bench` on 2026-12-08, on linux/amd64, 2 CPUs (Test CPU @ 2.0GHz), 7.8 GiB memory, go1.26.8, redis 7.2.4; the run took 12m34s.\n" +
		"\n" +
		"| # | measure | unit | proxyq | peer | ratio | target | met |\n" +
		"|---|---|---|---:|---:|---:|---|---|\n" +
		"| 1 | throughput | msgs/s | 1234 | 1000 | 1.23 | ≥ 0.9 | yes |\n" +
		"| 3 | sends per message |  | 1 | – | – | exactly 1 | **NO** |\n" +
		"| 4 | memory | MiB | 12.3 | 9.50 | 1.30 |  |  |\n"
	if got != want {
		t.Errorf("Markdown() =\n%s\nwant\n%s", got, want)
	}
}

func TestReplaceMarked(t *testing.T) {
	const table = "| a |\n|---|\n| 1 |\n"
	tests := []struct {
		name, doc, want, wantErr string
	}{
		{name: "empty section",
			doc:  "# Performance\n\n<!-- bench:begin -->\n<!-- bench:end -->\n\nAfter.\n",
			want: "# Performance\n\n<!-- bench:begin -->\n\n" + table + "\n<!-- bench:end -->\n\nAfter.\n"},
		{name: "old figures replaced, text around kept",
			doc:  "intro\n<!-- bench:begin -->\nold line 1\nold line 2\n<!-- bench:end -->\noutro",
			want: "intro\n<!-- bench:begin -->\n\n" + table + "\n<!-- bench:end -->\noutro"},
		{name: "replacing twice gives the same file",
			doc:  "<!-- bench:begin -->\n\n" + table + "\n<!-- bench:end -->\n",
			want: "<!-- bench:begin -->\n\n" + table + "\n<!-- bench:end -->\n"},
		{name: "CRLF and indented markers",
			doc:  "x\r\n  <!-- bench:begin -->\r\nold\r\n  <!-- bench:end -->\r\n",
			want: "x\r\n  <!-- bench:begin -->\r\n\n" + table + "\n  <!-- bench:end -->\r\n"},
		{name: "no markers", doc: "# Performance\n", wantErr: "no <!-- bench:begin --> and <!-- bench:end --> lines"},
		{name: "no end", doc: "<!-- bench:begin -->\n", wantErr: "no <!-- bench:end --> line after"},
		{name: "no begin", doc: "<!-- bench:end -->\n", wantErr: "no <!-- bench:begin --> line before"},
		{name: "reversed", doc: "<!-- bench:end -->\n<!-- bench:begin -->\n", wantErr: "comes before"},
		{name: "twice", doc: "<!-- bench:begin -->\n<!-- bench:end -->\n<!-- bench:begin -->\n<!-- bench:end -->\n", wantErr: "more than once"},
		{name: "marker inside a line is not a marker", doc: "see `<!-- bench:begin -->` and <!-- bench:end -->\n", wantErr: "no <!-- bench:begin --> and"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReplaceMarked([]byte(tt.doc), table)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if CheckMarkers([]byte(tt.doc)) == nil {
					t.Error("CheckMarkers accepts what ReplaceMarked refuses")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestWriteDocs(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "performance.md")
	if err := os.WriteFile(path, []byte("# Performance\n\n<!-- bench:begin -->\nold\n<!-- bench:end -->\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	r := sampleReport()
	if err := WriteDocs(path, r); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := "# Performance\n\n<!-- bench:begin -->\n\n" + r.Markdown() + "\n<!-- bench:end -->\n"; string(b) != want {
		t.Errorf("file =\n%s\nwant\n%s", b, want)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640 kept", st.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left files beside it: %v", entries)
	}

	bare := filepath.Join(dir, "bare.md")
	_ = os.WriteFile(bare, []byte("# no markers\n"), 0o644)
	if err := WriteDocs(bare, r); err == nil || !strings.Contains(err.Error(), bare) || !strings.Contains(err.Error(), DocsBegin) {
		t.Errorf("missing markers: err = %v, want it to name the file and the markers", err)
	}
	r.Quick = true
	if err := WriteDocs(path, r); err == nil || !strings.Contains(err.Error(), "quick") {
		t.Errorf("quick report: err = %v", err)
	}
	if err := WriteDocs(filepath.Join(dir, "missing.md"), sampleReport()); !os.IsNotExist(err) {
		t.Errorf("missing file: err = %v", err)
	}
}
