package tasks

import (
	"context"
	"slices"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func withRecorder(t *testing.T) (*tracetest.SpanRecorder, trace.Tracer) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	return rec, tp.Tracer("test")
}

// traceparentOf returns the span context a task's stored headers carry.
func traceparentOf(headers map[string]string) trace.SpanContext {
	return trace.SpanContextFromContext(ContextFromHeaders(context.Background(), headers))
}

// Enqueue starts a PRODUCER span under the caller's span and stores its context in the task's
// headers, where asynq keeps it; the payload is untouched (Decode's exact keys still hold).
func TestEnqueueCarriesTraceContextInHeaders(t *testing.T) {
	rec, tr := withRecorder(t)
	e := newEnv(t)
	ctx, parent := tr.Start(context.Background(), "caller")
	res, err := e.enq.Enqueue(ctx, validPayload(), IdempotencyKey("trace-1"), Queue("low"))
	parent.End()
	if err != nil {
		t.Fatal(err)
	}
	info := e.taskInfo(t, "low", "trace-1")
	storedPayload(t, info) // strict decode: no extra key
	sc := traceparentOf(info.Headers)

	var enq sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == SpanEnqueue {
			enq = s
		}
	}
	if enq == nil {
		t.Fatal("no proxyq.enqueue span")
	}
	if sc.TraceID() != parent.SpanContext().TraceID() || sc.SpanID() != enq.SpanContext().SpanID() {
		t.Errorf("task headers %v carry %v/%v, want the caller's trace and the enqueue span", info.Headers, sc.TraceID(), sc.SpanID())
	}
	if enq.Parent().SpanID() != parent.SpanContext().SpanID() || enq.SpanKind() != trace.SpanKindProducer {
		t.Errorf("enqueue span parent %v kind %v", enq.Parent().SpanID(), enq.SpanKind())
	}
	attrs := map[string]string{}
	for _, kv := range enq.Attributes() {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	if attrs["messaging.message.id"] != res.TaskID || attrs["messaging.destination.name"] != "low" || attrs["proxyq.duplicate"] != "false" {
		t.Errorf("enqueue span attributes %v", attrs)
	}
	for k, v := range attrs {
		if v == validPayload().Body {
			t.Errorf("attribute %s holds the body", k)
		}
	}

	// The same key again: a duplicate, said on its span; the stored task keeps its headers.
	if res, err := e.enq.Enqueue(ctx, validPayload(), IdempotencyKey("trace-1"), Queue("low")); err != nil || !res.Duplicate {
		t.Fatalf("second enqueue: %+v, %v", res, err)
	}
	last := rec.Ended()[len(rec.Ended())-1]
	if last.Name() != SpanEnqueue || !slices.Contains(last.Attributes(), attribute.Bool("proxyq.duplicate", true)) {
		t.Errorf("duplicate enqueue span: %s %v", last.Name(), last.Attributes())
	}
	if sc2 := traceparentOf(e.taskInfo(t, "low", "trace-1").Headers); !sc2.Equal(sc) {
		t.Errorf("a duplicate enqueue changed the stored trace context: %v, was %v", sc2, sc)
	}
}

// With tracing off (no SDK installed) and no trace in ctx, tasks get no trace headers (only
// their origin, origin.go); with a
// remote parent in ctx (an HTTP request's traceparent, TRACEPARENT), it is passed on as is.
func TestEnqueueWithoutTracing(t *testing.T) {
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(trace.NewNoopTracerProvider())
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	e := newEnv(t)
	if _, err := e.enq.Enqueue(context.Background(), validPayload(), IdempotencyKey("plain")); err != nil {
		t.Fatal(err)
	}
	if h := e.taskInfo(t, DefaultQueue, "plain").Headers; len(h) != 1 || ParseOrigin(h).Via != "go" {
		t.Errorf("task enqueued without any trace got headers %v, want its origin alone", h)
	}

	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": tp})
	if _, err := e.enq.Enqueue(ctx, validPayload(), IdempotencyKey("forwarded")); err != nil {
		t.Fatal(err)
	}
	if h := e.taskInfo(t, DefaultQueue, "forwarded").Headers; h[HeaderTraceparent] != tp {
		t.Errorf("forwarded traceparent = %q, want %q", h[HeaderTraceparent], tp)
	}
}

// A batch is one span with one PRODUCER child per message, each message's headers naming its
// own child; an invalid batch's span says which message failed and nothing is enqueued.
func TestEnqueueBatchSpans(t *testing.T) {
	rec, tr := withRecorder(t)
	e := newEnv(t)
	ctx, parent := tr.Start(context.Background(), "caller")
	msgs := []Message{{Payload: validPayload(), Options: []Option{IdempotencyKey("b-1")}}, {Payload: validPayload(), Options: []Option{IdempotencyKey("b-2")}}}
	if _, err := e.enq.EnqueueBatch(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	parent.End()
	var batch sdktrace.ReadOnlySpan
	children := map[trace.SpanID]bool{}
	for _, s := range rec.Ended() {
		switch s.Name() {
		case SpanEnqueueBatch:
			batch = s
		case SpanEnqueue:
			children[s.SpanContext().SpanID()] = true
		}
	}
	if batch == nil || batch.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Fatalf("batch span %v not under the caller", batch)
	}
	for _, s := range rec.Ended() {
		if s.Name() == SpanEnqueue && s.Parent().SpanID() != batch.SpanContext().SpanID() {
			t.Errorf("enqueue span not under the batch span")
		}
	}
	for _, id := range []string{"b-1", "b-2"} {
		sc := traceparentOf(e.taskInfo(t, DefaultQueue, id).Headers)
		if !children[sc.SpanID()] || sc.TraceID() != parent.SpanContext().TraceID() {
			t.Errorf("task %s headers name span %v, not its own enqueue span", id, sc.SpanID())
		}
	}

	bad := validPayload()
	bad.ParticipantSID = "nope"
	if _, err := e.enq.EnqueueBatch(ctx, []Message{{Payload: validPayload()}, {Payload: bad}}); err == nil {
		t.Fatal("invalid batch accepted")
	}
	last := rec.Ended()[len(rec.Ended())-1]
	if last.Name() != SpanEnqueueBatch || last.Status().Code.String() != "Error" {
		t.Errorf("invalid batch: last span %s status %v, want the batch span with an error", last.Name(), last.Status())
	}
}

func TestContextFromHeaders(t *testing.T) {
	if sc := traceparentOf(nil); sc.IsValid() {
		t.Error("nil headers gave a span context")
	}
	if sc := traceparentOf(map[string]string{"traceparent": "00-zz-garbage"}); sc.IsValid() {
		t.Error("malformed traceparent gave a span context")
	}
	sc := traceparentOf(map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "vendor=x"})
	if !sc.IsValid() || !sc.IsRemote() || sc.TraceState().Get("vendor") != "x" {
		t.Errorf("span context %v", sc)
	}
}
