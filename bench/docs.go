package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The marker lines between which WriteDocs puts the report in a Markdown file (docs/performance.md).
// Everything outside them is the document's own text and is kept byte for byte.
const (
	DocsBegin = "<!-- bench:begin -->"
	DocsEnd   = "<!-- bench:end -->"
)

// Markdown is the report as a documentation section: a line naming the machine and the date
// of the run, then the table. It never says "quick": WriteDocs refuses quick reports.
func (r *Report) Markdown() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "Measured by `proxyq bench` on %s, on %s", r.Date.UTC().Format("2006-01-02"), r.Machine)
	if r.Took > 0 {
		fmt.Fprintf(&sb, "; the run took %s", r.Took.Round(time.Second))
	}
	sb.WriteString(".\n\n")
	r.writeTable(&sb)
	return sb.String()
}

// CheckMarkers reports whether doc has one DocsBegin line followed by one DocsEnd line, so a
// caller can refuse before a long run rather than after it. The error names what is missing.
func CheckMarkers(doc []byte) error {
	_, _, err := markerSpan(doc)
	return err
}

// ReplaceMarked returns doc with the lines between the marker lines replaced by content (a
// newline is added if content lacks one). The markers stay; the rest of doc is unchanged.
func ReplaceMarked(doc []byte, content string) ([]byte, error) {
	start, end, err := markerSpan(doc)
	if err != nil {
		return nil, err
	}
	if content != "" && !strings.HasSuffix(content, "\n") {
		content += "\n"
	}
	out := make([]byte, 0, len(doc)+len(content))
	out = append(out, doc[:start]...)
	out = append(out, '\n') // blank lines around the table keep it a table in any Markdown renderer
	out = append(out, content...)
	out = append(out, '\n')
	return append(out, doc[end:]...), nil
}

// markerSpan finds the lines strictly between the DocsBegin line and the DocsEnd line.
func markerSpan(doc []byte) (start, end int, err error) {
	begin, finish := lineIndex(doc, DocsBegin), lineIndex(doc, DocsEnd)
	switch {
	case begin < 0 && finish < 0:
		return 0, 0, fmt.Errorf("no %s and %s lines: add both, on lines of their own, where the table goes", DocsBegin, DocsEnd)
	case begin < 0:
		return 0, 0, fmt.Errorf("no %s line before %s", DocsBegin, DocsEnd)
	case finish < 0:
		return 0, 0, fmt.Errorf("no %s line after %s", DocsEnd, DocsBegin)
	case finish < begin:
		return 0, 0, fmt.Errorf("%s comes before %s", DocsEnd, DocsBegin)
	case lineIndex(doc[begin+1:], DocsBegin) >= 0 || lineIndex(doc[finish+1:], DocsEnd) >= 0:
		return 0, 0, fmt.Errorf("%s or %s appears more than once: keep one pair", DocsBegin, DocsEnd)
	}
	start = begin + len(DocsBegin)
	for start < len(doc) && doc[start] != '\n' {
		start++ // trailing spaces or \r of the marker line stay with it
	}
	if start < len(doc) {
		start++ // and so does its newline
	}
	for finish > start && doc[finish-1] != '\n' {
		finish-- // the end marker's indentation stays with it
	}
	return start, finish, nil
}

// lineIndex is the offset of marker where it is alone on its line (surrounding spaces allowed),
// or -1.
func lineIndex(doc []byte, marker string) int {
	off := 0
	for _, line := range bytes.SplitAfter(doc, []byte("\n")) {
		if string(bytes.TrimSpace(line)) == marker {
			return off + bytes.Index(line, []byte(marker))
		}
		off += len(line)
	}
	return -1
}

// WriteDocs replaces the marked section of the Markdown file at path with r.Markdown(). The
// file is replaced whole (written beside it, then renamed), so a crash leaves the old one. It
// returns an error naming the file when it cannot be read or written, when the markers are
// missing, or when r is from a quick run (a smoke test, not figures to publish).
func WriteDocs(path string, r *Report) error {
	if r.Quick {
		return fmt.Errorf("%s: not writing a quick run's figures (a smoke test, not a measurement)", path)
	}
	doc, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := ReplaceMarked(doc, r.Markdown())
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	mode := os.FileMode(0o644)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if _, err := tmp.Write(out); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
