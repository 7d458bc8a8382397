package jsonl

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/tasks"
)

func TestLineReader(t *testing.T) {
	t.Parallel()
	const max = 8
	input := "short\r\n" + strings.Repeat("y", max) + "\n" + strings.Repeat("z", max+1) + "\n" +
		strings.Repeat("w", 200<<10) + "\n\nlast"
	lr := newLineReader(strings.NewReader(input), max)
	type line struct {
		text    string
		tooLong bool
	}
	var got []line
	for range 20 {
		l, tooLong, err := lr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, line{string(l), tooLong})
	}
	want := []line{{"short", false}, {strings.Repeat("y", max), false}, {"", true}, {"", true}, {"", false}, {"last", false}}
	if !slices.Equal(got, want) {
		t.Errorf("lines %v, want %v", got, want)
	}
}

// TestReadReportsEveryBadLine reads a file with good, blank and bad lines: the good ones come
// back with their line numbers, and every problem of every bad line is named.
func TestReadReportsEveryBadLine(t *testing.T) {
	t.Parallel()
	enq := newEnqueuer(t)
	const (
		ks = "KS00000000000000000000000000000001"
		kc = "KC00000000000000000000000000000001"
		kp = "KP00000000000000000000000000000001"
	)
	good := `{"service_sid":"` + ks + `","session_sid":"` + kc + `","participant_sid":"` + kp + `","body":"hi"}`
	input := "\xef\xbb\xbf" + good + "\n" +
		"\n" +
		`{"service_sid":"KSnope","session_sid":"` + kc + `","participant_sid":"` + kp + `"}` + "\n" +
		`[1,2]` + "\n" +
		`{"service_sid":"` + ks + `","session_sid":"` + kc + `","participant_sid":"` + kp + `","body":"x","send_at":"tomorrow"}` + "\n" +
		`{"service_sid":"` + ks + `","session_sid":"` + kc + `","participant_sid":"` + kp + `","body":"x","queue":"q","queue":"r"}` + "\n" +
		good + `{}` + "\n" +
		good
	msgs, lines, problems, err := Read(strings.NewReader(input), enq, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || !slices.Equal(lines, []int{1, 8}) || msgs[0].Payload.Body != "hi" {
		t.Errorf("messages %+v on lines %v, want the good lines 1 and 8", msgs, lines)
	}
	var got []string
	for _, p := range problems {
		got = append(got, p.String())
	}
	want := []string{
		"line 3: service_sid: must match ^KS[0-9a-fA-F]{32}$",
		"line 3: body: is required when media_url is empty (give a body, a media URL or both)",
		"line 4: payload: must be a JSON object",
		"line 5: send_at: must be an RFC 3339 time such as 2025-01-02T15:04:05Z",
		"line 6: queue: must appear only once",
		"line 7: payload: must be a single JSON object per line",
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestReadPassesOnReadErrors(t *testing.T) {
	t.Parallel()
	boom := errors.New("disk on fire")
	_, _, _, err := Read(io.MultiReader(strings.NewReader("{}\n"), errReader{boom}), newEnqueuer(t), nil)
	if !errors.Is(err, boom) {
		t.Errorf("err = %v, want %v", err, boom)
	}
}

// newEnqueuer is an Enqueuer whose Redis is never dialled: Read only prepares messages.
func newEnqueuer(t *testing.T) *tasks.Enqueuer {
	t.Helper()
	enq := tasks.NewEnqueuer(asynq.RedisClientOpt{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = enq.Close() })
	return enq
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
