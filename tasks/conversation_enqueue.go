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
	s, err := schedule(now, p.SendBefore, opts)
	if err != nil {
		return prepared{}, err
	}
	p.SendBefore = s.sendBefore
	task, err := p.Task()
	if err != nil {
		return prepared{}, err
	}
	return prepared{task: withOrigin(task, originHeader(now, s.o.via)), aopts: s.aopts, key: s.o.idempotencyKey, conversation: p.ConversationSID,
		enqueuedAt: now, life: messageLife(now, s.sendAt, p.SendBefore, s.o.retention)}, nil
}
