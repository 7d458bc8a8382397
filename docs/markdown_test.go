package docs_test

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// repoRoot is the repository's root, seen from this package's directory.
const repoRoot = ".."

// markdownFiles lists every Markdown file of the repository, as slash paths relative to root,
// skipping hidden directories (.git, …) and testdata.
func markdownFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(d.Name(), ".md") {
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// proseLines returns the lines of a Markdown document that are not inside fenced code blocks,
// with their 1-based line numbers; a fenced block's lines are left out.
func proseLines(doc string) (lines []string, numbers []int) {
	fence := ""
	for i, line := range strings.Split(doc, "\n") {
		trimmed := strings.TrimLeft(line, " ")
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) {
				fence = ""
			}
			continue
		}
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			fence = trimmed[:3]
			continue
		}
		lines = append(lines, line)
		numbers = append(numbers, i+1)
	}
	return lines, numbers
}

var (
	atxHeading  = regexp.MustCompile(`^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$`)
	htmlAnchor  = regexp.MustCompile(`<a\s+(?:name|id)="([^"]+)"`)
	inlineCode  = regexp.MustCompile("`[^`]*`")
	mdLink      = regexp.MustCompile(`!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	headingLink = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
)

// slug is GitHub's anchor for a heading's text: the rendered text (code spans and links
// reduced to their text) in lower case, every character that is not a letter, digit, space,
// hyphen or underscore dropped, and spaces turned into hyphens.
func slug(heading string) string {
	text := headingLink.ReplaceAllString(heading, "$1")
	text = strings.ReplaceAll(text, "`", "")
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// anchors returns every anchor a Markdown document defines: its headings' slugs (a repeated
// slug gets -1, -2, … as on GitHub) and explicit <a name|id="…"> anchors.
func anchors(doc string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	lines, _ := proseLines(doc)
	for _, line := range lines {
		for _, m := range htmlAnchor.FindAllStringSubmatch(line, -1) {
			out[m[1]] = true
		}
		m := atxHeading.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		s := slug(m[2])
		if n := seen[s]; n > 0 {
			out[fmt.Sprintf("%s-%d", s, n)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	}
	return out
}

// headings returns the text of every ATX heading of a document, in order.
func headings(doc string) []string {
	var out []string
	lines, _ := proseLines(doc)
	for _, line := range lines {
		if m := atxHeading.FindStringSubmatch(line); m != nil {
			out = append(out, m[2])
		}
	}
	return out
}

// link is one relative link of a Markdown file.
type link struct {
	line   int
	target string // as written
	file   string // the file it points to, slash path relative to the root ("" for "#anchor")
	anchor string // without '#', "" when none
}

// relativeLinks returns the links of the document at from (a slash path relative to the root)
// that point inside the repository: no scheme, no mailto. Links in code are not links.
func relativeLinks(from, doc string) []link {
	var out []link
	lines, numbers := proseLines(doc)
	for i, line := range lines {
		line = inlineCode.ReplaceAllString(line, "")
		for _, m := range mdLink.FindAllStringSubmatch(line, -1) {
			target := m[2]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			l := link{line: numbers[i], target: target}
			file, anchor, _ := strings.Cut(target, "#")
			l.anchor = anchor
			if file != "" {
				l.file = path.Clean(path.Join(path.Dir(from), file))
			}
			out = append(out, l)
		}
	}
	return out
}

// checkLinks reports every relative link of the given Markdown files (slash paths relative to
// root) whose file does not exist or whose #anchor is not a heading of that file.
func checkLinks(root string, files []string) []string {
	var problems []string
	docs := map[string]string{}
	read := func(p string) (string, error) {
		if d, ok := docs[p]; ok {
			return d, nil
		}
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(p)))
		if err != nil {
			return "", err
		}
		docs[p] = string(b)
		return docs[p], nil
	}
	for _, from := range files {
		doc, err := read(from)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", from, err))
			continue
		}
		for _, l := range relativeLinks(from, doc) {
			target := l.file
			if target == "" {
				target = from
			}
			if strings.HasPrefix(target, "../") || target == ".." {
				problems = append(problems, fmt.Sprintf("%s:%d: link %q leaves the repository", from, l.line, l.target))
				continue
			}
			if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(target))); err != nil {
				problems = append(problems, fmt.Sprintf("%s:%d: link %q: no file %s", from, l.line, l.target, target))
				continue
			}
			if l.anchor == "" {
				continue
			}
			if !strings.HasSuffix(target, ".md") {
				problems = append(problems, fmt.Sprintf("%s:%d: link %q: an anchor into %s, which is not Markdown, cannot be checked", from, l.line, l.target, target))
				continue
			}
			tdoc, err := read(target)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s:%d: link %q: %v", from, l.line, l.target, err))
				continue
			}
			if !anchors(tdoc)[l.anchor] {
				problems = append(problems, fmt.Sprintf("%s:%d: link %q: %s has no heading with anchor #%s", from, l.line, l.target, target, l.anchor))
			}
		}
	}
	return problems
}

// reachable returns the Markdown files reachable from start by following relative links.
func reachable(t *testing.T, root, start string) map[string]bool {
	t.Helper()
	seen := map[string]bool{start: true}
	queue := []string{start}
	for len(queue) > 0 {
		from := queue[0]
		queue = queue[1:]
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(from)))
		if err != nil {
			continue // a broken link: TestLinks names it
		}
		for _, l := range relativeLinks(from, string(b)) {
			if l.file != "" && strings.HasSuffix(l.file, ".md") && !seen[l.file] {
				seen[l.file] = true
				queue = append(queue, l.file)
			}
		}
	}
	return seen
}

func readRepoFile(t *testing.T, slashPath string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(slashPath)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
