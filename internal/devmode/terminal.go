package devmode

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// IsTerminal reports whether w is a character device (a terminal), where the progress line
// can be redrawn in place.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Terminal redraws one progress line on stdout and keeps log lines (stderr, same screen) from
// being written into the middle of it. Its methods are no-ops on a nil *Terminal.
type Terminal struct {
	Out io.Writer // where the progress line is drawn

	mu   sync.Mutex
	line string
}

func (t *Terminal) Progress(line string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprint(t.Out, "\r\033[K"+line)
	t.line = line
}

// Clear ends the progress line, leaving its last state on screen.
func (t *Terminal) Clear() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.line != "" {
		fmt.Fprintln(t.Out)
		t.line = ""
	}
}

// LogWriter wraps the log output: the progress line is erased before a log line and drawn again
// after it.
func (t *Terminal) LogWriter(w io.Writer) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.line != "" {
			fmt.Fprint(t.Out, "\r\033[K")
		}
		n, err := w.Write(p)
		if t.line != "" {
			fmt.Fprint(t.Out, t.line)
		}
		return n, err
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
