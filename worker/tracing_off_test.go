package worker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel/trace"

	"github.com/proxyq/proxyq/tasks"
)

// BenchmarkTracingOff is the tracing work of one sent message's run with no tracer provider
// installed (the default): what every run pays when tracing is off.
func BenchmarkTracingOff(b *testing.B) {
	t := asynq.NewTask(tasks.TypeSendInteraction, nil)
	p := tasks.Payload{ServiceSID: "KS00000000000000000000000000000001", SessionSID: "KC00000000000000000000000000000001",
		ParticipantSID: "KP00000000000000000000000000000001"}
	o := &tasks.Outcome{State: tasks.OutcomeSent, InteractionSID: "KI00000000000000000000000000000001", Attempts: 1, RecordedAt: time.Now()}
	b.ReportAllocs()
	for b.Loop() {
		ctx, span := startAttempt(context.Background(), t, "id", "default")
		traceMessage(span, &p)
		for _, name := range []string{SpanLimiterWait, SpanLedgerAcquire, SpanLedgerRecord} {
			_, sp := startStep(ctx, name)
			sp.end(nil)
		}
		traceResult(span, o)
		traceOutcome(span, outcomeSent, o.InteractionSID, 1, nil)
		endAttempt(span, nil)
	}
}

// With tracing off, a step's context still carries the trace context the task's headers
// brought (the producer's), as the default tracer's spans would: requests made under it
// propagate the producer's trace.
func TestTracingOffKeepsProducerContext(t *testing.T) {
	if !tracingOff() {
		t.Skip("a tracer provider is installed")
	}
	const traceID, spanID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	task := asynq.NewTaskWithHeaders(tasks.TypeSendInteraction, nil,
		map[string]string{tasks.HeaderTraceparent: "00-" + traceID + "-" + spanID + "-01"})
	ctx, span := startAttempt(context.Background(), task, "id", "default")
	if span.IsRecording() {
		t.Skip("the default provider delegates to one an earlier test installed")
	}
	sctx, sp := startStep(ctx, SpanLedgerAcquire)
	sp.end(errors.New("x"))
	endAttempt(span, nil)
	for what, c := range map[string]context.Context{"run": ctx, "step": sctx} {
		sc := trace.SpanContextFromContext(c)
		if sc.TraceID().String() != traceID || sc.SpanID().String() != spanID {
			t.Errorf("%s context: span context %v, want the producer's %s/%s", what, sc, traceID, spanID)
		}
	}
}
