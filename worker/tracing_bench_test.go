package worker

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"

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
