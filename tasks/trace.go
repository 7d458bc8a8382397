package tasks

import (
	"context"
	"errors"
	"maps"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Trace context travels with a message in the asynq task's headers (asynq ≥ 0.25 keeps them in
// the task message, so they survive retries, archiving and a run from the archive), under the
// W3C Trace Context names. They are optional: a task without them, or with a malformed
// traceparent, is processed the same, in a trace of its own. Producers in other languages that
// write asynq tasks directly may set them the same way; the payload is not involved.
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

// TracerName is the instrumentation scope of the spans this package starts.
const TracerName = "github.com/proxyq/proxyq/tasks"

// Span names of the producer side.
const (
	SpanEnqueue      = "proxyq.enqueue"       // PRODUCER, one per message
	SpanEnqueueBatch = "proxyq.enqueue_batch" // parent of a batch's proxyq.enqueue spans
)

// traceContext is named, not global: trace context crosses Redis whatever the process's global
// propagator is, so a worker with tracing on joins the trace of a producer that only forwards.
var traceContext propagation.TextMapPropagator = propagation.TraceContext{}

func tracer() trace.Tracer { return otel.Tracer(TracerName) }

// ContextFromHeaders returns ctx with the remote span context carried by a task's headers
// (Task.Headers, TaskInfo.Headers), or ctx unchanged when they carry none.
func ContextFromHeaders(ctx context.Context, headers map[string]string) context.Context {
	if len(headers) == 0 {
		return ctx
	}
	return traceContext.Extract(ctx, propagation.MapCarrier(headers))
}

// startEnqueueSpan starts the PRODUCER span of one message and returns the task carrying its
// context in its headers (task itself when ctx has no valid span context: tracing off and no
// caller trace), and a function that ends the span with the result.
func startEnqueueSpan(ctx context.Context, task *asynq.Task, aopts []asynq.Option) (*asynq.Task, func(Result, error)) {
	id, queue := taskIDAndQueue(aopts)
	ctx, span := tracer().Start(ctx, SpanEnqueue, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "asynq"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.operation.name", "enqueue"),
			attribute.String("messaging.destination.name", queue),
		))
	if id != "" {
		span.SetAttributes(attribute.String("messaging.message.id", id))
	}
	carrier := propagation.MapCarrier{}
	traceContext.Inject(ctx, carrier)
	if len(carrier) > 0 {
		headers := maps.Clone(task.Headers())
		if headers == nil {
			headers = map[string]string{}
		}
		maps.Copy(headers, carrier)
		task = asynq.NewTaskWithHeaders(task.Type(), task.Payload(), headers)
	}
	return task, func(res Result, err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "enqueue failed")
		} else {
			span.SetAttributes(attribute.String("messaging.message.id", res.TaskID),
				attribute.Bool("proxyq.duplicate", res.Duplicate))
		}
		span.End()
	}
}

// startBatchSpan starts the span that parents a batch's messages.
func startBatchSpan(ctx context.Context, n int) (context.Context, func(error)) {
	ctx, span := tracer().Start(ctx, SpanEnqueueBatch,
		trace.WithAttributes(attribute.String("messaging.system", "asynq"), attribute.Int("messaging.batch.message_count", n)))
	return ctx, func(err error) {
		if err != nil {
			var be *BatchError
			if errors.As(err, &be) {
				span.SetAttributes(attribute.Int("proxyq.invalid_index", be.Index))
			}
			span.RecordError(err)
			span.SetStatus(codes.Error, "batch not fully enqueued")
		}
		span.End()
	}
}
