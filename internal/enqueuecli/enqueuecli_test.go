package enqueuecli

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/tasks/jsonl"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		f    Flags
		want string // "" : no error
	}{
		{"flag mode", Flags{Set: map[string]bool{"service": true}}, ""},
		{"file mode", Flags{File: "-", Set: map[string]bool{"file": true}}, ""},
		{"both", Flags{File: "x", Set: map[string]bool{"file": true, "body": true, "at": true}}, "--file cannot be combined with --body, --at"},
		{"file without path", Flags{Set: map[string]bool{"file": true}}, "--file needs a path"},
		{"nothing", Flags{Set: map[string]bool{}}, "no message"},
		{"negative", Flags{In: -1, Set: map[string]bool{"in": true}}, "must not be negative"},
		{"empty queue", Flags{Queue: " ", Set: map[string]bool{"body": true, "queue": true}}, "--queue must not be empty"},
	}
	for _, tt := range tests {
		err := tt.f.Check()
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: %v; want %q", tt.name, err, tt.want)
		}
	}
}

func TestProblemTextNamesTheFlagOrTheLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p    jsonl.Problem
		want string
	}{
		{jsonl.Problem{Field: "service_sid", Rule: "must match"}, "--service: must match"},
		{jsonl.Problem{Field: "media_url[2]", Rule: "must be absolute"}, "--media-url [2]: must be absolute"},
		{jsonl.Problem{Field: "other", Rule: "r"}, "other: r"},
		{jsonl.Problem{Line: 3, Field: "body", Rule: "is required"}, "line 3: body: is required"},
	}
	for _, tt := range tests {
		if got := ProblemText(tt.p); got != tt.want {
			t.Errorf("%+v: %q; want %q", tt.p, got, tt.want)
		}
	}
}

func TestReportCountsLinesAndBoundsItsOutput(t *testing.T) {
	t.Parallel()
	var problems []jsonl.Problem
	for i := 1; i <= maxShown+5; i++ {
		problems = append(problems, jsonl.Problem{Line: i, Field: "body", Rule: "is required"}, jsonl.Problem{Line: i, Field: "x", Rule: "y"})
	}
	var out bytes.Buffer
	err := Report(&out, problems, true)
	if err == nil || err.Error() != "1005 invalid line(s); nothing was enqueued" {
		t.Errorf("summary: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != maxShown+1 || lines[maxShown] != "… and 1010 more problems" {
		t.Errorf("%d lines, last %q", len(lines), lines[len(lines)-1])
	}
	out.Reset()
	if err := Report(&out, problems[:1], false); err == nil || err.Error() != "invalid message; nothing was enqueued" || out.String() != "line 1: body: is required\n" {
		t.Errorf("flag mode: %v, %q", err, out.String())
	}
}

func TestPrintResultsAndPartial(t *testing.T) {
	t.Parallel()
	results := []tasks.Result{{TaskID: "a", Queue: "default"}, {TaskID: "b<", Queue: "low", Duplicate: true}, {}}
	var out bytes.Buffer
	if err := PrintResults(&out, results[:2], false); err != nil || out.String() != "a\nb<\n" {
		t.Errorf("plain: %q, %v", out.String(), err)
	}
	out.Reset()
	want := `{"id":"a","queue":"default","duplicate":false}` + "\n" + `{"id":"b<","queue":"low","duplicate":true}` + "\n"
	if err := PrintResults(&out, results[:2], true); err != nil || out.String() != want {
		t.Errorf("json: %q, %v", out.String(), err)
	}
	cause := errors.New("redis down")
	if err := Partial(cause, results, 5); !errors.Is(err, cause) || !strings.Contains(err.Error(), "(2 of 5 messages were enqueued;") {
		t.Errorf("partial: %v", err)
	}
}
