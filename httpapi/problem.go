package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/proxyq/proxyq/tasks"
)

// Problem types (RFC 9457 "type" URIs). Each names a section of httpapi/README.md that
// explains the problem and what to do about it. Clients should switch on Type and Status,
// never on Title or Detail.
const (
	problemBase = "https://github.com/proxyq/proxyq/blob/main/httpapi/README.md#"

	ProblemMalformed        = problemBase + "malformed-request"        // 400: body is not one JSON object
	ProblemUnauthorized     = problemBase + "unauthorized"             // 401: missing or unknown bearer token
	ProblemNotFound         = problemBase + "not-found"                // 404: no such route or message
	ProblemMethodNotAllowed = problemBase + "method-not-allowed"       // 405
	ProblemKeyConflict      = problemBase + "idempotency-key-conflict" // 409: key already used by another message
	ProblemNotCancelable    = problemBase + "not-cancelable"           // 409: being sent, sent, or finished
	ProblemTooLarge         = problemBase + "request-too-large"        // 413
	ProblemUnsupportedMedia = problemBase + "unsupported-media-type"   // 415
	ProblemValidation       = problemBase + "validation-error"         // 422: errors[] says which field broke which rule
	ProblemInternal         = problemBase + "internal-error"           // 500
	ProblemUnavailable      = problemBase + "unavailable"              // 503: Redis unreachable or not ready; retry
)

// FieldError is one rule one field of the request broke. Field is the JSON key as sent, with
// a path for nested values ("media_url[2]", "messages[3].body"), or a header name
// ("Idempotency-Key").
type FieldError struct {
	Field string `json:"field"`
	Rule  string `json:"rule"`
}

// Problem is an RFC 9457 problem details object, the body of every error response
// (Content-Type application/problem+json). ID and State are extension members.
type Problem struct {
	Type     string       `json:"type"`
	Title    string       `json:"title"`
	Status   int          `json:"status"`
	Detail   string       `json:"detail,omitempty"`
	Instance string       `json:"instance,omitempty"`
	Errors   []FieldError `json:"errors,omitempty"`
	// ID is the message concerned, for 409s about an existing message.
	ID string `json:"id,omitempty"`
	// State is that message's asynq state, for not-cancelable.
	State string `json:"state,omitempty"`
}

func (p *Problem) Error() string {
	if p.Detail != "" {
		return fmt.Sprintf("%d %s: %s", p.Status, p.Title, p.Detail)
	}
	return fmt.Sprintf("%d %s", p.Status, p.Title)
}

func newProblem(status int, typ, detail string) *Problem {
	return &Problem{Type: typ, Title: http.StatusText(status), Status: status, Detail: detail}
}

func validationProblem(detail string, errs []FieldError) *Problem {
	p := newProblem(http.StatusUnprocessableEntity, ProblemValidation, detail)
	p.Errors = errs
	return p
}

// fieldErrors converts the tasks package's validation errors, prefixing each field (e.g.
// "messages[3]."). It returns nil for any other error.
func fieldErrors(err error, prefix string) []FieldError {
	var many tasks.ValidationErrors
	var one *tasks.ValidationError
	switch {
	case errors.As(err, &many):
		out := make([]FieldError, 0, len(many))
		for _, e := range many {
			out = append(out, FieldError{Field: prefix + fieldName(e.Field), Rule: e.Rule})
		}
		return out
	case errors.As(err, &one):
		return []FieldError{{Field: prefix + fieldName(one.Field), Rule: one.Rule}}
	case errors.Is(err, tasks.ErrPayloadTooLarge):
		return []FieldError{{Field: prefix + "payload", Rule: fmt.Sprintf("must be at most %d bytes of JSON", tasks.MaxPayloadBytes)}}
	}
	return nil
}

// fieldName shows the empty JSON key (legal, and refused as unknown) as `""`, so every
// field error names something.
func fieldName(key string) string {
	if key == "" {
		return `""`
	}
	return key
}

// writeProblem sends p; Instance defaults to the request path.
func writeProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	if p.Instance == "" && r != nil {
		p.Instance = r.URL.Path
	}
	writeBody(w, p.Status, "application/problem+json", p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	writeBody(w, status, "application/json", v)
}

func writeBody(w http.ResponseWriter, status int, contentType string, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // an API, not HTML: keep "<token>" readable
	err := enc.Encode(v)     // appends the newline
	data := buf.Bytes()
	if err != nil {
		// Only our own types are written; this cannot happen short of a programming error.
		status, contentType = http.StatusInternalServerError, "application/problem+json"
		data = []byte(`{"type":"` + ProblemInternal + `","title":"Internal Server Error","status":500}` + "\n")
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(data)
}
