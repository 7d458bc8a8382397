package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/proxyq/proxyq/tasks"
)

// ConversationsPath is the route that enqueues one Twilio Conversations message
// (conversations:send_message; see docs/conversations.md).
const ConversationsPath = "/v1/conversation-messages"

// handleCreateConversation serves POST /v1/conversation-messages: the body is a
// tasks.ConversationPayload with an optional "queue"; the payload's own rules are
// tasks.DecodeConversation's (strict keys, every rule), so every producer path judges a
// Conversations message by the same code. An Idempotency-Key makes a repeat of the same message
// answer 200 with its status and the key with a different message (or a Proxy message) 409;
// nothing is ever enqueued twice. The status is read at GET /v1/message-interactions/{id},
// which serves both APIs' messages.
func (s *Server) handleCreateConversation(w http.ResponseWriter, r *http.Request) {
	key, keyProb := idempotencyKeyHeader(r)
	body, prob := readBody(w, r, s.cfg.MaxBodyBytes)
	if prob != nil {
		writeProblem(w, r, prob)
		return
	}
	obj, err := parseObject(body)
	if err != nil {
		writeProblem(w, r, newProblem(http.StatusBadRequest, ProblemMalformed, "the request body must be one JSON object: "+err.Error()))
		return
	}
	queue := tasks.DefaultQueue
	var errs []FieldError
	if raw, ok := obj["queue"]; ok {
		if json.Unmarshal(raw, &queue) != nil || !s.dec.queues[queue] {
			errs = append(errs, FieldError{Field: "queue", Rule: "must be one of the worker's queues: " + s.dec.queueList})
		}
		delete(obj, "queue")
	}
	payload, _ := json.Marshal(obj)
	p, err := tasks.DecodeConversation(payload)
	if err != nil {
		errs = append(errs, fieldErrors(err, "")...)
	}
	if p.AccountSID != "" && s.dec.known != nil && !s.dec.known(p.AccountSID) {
		errs = append(errs, FieldError{Field: "account_sid", Rule: "is not an account this deployment has credentials for"})
	}
	if len(errs) > 0 {
		prob = validationProblem("the message breaks the payload rules; nothing was enqueued", errs)
	}
	if prob = mergeKeyProblem(prob, keyProb); prob != nil {
		writeProblem(w, r, prob)
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	opts := append(append([]tasks.Option(nil), s.cfg.EnqueueOptions...), tasks.Queue(queue), via(r))
	if key != "" {
		opts = append(opts, tasks.IdempotencyKey(key))
		unlock := s.locks.lock(key)
		defer unlock()
	}
	res, err := s.enq.EnqueueConversation(ctx, p, opts...)
	if err != nil {
		s.enqueueFailed(w, r, err)
		return
	}
	if !res.Duplicate {
		s.accepted(w, Accepted{ID: res.TaskID, Queue: res.Queue, State: "pending", Links: linksFor(res.TaskID)})
		return
	}
	info, err := s.findTask(ctx, res.TaskID)
	if err != nil && !errors.Is(err, tasks.ErrNotFound) {
		s.unavailable(w, r, err)
		return
	}
	if info == nil || info.Type != tasks.TypeSendConversationMessage || info.Queue != queue || !sameConversation(info.Payload, p) {
		sub := submitted{id: res.TaskID}
		if info != nil {
			sub.state = info.State.String()
		}
		writeProblem(w, r, keyConflict(sub))
		return
	}
	st, err := tasks.Lookup(ctx, s.insp, res.TaskID)
	if err != nil {
		s.unavailable(w, r, err)
		return
	}
	w.Header().Set("Location", messagePath(res.TaskID))
	w.Header().Set("Idempotent-Replayed", "true")
	writeJSON(w, http.StatusOK, Replayed{Status: st, Links: linksFor(res.TaskID)})
}

// sameConversation reports whether a stored payload is the same message as p: equal after
// decoding, a send_before the enqueue derived (SendWithin) not counting when p gave none.
func sameConversation(stored []byte, p tasks.ConversationPayload) bool {
	q, err := tasks.DecodeConversation(stored)
	if err != nil {
		return false
	}
	if p.SendBefore == nil {
		q.SendBefore = nil
	}
	a, _ := json.Marshal(q)
	b, _ := json.Marshal(p)
	return bytes.Equal(a, b)
}
