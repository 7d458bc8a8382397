package docs_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestLinks fails on any relative link of the repository's Markdown (README.md,
// CONTRIBUTING.md, docs/, deploy/, httpapi/, …) to a file that does not exist or to an #anchor
// that is not a heading of its file.
func TestLinks(t *testing.T) {
	t.Parallel()
	files := markdownFiles(t, repoRoot)
	for _, want := range []string{"README.md", "CONTRIBUTING.md", "docs/configuration.md"} {
		if !slices.Contains(files, want) {
			t.Fatalf("markdownFiles found no %s (found %v)", want, files)
		}
	}
	for _, p := range checkLinks(repoRoot, files) {
		t.Error(p)
	}
}

func TestSlug(t *testing.T) {
	t.Parallel()
	tests := []struct{ heading, want string }{
		{"The delivery guarantee", "the-delivery-guarantee"},
		{"Ordered lanes (`ordering_key`)", "ordered-lanes-ordering_key"},
		{"Payload schema (task type `proxy:send_interaction`)", "payload-schema-task-type-proxysend_interaction"},
		{"Delivery status: what reached the person", "delivery-status-what-reached-the-person"},
		{"Retries, deadlines, limits", "retries-deadlines-limits"},
		{"Limits: where the guarantee needs your help", "limits-where-the-guarantee-needs-your-help"},
		{"Other languages: `proxyq sandbox`", "other-languages-proxyq-sandbox"},
		{"Tracing (OpenTelemetry)", "tracing-opentelemetry"},
		{"See [the runbook](RUNBOOK.md) now", "see-the-runbook-now"},
		{"ProxyqUnknownOutcome", "proxyqunknownoutcome"},
		{"Sizing — 2× faster", "sizing--2-faster"},
	}
	for _, tt := range tests {
		if got := slug(tt.heading); got != tt.want {
			t.Errorf("slug(%q) = %q, want %q", tt.heading, got, tt.want)
		}
	}
}

// TestCheckLinksFindsBrokenLinks runs the checker on a small tree: it must accept good links
// and name each broken one.
func TestCheckLinksFindsBrokenLinks(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("README.md", strings.Join([]string{
		"# Top",
		"## Setup",
		"## Setup",
		"[ok](docs/a.md) [ok anchor](docs/a.md#first-part) [ok dup](#setup-1) [ok self](#top)",
		"[ok dir](docs) [ok web](https://example.com/x.md#nope) [ok html](docs/a.md#explicit)",
		"`[in code](missing.md)` and",
		"```",
		"[in a fence](missing.md)",
		"```",
		"[bad file](docs/missing.md)",
		"[bad anchor](docs/a.md#no-such-part)",
		"[bad self](#setup-2)",
		"[bad escape](../outside.md)",
		"[bad non-md anchor](docs/data.json#x)",
	}, "\n"))
	write("docs/a.md", "# A\n\n## First part\n\n<a id=\"explicit\"></a>\n\n[back](../README.md#setup)\n")
	write("docs/data.json", "{}")

	got := checkLinks(root, []string{"README.md", "docs/a.md"})
	wantLinks := []string{"docs/missing.md", "docs/a.md#no-such-part", "#setup-2", "../outside.md", "docs/data.json#x"}
	if len(got) != len(wantLinks) {
		t.Fatalf("checkLinks found %d problems, want %d:\n%s", len(got), len(wantLinks), strings.Join(got, "\n"))
	}
	for i, w := range wantLinks {
		if !strings.Contains(got[i], `"`+w+`"`) {
			t.Errorf("problem %d = %q, want it to name %q", i, got[i], w)
		}
	}
	if !strings.HasPrefix(got[0], "README.md:10:") {
		t.Errorf("problem 0 = %q, want it to start with README.md:10:", got[0])
	}
}
