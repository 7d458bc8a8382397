package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"go.uber.org/zap"

	"github.com/proxyq/proxyq/tasks"
)

// Links are the related URLs of a message.
type Links struct {
	Self string `json:"self"`
}

func linksFor(id string) Links { return Links{Self: messagePath(id)} }

func messagePath(id string) string { return "/v1/message-interactions/" + url.PathEscape(id) }

// Accepted is the 202 answer to a new message.
type Accepted struct {
	ID    string `json:"id"`
	Queue string `json:"queue"`
	State string `json:"state"` // pending, or scheduled when send_at is in the future
	Links Links  `json:"links"`
}

// Replayed is the 200 answer to a repeated POST: the existing message's Status plus links.
type Replayed struct {
	*tasks.Status
	Links Links `json:"links"`
}

// BatchResult is what became of one entry of a batch, in request order.
type BatchResult struct {
	Index int `json:"index"`
	// Status is 202 (enqueued), 200 (the key's message already existed and is the same, or
	// an earlier entry of this batch carries the same key and message: nothing new was
	// enqueued) or 409 (the key is held by a different message: only when
	// another request took the key while this batch was being enqueued).
	Status    int      `json:"status"`
	ID        string   `json:"id"`
	Queue     string   `json:"queue"`
	State     string   `json:"state,omitempty"`
	Duplicate bool     `json:"duplicate"`
	Links     Links    `json:"links"`
	Error     *Problem `json:"error,omitempty"`
}

// BatchResponse is the 200 answer to a batch.
type BatchResponse struct {
	Results []BatchResult `json:"results"`
}

func (s *Server) requestContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
}

// handleCreate serves POST /v1/message-interactions.
func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	key, keyProb := idempotencyKeyHeader(r)
	body, prob := readBody(w, r, s.cfg.MaxBodyBytes)
	if prob != nil {
		writeProblem(w, r, prob)
		return
	}
	m, prob := s.dec.single(body)
	if prob = mergeKeyProblem(prob, keyProb); prob != nil {
		writeProblem(w, r, prob)
		return
	}
	m.Key, m.Via = key, via(r)
	ctx, cancel := s.requestContext(r)
	defer cancel()

	if key == "" {
		now := s.now()
		res, err := s.enq.Enqueue(ctx, m.Payload, m.options(now, s.cfg.EnqueueOptions...)...)
		if err != nil {
			s.enqueueFailed(w, r, err)
			return
		}
		s.accepted(w, Accepted{ID: res.TaskID, Queue: res.Queue, State: newState(m, now), Links: linksFor(res.TaskID)})
		return
	}

	unlock := s.locks.lock(key)
	sub, err := s.submitKeyed(ctx, m)
	unlock()
	if err != nil {
		s.enqueueFailed(w, r, err)
		return
	}
	switch sub.status {
	case http.StatusAccepted:
		s.accepted(w, Accepted{ID: sub.id, Queue: sub.queue, State: sub.state, Links: linksFor(sub.id)})
	case http.StatusConflict:
		writeProblem(w, r, keyConflict(sub))
	default:
		st, err := tasks.Lookup(ctx, s.insp, sub.id)
		if err != nil {
			// Gone between the comparison and now (cancelled, retention over): still the
			// same message, so answer with what the comparison saw.
			if !errors.Is(err, tasks.ErrNotFound) {
				s.unavailable(w, r, err)
				return
			}
			st = &tasks.Status{ID: sub.id, Queue: sub.queue, State: sub.state}
		}
		w.Header().Set("Location", messagePath(sub.id))
		w.Header().Set("Idempotent-Replayed", "true")
		writeJSON(w, http.StatusOK, Replayed{Status: st, Links: linksFor(sub.id)})
	}
}

// mergeKeyProblem combines a header problem with the body's: a 422 lists both, otherwise the
// body's problem (415, 413, 400) comes first, as it would stop a client from getting further.
func mergeKeyProblem(body, key *Problem) *Problem {
	switch {
	case key == nil:
		return body
	case body == nil:
		return key
	case body.Status == http.StatusUnprocessableEntity:
		body.Errors = append(append([]FieldError(nil), key.Errors...), body.Errors...)
	}
	return body
}

func keyConflict(sub submitted) *Problem {
	p := newProblem(http.StatusConflict, ProblemKeyConflict,
		"this Idempotency-Key is already used by a different message; nothing was enqueued (use a new key for a new message)")
	p.ID, p.State, p.Errors = sub.id, sub.state, sub.diffs
	return p
}

func (s *Server) accepted(w http.ResponseWriter, a Accepted) {
	w.Header().Set("Location", a.Links.Self)
	writeJSON(w, http.StatusAccepted, a)
}

// enqueueFailed answers a failed enqueue: 422 for a rule the decoder did not catch (tasks
// re-validates), else 503 (Redis).
func (s *Server) enqueueFailed(w http.ResponseWriter, r *http.Request, err error) {
	if fe := fieldErrors(err, ""); fe != nil {
		writeProblem(w, r, validationProblem("the message breaks the payload rules; nothing was enqueued", fe))
		return
	}
	s.unavailable(w, r, err)
}

// unavailable answers 503 for a Redis failure (or a request that ran out of time). The
// error is logged, not sent: it may name internal addresses.
func (s *Server) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("redis operation failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
	w.Header().Set("Retry-After", "1")
	detail := "the queue store (Redis) did not answer; retry (with the same Idempotency-Key it is safe)"
	if errors.Is(err, errKeyChurn) {
		detail = err.Error()
	}
	writeProblem(w, r, newProblem(http.StatusServiceUnavailable, ProblemUnavailable, detail))
}

// handleBatch serves POST /v1/message-interactions:batch. Semantics (see doc.go): the whole
// batch is decoded and validated first, and the keys it carries are checked against existing
// messages; any broken rule is a 422 and any key held by a different message a 409, both
// listing every offending entry, and nothing is enqueued. Otherwise every entry is enqueued
// or recognised as already there, and the answer is 200 with one result per entry.
func (s *Server) handleBatch(w http.ResponseWriter, r *http.Request) {
	var keyProb *Problem
	if len(r.Header.Values(headerIdempotencyKey)) > 0 {
		keyProb = validationProblem("a batch has no key of its own; nothing was enqueued",
			[]FieldError{{Field: headerIdempotencyKey, Rule: "is not accepted on a batch: give each message an idempotency_key"}})
	}
	body, prob := readBody(w, r, s.cfg.MaxBodyBytes)
	if prob != nil {
		writeProblem(w, r, prob)
		return
	}
	msgs, prob := s.dec.batch(body)
	if prob = mergeKeyProblem(prob, keyProb); prob != nil {
		writeProblem(w, r, prob)
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()

	var keys []string
	for _, m := range msgs {
		if m.Key != "" {
			keys = append(keys, m.Key)
		}
	}
	unlock := s.locks.lock(keys...)
	defer unlock()

	// Phase 1: which keys are taken, and by the same message?
	var queues []string
	if len(keys) > 0 {
		var err error
		if queues, err = s.insp.Queues(); err != nil {
			s.unavailable(w, r, err)
			return
		}
	}
	results := make([]BatchResult, len(msgs))
	firstOf := firstWithKey(msgs)
	var conflicts []FieldError
	var fresh []int // entries to enqueue
	for i, m := range msgs {
		if firstOf[i] != i {
			continue // the same message as an earlier entry (the decoder checked): answered below
		}
		if m.Key == "" {
			fresh = append(fresh, i)
			continue
		}
		info, err := s.findTaskIn(ctx, queues, m.Key)
		switch {
		case errors.Is(err, tasks.ErrNotFound):
			fresh = append(fresh, i)
		case err != nil:
			s.unavailable(w, r, err)
			return
		default:
			sub := s.existing(info, m)
			if sub.status == http.StatusConflict {
				for _, d := range sub.diffs {
					conflicts = append(conflicts, FieldError{Field: fmt.Sprintf("messages[%d].%s", i, d.Field), Rule: d.Rule})
				}
				continue
			}
			results[i] = batchResult(i, sub)
		}
	}
	if len(conflicts) > 0 {
		p := newProblem(http.StatusConflict, ProblemKeyConflict,
			"some idempotency keys are already used by different messages (see errors); nothing was enqueued")
		p.Errors = conflicts
		writeProblem(w, r, p)
		return
	}

	// Phase 2: enqueue the rest together.
	now := s.now()
	batch := make([]tasks.Message, len(fresh))
	for j, i := range fresh {
		msgs[i].Via = via(r)
		batch[j] = tasks.Message{Payload: msgs[i].Payload, Options: msgs[i].options(now, s.cfg.EnqueueOptions...)}
	}
	res, err := s.enq.EnqueueBatch(ctx, batch)
	if err != nil {
		var be *tasks.BatchError
		if errors.As(err, &be) && be.Index < len(fresh) {
			if fe := fieldErrors(be.Err, fmt.Sprintf("messages[%d].", fresh[be.Index])); fe != nil {
				writeProblem(w, r, validationProblem("the batch breaks the rules below; nothing was enqueued", fe))
				return
			}
		}
		done := 0
		for _, rs := range res {
			if rs.TaskID != "" {
				done++
			}
		}
		s.log.Error("batch enqueue failed part-way", zap.Int("enqueued", done), zap.Int("batch", len(fresh)), zap.Error(err))
		w.Header().Set("Retry-After", "1")
		writeProblem(w, r, newProblem(http.StatusServiceUnavailable, ProblemUnavailable, fmt.Sprintf(
			"the queue store (Redis) failed after %d of %d new messages were enqueued; retrying the batch is safe for messages with an idempotency_key, the others may be enqueued twice",
			done, len(fresh))))
		return
	}
	for j, i := range fresh {
		m := msgs[i]
		if !res[j].Duplicate {
			results[i] = batchResult(i, submitted{status: http.StatusAccepted, id: res[j].TaskID, queue: res[j].Queue, state: newState(m, now)})
			continue
		}
		// Another request took the key between phase 1 and now: judge it like a single POST.
		sub, err := s.submitKeyed(ctx, m)
		if err != nil {
			s.unavailable(w, r, err)
			return
		}
		results[i] = batchResult(i, sub)
	}
	for i, f := range firstOf {
		if f != i {
			results[i] = repeatResult(i, results[f])
		}
	}
	writeJSON(w, http.StatusOK, BatchResponse{Results: results})
}

// firstWithKey maps each entry to the first entry with its idempotency key (itself when it is
// the first or has no key).
func firstWithKey(msgs []message) []int {
	firstOf := make([]int, len(msgs))
	seen := make(map[string]int, len(msgs))
	for i, m := range msgs {
		firstOf[i] = i
		if m.Key == "" {
			continue
		}
		if f, ok := seen[m.Key]; ok {
			firstOf[i] = f
		} else {
			seen[m.Key] = i
		}
	}
	return firstOf
}

// repeatResult answers an entry that repeats an earlier entry's key with the same message: it
// is that message, so it gets its result, as an existing message (200, duplicate).
func repeatResult(i int, first BatchResult) BatchResult {
	r := first
	r.Index, r.Duplicate = i, true
	if r.Status == http.StatusAccepted {
		r.Status = http.StatusOK
	}
	return r
}

func batchResult(i int, sub submitted) BatchResult {
	br := BatchResult{Index: i, Status: sub.status, ID: sub.id, Queue: sub.queue, State: sub.state,
		Duplicate: sub.status != http.StatusAccepted, Links: linksFor(sub.id)}
	if sub.status == http.StatusConflict {
		br.Error = keyConflict(sub)
		br.Error.Instance = messagePath(sub.id)
	}
	return br
}

// handleGet serves GET /v1/message-interactions/{id}: the same Status view as
// `proxyq status --json`.
func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ctx, cancel := s.requestContext(r)
	defer cancel()
	st, err := tasks.Lookup(ctx, s.insp, id)
	if err == nil {
		err = s.enq.ReadLane(ctx, st)
	}
	switch {
	case errors.Is(err, tasks.ErrNotFound):
		s.notFound(w, r, id)
	case err != nil:
		s.unavailable(w, r, err)
	default:
		writeJSON(w, http.StatusOK, st)
	}
}

// handleDelete serves DELETE /v1/message-interactions/{id}: the guard first (a send may be in
// flight: 409), then tasks.Cancel, answering with the status the message had before.
func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ctx, cancel := s.requestContext(r)
	defer cancel()
	if s.guard != nil {
		if err := s.guard(ctx, id); err != nil {
			s.log.Info("cancel refused by send guard", zap.String("task_id", id), zap.Error(err))
			p := newProblem(http.StatusConflict, ProblemNotCancelable,
				"the message may be being sent or already sent, so it can no longer be cancelled")
			p.ID = id
			writeProblem(w, r, p)
			return
		}
	}
	st, err := tasks.Cancel(ctx, s.insp, id)
	switch {
	case err == nil:
		s.log.Info("message cancelled", zap.String("task_id", id), zap.String("queue", st.Queue), zap.String("state", st.State))
		if lerr := s.enq.LeaveLane(ctx, st); lerr != nil {
			// The lane's next check finds the task gone and skips it.
			s.log.Warn("cancelled message still in its lane until the next check", zap.String("task_id", id), zap.Error(lerr))
		}
		writeJSON(w, http.StatusOK, st)
	case errors.Is(err, tasks.ErrNotFound):
		s.notFound(w, r, id)
	case errors.Is(err, tasks.ErrNotCancelable):
		p := newProblem(http.StatusConflict, ProblemNotCancelable,
			"the message is being sent, was sent, or has finished, so it can no longer be cancelled")
		p.ID = id
		if st != nil {
			p.State = st.State
			if st.Outcome != nil && st.Outcome.State == tasks.OutcomeUnknown {
				p.Detail = "the last attempt may have reached Twilio (outcome unknown), so the message can no longer be cancelled"
			}
		}
		writeProblem(w, r, p)
	default:
		s.unavailable(w, r, err)
	}
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request, id string) {
	p := newProblem(http.StatusNotFound, ProblemNotFound,
		"no message with this id: never enqueued, cancelled, or past its retention period")
	p.ID = id
	writeProblem(w, r, p)
}

// handleOpenAPI serves the embedded OpenAPI description.
func (s *Server) handleOpenAPI(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(openAPISpec)
}

// Health is the body of the probe answers.
type Health struct {
	Status string `json:"status"`
}

// handleHealth serves GET /healthz: the process is up. It touches nothing else, so a Redis
// outage does not get the process restarted.
func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, Health{Status: "ok"})
}

// handleReady serves GET /readyz: 200 when Redis answers and the server is not draining.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", "1")
	if s.draining.Load() {
		writeProblem(w, r, newProblem(http.StatusServiceUnavailable, ProblemUnavailable, "shutting down"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ReadyTimeout)
	defer cancel()
	if err := s.ready(ctx); err != nil {
		s.log.Warn("not ready", zap.Error(err))
		writeProblem(w, r, newProblem(http.StatusServiceUnavailable, ProblemUnavailable, "the queue store (Redis) does not answer"))
		return
	}
	w.Header().Del("Retry-After")
	writeJSON(w, http.StatusOK, Health{Status: "ready"})
}

func (s *Server) ready(ctx context.Context) error {
	if s.cfg.ReadyCheck != nil {
		return s.cfg.ReadyCheck(ctx)
	}
	// The Inspector takes no context: run it aside and stop waiting at the deadline (the
	// call itself ends with go-redis's own read timeout).
	done := make(chan error, 1)
	go func() {
		_, err := s.insp.Queues()
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
