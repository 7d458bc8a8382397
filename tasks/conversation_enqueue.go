package tasks

import (
	"context"
	"time"

	"github.com/hibiken/asynq"
)

// EnqueueConversation validates and enqueues one Conversations message, with the guarantees of
// Enqueue: the idempotency key (IdempotencyKey) is the asynq task ID and is reserved across
// queues for both message types, so a key already used by a Proxy or a Conversations message
// returns that message with Duplicate set; an ordering_key takes the message's place in its
// lane (lanes are per queue and key, whichever API); SendWithin sets send_before. It returns a
// validation error or ErrPayloadTooLarge (nothing enqueued), a Redis error, or a Result.
//
// It is written beside Enqueue, over the same internals (the key reservation of reserve.go,
// the lane places of lane.go, the enqueue span), because prepare takes a Payload; folding the
// two into one prepare over both message types is phase 2's. EnqueueBatch does not take
// Conversations messages yet.
func (e *Enqueuer) EnqueueConversation(ctx context.Context, p ConversationPayload, opts ...Option) (Result, error) {
	pr, err := e.prepareConversation(p, e.now(), opts...)
	if err != nil {
		return Result{}, err
	}
	if p.OrderingKey == "" {
		return e.enqueue(ctx, pr)
	}
	// takeLanePlaces reads the ordering key only.
	places, err := e.takeLanePlaces(ctx, []Message{{Payload: Payload{OrderingKey: p.OrderingKey}}}, func(int) []asynq.Option { return pr.aopts })
	if err != nil {
		return Result{}, err
	}
	res, err := e.enqueue(ctx, pr)
	if err != nil {
		places.release(ctx, 0)
	}
	return res, err
}

// PrepareConversation validates a Conversations message and builds its asynq task without
// enqueuing it (as Prepare does for a Proxy message).
func (e *Enqueuer) PrepareConversation(p ConversationPayload, opts ...Option) (*asynq.Task, []asynq.Option, error) {
	pr, err := e.prepareConversation(p, e.now(), opts...)
	if err != nil {
		return nil, nil, err
	}
	return pr.task, pr.aopts, nil
}

// prepareConversation is prepare for a ConversationPayload: the same option rules and asynq
// options, the task of type TypeSendConversationMessage. (Its intent is left empty: only
// EnqueueBatch's same-message rule reads it.)
func (e *Enqueuer) prepareConversation(p ConversationPayload, now time.Time, opts ...Option) (prepared, error) {
	o := enqueueOptions{queue: DefaultQueue, retention: DefaultRetention, maxRetry: DefaultMaxRetry}
	for _, opt := range opts {
		opt(&o)
	}
	if o.idempotencyKey != "" {
		if err := ValidateIdempotencyKey(o.idempotencyKey); err != nil {
			return prepared{}, err
		}
	}
	if o.queue == "" {
		return prepared{}, &ValidationError{Field: "queue", Rule: "must not be empty"}
	}
	if o.processIn < 0 || o.sendWithin < 0 || o.retention < 0 || o.maxRetry < 0 {
		return prepared{}, &ValidationError{Field: "options", Rule: "durations and retry counts must not be negative"}
	}
	sendAt := now
	if !o.processAt.IsZero() {
		sendAt = o.processAt
	} else if o.processIn > 0 {
		sendAt = sendAt.Add(o.processIn)
	}
	if p.SendBefore == nil && o.sendWithin > 0 {
		t := sendAt.Add(o.sendWithin).UTC().Truncate(time.Millisecond)
		p.SendBefore = &t
	}
	if p.SendBefore != nil && !p.SendBefore.After(sendAt) {
		return prepared{}, &ValidationError{Field: "send_before", Rule: "must be after the scheduled send time"}
	}
	task, err := p.Task()
	if err != nil {
		return prepared{}, err
	}
	id := o.idempotencyKey
	if id == "" {
		id = newTaskID()
	}
	aopts := []asynq.Option{asynq.Queue(o.queue), asynq.MaxRetry(o.maxRetry), asynq.Timeout(DefaultTimeout),
		asynq.Retention(o.retention), asynq.TaskID(id)}
	if !o.processAt.IsZero() {
		aopts = append(aopts, asynq.ProcessAt(o.processAt))
	} else if o.processIn > 0 {
		aopts = append(aopts, asynq.ProcessIn(o.processIn))
	}
	return prepared{task: withOrigin(task, originHeader(now, o.via)), aopts: aopts, key: o.idempotencyKey, conversation: p.ConversationSID,
		enqueuedAt: now, life: messageLife(now, sendAt, p.SendBefore, o.retention)}, nil
}
