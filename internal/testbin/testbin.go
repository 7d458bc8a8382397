// Package testbin builds the real proxyq program for end-to-end tests, once per test binary,
// without -race: it is the program under test, not the test. Remove deletes it; call it from
// TestMain after the tests have run.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	once    sync.Once
	dir     string
	path    string
	buildEr error
)

// Proxyq returns the path of a freshly built `proxyq`, building it on first use. A build
// failure fails the test with the compiler's output.
func Proxyq(tb testing.TB) string {
	tb.Helper()
	once.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			buildEr = fmt.Errorf("the go tool is not on PATH: %w", err)
			return
		}
		if dir, err = os.MkdirTemp("", "proxyq-bin-"); err != nil {
			buildEr = err
			return
		}
		path = filepath.Join(dir, "proxyq")
		cmd := exec.Command(goTool, "build", "-o", path, "github.com/proxyq/proxyq/cmd/proxyq")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildEr = fmt.Errorf("go build ./cmd/proxyq: %v\n%s", err, out)
		}
	})
	if buildEr != nil {
		tb.Fatal(buildEr)
	}
	return path
}

// Remove deletes the built program, if any.
func Remove() {
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
}
