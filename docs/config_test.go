package docs_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// envName matches an environment variable name of ours or of the libraries whose variables
// proxyq reads. A name must end in a letter or digit and stand alone, so that a pattern such as
// PROXYQ_DELIVERY_* in a help text is not taken for a variable.
var envName = regexp.MustCompile(`\b(?:PROXYQ|OTEL|TWILIO)_[A-Z0-9_]*[A-Z0-9]\b|\bREDIS_URL\b|\bTRACEPARENT\b|\bTRACESTATE\b`)

// codeEnvNames returns every variable name found in a string literal of the non-test Go files
// under root, with one file that holds it. The whole tree is scanned, not one package: which
// package reads the environment may change, the reference must not.
func codeEnvNames(t *testing.T, root string) map[string]string {
	t.Helper()
	found := map[string]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			for _, name := range envName.FindAllString(s, -1) {
				if _, ok := found[name]; !ok {
					rel, _ := filepath.Rel(root, p)
					found[name] = filepath.ToSlash(rel)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

var (
	tableRow     = regexp.MustCompile(`^\|([^|]*)\|`)
	backtickName = regexp.MustCompile("`([^`]*)`")
)

// referenceRows returns, for each variable named in the first cell of a table row of doc, the
// line numbers of those rows.
func referenceRows(doc string) map[string][]int {
	rows := map[string][]int{}
	lines, numbers := proseLines(doc)
	for i, line := range lines {
		m := tableRow.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		for _, code := range backtickName.FindAllStringSubmatch(m[1], -1) {
			name := strings.SplitN(code[1], "=", 2)[0]
			if envName.FindString(name) == name {
				rows[name] = append(rows[name], numbers[i])
			}
		}
	}
	return rows
}

// TestConfigurationReference keeps docs/configuration.md equal to the code: every variable
// a string literal of the code names is a row of the reference, exactly once, and every
// PROXYQ_* row is a variable the code still names. (OTEL_* rows may list variables that the
// OpenTelemetry exporter reads itself, which our code never names.)
func TestConfigurationReference(t *testing.T) {
	t.Parallel()
	code := codeEnvNames(t, repoRoot)
	for _, must := range []string{"REDIS_URL", "PROXYQ_CONCURRENCY", "TWILIO_ACCOUNT_SID", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		if code[must] == "" {
			t.Fatalf("the scan of the code found no %s: is the walk broken? found %d names", must, len(code))
		}
	}
	rows := referenceRows(readRepoFile(t, "docs/configuration.md"))
	for name, file := range code {
		if len(rows[name]) == 0 {
			t.Errorf("%s is read by the code (%s) but has no row in docs/configuration.md", name, file)
		}
	}
	for name, lines := range rows {
		if len(lines) > 1 {
			t.Errorf("docs/configuration.md lists %s in %d rows (lines %v): one row per variable", name, len(lines), lines)
		}
		if strings.HasPrefix(name, "PROXYQ_") && code[name] == "" {
			t.Errorf("docs/configuration.md:%d documents %s, which no Go file of the repository names", lines[0], name)
		}
	}
}

// TestNoOtherConfigurationTable fails when a Markdown file other than the reference has a table
// row about an environment variable: that table would be a second copy to keep in step.
func TestNoOtherConfigurationTable(t *testing.T) {
	t.Parallel()
	for _, f := range markdownFiles(t, repoRoot) {
		if f == "docs/configuration.md" {
			continue
		}
		for name, lines := range referenceRows(readRepoFile(t, f)) {
			t.Errorf("%s:%d: a table row about %s; variables are described once, in docs/configuration.md: link there", f, lines[0], name)
		}
	}
}

// TestDocumentedNamesExist fails when any Markdown file mentions a PROXYQ_* variable that no Go
// file names: a renamed or removed variable left behind in the prose.
func TestDocumentedNamesExist(t *testing.T) {
	t.Parallel()
	code := codeEnvNames(t, repoRoot)
	for _, f := range markdownFiles(t, repoRoot) {
		lines, numbers := proseLines(readRepoFile(t, f))
		for i, line := range lines {
			for _, name := range envName.FindAllString(line, -1) {
				if strings.HasPrefix(name, "PROXYQ_") && code[name] == "" {
					t.Errorf("%s:%d: %s is not a variable of the code", f, numbers[i], name)
				}
			}
		}
	}
}

func TestReferenceRowsAndEnvName(t *testing.T) {
	t.Parallel()
	doc := strings.Join([]string{
		"| variable | default |",
		"|---|---|",
		"| `PROXYQ_A` | `1` |",
		"| `OTEL_X`, `OTEL_Y` (and `…_TRACES_…`) | — |",
		"| `OTEL_SDK_DISABLED=true` | off |",
		"| `proxyq.attempt` | a span, not a variable |",
		"```",
		"| `PROXYQ_IN_CODE_BLOCK` | x |",
		"```",
		"Prose with `PROXYQ_B` is not a row.",
	}, "\n")
	got := referenceRows(doc)
	var names []string
	for n := range got {
		names = append(names, n)
	}
	slices.Sort(names)
	if want := []string{"OTEL_SDK_DISABLED", "OTEL_X", "OTEL_Y", "PROXYQ_A"}; !slices.Equal(names, want) {
		t.Errorf("referenceRows = %v, want %v", names, want)
	}
	for s, want := range map[string][]string{
		"set PROXYQ_ADMIN_ADDR=:9091 or off":      {"PROXYQ_ADMIN_ADDR"},
		"PROXYQ_DELIVERY_* tune the callbacks":    nil,
		"REDIS_URL, TRACEPARENT and TWILIO_EDGE":  {"REDIS_URL", "TRACEPARENT", "TWILIO_EDGE"},
		"MY_REDIS_URL and XPROXYQ_A are not ours": nil,
	} {
		if got := envName.FindAllString(s, -1); !slices.Equal(got, want) {
			t.Errorf("envName in %q = %v, want %v", s, got, want)
		}
	}
}
