package tasks

import (
	"go/build"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// modulePath is this module's import path; packages under it are followed, others are not.
const modulePath = "github.com/proxyq/proxyq"

// TestProducerImportsNoClientOrWorker keeps the producer contract light: a service that only
// enqueues imports tasks, and must not pull in the API client, the worker or anything built on
// them (the imports point cmd -> delivery, worker -> clients, tasks). It follows every import of
// this module's packages, transitively, without test files, as the Go build would.
func TestProducerImportsNoClientOrWorker(t *testing.T) {
	forbidden := []string{"proxyclient", "worker", "delivery", "accounts", "httpapi", "dashboard", "bench", "cmd"}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string][]string{} // package -> import chain from tasks
	var walk func(path string, chain []string)
	walk = func(path string, chain []string) {
		if _, ok := seen[path]; ok {
			return
		}
		chain = append(slices.Clip(chain), path)
		seen[path] = chain
		rel := strings.TrimPrefix(strings.TrimPrefix(path, modulePath), "/")
		for _, f := range forbidden {
			if rel == f || strings.HasPrefix(rel, f+"/") {
				t.Errorf("tasks imports %s (via %s); move what it needs into a leaf package such as internal/sid",
					path, strings.Join(chain, " -> "))
				return
			}
		}
		pkg, err := build.ImportDir(filepath.Join(root, filepath.FromSlash(rel)), 0)
		if err != nil {
			t.Fatalf("reading %s: %v", path, err)
		}
		for _, imp := range pkg.Imports {
			if imp == modulePath || strings.HasPrefix(imp, modulePath+"/") {
				walk(imp, chain)
			}
		}
	}
	walk(modulePath+"/tasks", nil)
	if len(seen) < 2 {
		t.Fatalf("followed only %v: the walk did not see tasks' imports", seen)
	}
}
