package adminhttp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestProbe(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			_, _ = w.Write([]byte("ready\n\tand\x00 well\n"))
		case "/down":
			http.Error(w, "redis: connection refused", http.StatusServiceUnavailable)
		case "/moved":
			http.Redirect(w, r, "/ok", http.StatusFound)
		}
	}))
	t.Cleanup(srv.Close)
	withPassword := func(path string) *url.URL {
		u, _ := url.Parse(srv.URL + path)
		u.User = url.UserPassword("op", "hunter2")
		return u
	}
	reason, err := Probe(context.Background(), withPassword("/ok"), 2*time.Second)
	if err != nil || reason != "200 OK: ready and well" {
		t.Errorf("healthy: %q, %v", reason, err)
	}
	for path, want := range map[string]string{"/down": "503 Service Unavailable: redis: connection refused", "/moved": "302 Found"} {
		_, err := Probe(context.Background(), withPassword(path), 2*time.Second)
		if err == nil || !strings.HasPrefix(err.Error(), "unhealthy: GET ") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want unhealthy with %q", path, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: error shows the password: %v", path, err)
		}
	}
}
