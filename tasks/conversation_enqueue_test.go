package tasks

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestEnqueueConversation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	p := ConversationPayload{ConversationSID: testCH, Author: "clinic", Body: "hi", OrderingKey: "patient-7"}

	res, err := e.enq.EnqueueConversation(ctx, p, IdempotencyKey("conv-1"), SendWithin(time.Hour))
	if err != nil || res.Duplicate || res.TaskID != "conv-1" || res.Queue != DefaultQueue {
		t.Fatalf("EnqueueConversation = %+v, %v", res, err)
	}
	info := e.taskInfo(t, DefaultQueue, "conv-1")
	if info.Type != TypeSendConversationMessage {
		t.Errorf("type %q", info.Type)
	}
	stored, err := DecodeConversation(info.Payload)
	if err != nil || stored.ConversationSID != testCH || stored.SendBefore == nil {
		t.Fatalf("stored payload %+v, %v", stored, err)
	}
	if got := laneOrder(t, e.db.Client(t), DefaultQueue, "patient-7"); len(got) != 1 || got[0] != "conv-1" {
		t.Errorf("lane holds %v, want [conv-1]", got)
	}

	// The key is one message across queues and across APIs.
	res, err = e.enq.EnqueueConversation(ctx, p, IdempotencyKey("conv-1"), Queue("other"))
	if err != nil || !res.Duplicate || res.Queue != DefaultQueue {
		t.Errorf("same key on another queue = %+v, %v; want duplicate on %s", res, err, DefaultQueue)
	}
	proxy := Payload{ServiceSID: "KS" + testCH[2:], SessionSID: "KC" + testCH[2:], ParticipantSID: "KP" + testCH[2:], Body: "hi"}
	res, err = e.enq.Enqueue(ctx, proxy, IdempotencyKey("conv-1"), Queue("other"))
	if err != nil || !res.Duplicate {
		t.Errorf("Proxy message with the key of a Conversations one = %+v, %v; want duplicate", res, err)
	}

	// Nothing invalid is enqueued.
	before := e.keyCount(t)
	var ve ValidationErrors
	if _, err := e.enq.EnqueueConversation(ctx, ConversationPayload{ConversationSID: testCH, MediaSID: "https://x/y.jpg"}); !errors.As(err, &ve) {
		t.Errorf("media URL: %v", err)
	}
	if _, err := e.enq.EnqueueConversation(ctx, p, IdempotencyKey("a b")); err == nil {
		t.Error("bad idempotency key accepted")
	}
	if _, err := e.enq.EnqueueConversation(ctx, p, ProcessIn(2*time.Hour), SendWithin(-time.Second)); err == nil {
		t.Error("negative SendWithin accepted")
	}
	if after := e.keyCount(t); after != before {
		t.Errorf("refused messages left %d keys", after-before)
	}

	task, aopts, err := e.enq.PrepareConversation(ConversationPayload{ConversationSID: testCH, Body: "x"})
	if err != nil || task.Type() != TypeSendConversationMessage || len(aopts) == 0 {
		t.Errorf("PrepareConversation = %v, %v, %v", task, aopts, err)
	}
}
