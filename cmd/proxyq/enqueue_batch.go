package main

import (
	"errors"
	"fmt"

	"github.com/proxyq/proxyq/tasks"
)

// batchProblems turns a batch check error from tasks into problems for the input lines
// (lines[i] is the line of message i; 0 in flag mode). A key repeated with a different
// message names both lines. nil for a nil error.
func batchProblems(err error, lines []int) []problem {
	if err == nil {
		return nil
	}
	var all tasks.BatchErrors
	if !errors.As(err, &all) {
		var one *tasks.BatchError
		if !errors.As(err, &one) {
			return []problem{{0, "payload", err.Error()}}
		}
		all = tasks.BatchErrors{one}
	}
	var out []problem
	for _, be := range all {
		line := 0
		if be.Index < len(lines) {
			line = lines[be.Index]
		}
		var reuse *tasks.KeyReuseError
		if errors.As(be.Err, &reuse) && reuse.First < len(lines) {
			out = append(out, problem{line, "idempotency_key", fmt.Sprintf(
				"repeats the key of line %d with a different message (%s); one key names one message",
				lines[reuse.First], tasks.DiffersText(reuse.Fields))})
			continue
		}
		out = append(out, problemsOf(line, be.Err)...)
	}
	return out
}
