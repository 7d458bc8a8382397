package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/tasks"
)

// Tracing. Each run of a message (one asynq task run) is a CONSUMER span, proxyq.attempt, the
// child of the producer's span whose context the task's headers carry (tasks.HeaderTraceparent):
// every attempt of a message, retries and a run from the archive included, lands in the trace
// of the code that enqueued it. A task without trace context starts a trace of its own.
//
// Under it: proxyq.limiter.wait, proxyq.ledger.* (the Redis scripts that take, begin, record and
// release the message), proxyq.reconcile, and the HTTP CLIENT spans of the requests to Twilio,
// which come from the proxyclient's transport (otelx.ClientTransport, wired by cmd/proxyq).
//
// What a span may hold: SIDs, task ID, queue, counts, outcome, Twilio's error code and HTTP
// status. Never the body, media URLs, credentials, or Twilio's error message (it may quote the
// recipient); error descriptions are built from codes, or from our own errors, which name
// fields and rules, never values.

// TracerName is the instrumentation scope of the worker's spans.
const TracerName = "github.com/proxyq/proxyq/worker"

// Span names.
const (
	SpanAttempt         = "proxyq.attempt"
	SpanLimiterWait     = "proxyq.limiter.wait"
	SpanLedgerAcquire   = "proxyq.ledger.acquire"
	SpanLedgerBeginSend = "proxyq.ledger.begin_send"
	SpanLedgerRecord    = "proxyq.ledger.record"
	SpanLedgerRelease   = "proxyq.ledger.release"
	SpanReconcile       = "proxyq.reconcile"
	SpanStatusCallback  = "proxyq.status_callback"
)

// Attribute keys of the worker's spans (besides OpenTelemetry's messaging.* and http.*).
const (
	AttrServiceSID     = attribute.Key("proxyq.service_sid")
	AttrSessionSID     = attribute.Key("proxyq.session_sid")
	AttrParticipantSID = attribute.Key("proxyq.participant_sid")
	AttrRetryCount     = attribute.Key("proxyq.retry_count") // failed runs before this one (asynq's count)
	AttrAttempt        = attribute.Key("proxyq.attempt")     // POSTs made for the message so far (the outcome's "attempts")
	AttrOutcome        = attribute.Key("proxyq.outcome")     // sent, retried, rate_limited, permanent, unknown, reconciled, expired, invalid, duplicate
	AttrInteractionSID = attribute.Key("proxyq.interaction_sid")
	AttrTwilioCode     = attribute.Key("proxyq.twilio.error_code")
	AttrNext           = attribute.Key("proxyq.next") // what asynq is told: done, retry, archive
	AttrRetryIn        = attribute.Key("proxyq.retry_in_ms")
)

func tracer() trace.Tracer { return otel.Tracer(TracerName) }

// Tracing off costs next to nothing. Until a program installs a tracer provider
// (otel.SetTracerProvider), the global one is OpenTelemetry's default, whose spans record
// nothing; yet otel.Tracer takes a lock and a map lookup, and span options and attribute lists
// are built, for every span of every run. So while the default is in place, spans start from
// a tracer looked up once and with no attributes, and a span that does not record (the API's
// contract: it drops whatever is set on it) is given none. A span that records all the same
// (Go auto-instrumentation hooks the default's spans) gets its attributes once started.
// The run's own span is always started (only starting it tells whether it records); a step
// under a run's span that does not record starts none, since its span would only repeat the
// parent's span context, which the step's context carries already.
// With a provider installed, every span starts exactly as before, attributes and all.
var (
	defaultTracerProvider = otel.GetTracerProvider()
	defaultTracer         = sync.OnceValue(func() trace.Tracer { return defaultTracerProvider.Tracer(TracerName) })
	// attemptKind is startAttempt's option list when tracing is off, built once.
	attemptKind = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}
)

// tracingOff reports whether the global tracer provider is still OpenTelemetry's default.
// (Comparing interfaces cannot panic here: the default's dynamic type is a pointer.)
func tracingOff() bool { return otel.GetTracerProvider() == defaultTracerProvider }

// startAttempt starts the span of one run of a message, in the trace its headers carry; the
// caller ends it with endAttempt.
func startAttempt(ctx context.Context, t *asynq.Task, id, queue string) (context.Context, trace.Span) {
	retried, _ := asynq.GetRetryCount(ctx)
	ctx = tasks.ContextFromHeaders(ctx, t.Headers())
	if tracingOff() {
		ctx, span := defaultTracer().Start(ctx, SpanAttempt, attemptKind...)
		if span.IsRecording() {
			span.SetAttributes(attemptAttrs(id, queue, retried)...)
		}
		return ctx, span
	}
	return tracer().Start(ctx, SpanAttempt, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attemptAttrs(id, queue, retried)...))
}

func attemptAttrs(id, queue string, retried int) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("messaging.system", "asynq"),
		attribute.String("messaging.operation.type", "process"),
		attribute.String("messaging.destination.name", queue),
		attribute.String("messaging.message.id", id),
		AttrRetryCount.Int(retried),
	}
}

// endAttempt records what asynq is told and ends the run's span.
func endAttempt(span trace.Span, err error) {
	if !span.IsRecording() {
		span.End()
		return
	}
	var rl *retryLater
	switch {
	case err == nil:
		span.SetAttributes(AttrNext.String("done"))
		span.SetStatus(codes.Ok, "")
	case errors.Is(err, asynq.SkipRetry):
		span.SetAttributes(AttrNext.String("archive"))
		span.SetStatus(codes.Error, safeDescription(err))
	case errors.As(err, &rl):
		span.SetAttributes(AttrNext.String("retry"), attribute.Bool("proxyq.failure", rl.Failure))
		if rl.After > 0 {
			span.SetAttributes(AttrRetryIn.Int64(rl.After.Milliseconds()))
		}
		if rl.Failure {
			span.SetStatus(codes.Error, safeDescription(err))
		}
	default:
		span.SetAttributes(AttrNext.String("retry"), attribute.Bool("proxyq.failure", true))
		span.SetStatus(codes.Error, safeDescription(err))
	}
	span.End()
}

// safeDescription describes err for a span status: a Twilio error by its code and HTTP status
// only (Twilio's message may quote the recipient), anything else by its text, which in this
// program names fields, rules, SIDs and URL paths, never message content.
func safeDescription(err error) string {
	var apiErr *proxyclient.Error
	if errors.As(err, &apiErr) {
		return fmt.Sprintf("Twilio error %d, HTTP %d", apiErr.Code, apiErr.StatusCode)
	}
	return err.Error()
}

// traceMessage puts the message's SIDs on the run's span.
func traceMessage(span trace.Span, p *tasks.Payload) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(AttrServiceSID.String(p.ServiceSID), AttrSessionSID.String(p.SessionSID),
		AttrParticipantSID.String(p.ParticipantSID))
}

// traceOutcome puts an attempt's outcome on the run's span (called with its log line).
func traceOutcome(span trace.Span, outcome, interactionSID string, posts int, err error) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(AttrOutcome.String(outcome), AttrAttempt.Int(posts))
	if interactionSID != "" {
		span.SetAttributes(AttrInteractionSID.String(interactionSID))
	}
	var apiErr *proxyclient.Error
	if errors.As(err, &apiErr) {
		span.SetAttributes(AttrTwilioCode.Int(apiErr.Code), attribute.Int("http.response.status_code", apiErr.StatusCode))
	}
}

// traceResult marks the moment the outcome record is written, with the record's fields that
// are safe to show (not its error text).
func traceResult(span trace.Span, o *tasks.Outcome) {
	if !span.IsRecording() {
		return
	}
	attrs := []attribute.KeyValue{attribute.String("proxyq.outcome.state", string(o.State)), AttrAttempt.Int(o.Attempts),
		attribute.Bool("proxyq.outcome.reconciled", o.Reconciled)}
	if o.InteractionSID != "" {
		attrs = append(attrs, AttrInteractionSID.String(o.InteractionSID))
	}
	if o.MessageSID != "" {
		attrs = append(attrs, AttrMessageSID.String(o.MessageSID))
	}
	if o.ErrorCode != 0 {
		attrs = append(attrs, AttrTwilioCode.Int(o.ErrorCode))
	}
	span.AddEvent("proxyq.outcome_recorded", trace.WithAttributes(attrs...))
}

// step is the span of one step of a run (limiter wait, a ledger script, reconciliation); a
// zero step has none.
type step struct{ span trace.Span }

func startStep(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, step) {
	if tracingOff() {
		if !trace.SpanFromContext(ctx).IsRecording() {
			// Nothing records (the run's span would, were its spans hooked): the step's span
			// would only carry its parent's span context, which ctx already carries.
			return ctx, step{}
		}
		ctx, span := defaultTracer().Start(ctx, name)
		if span.IsRecording() {
			span.SetAttributes(attrs...)
		}
		return ctx, step{span}
	}
	ctx, span := tracer().Start(ctx, name, trace.WithAttributes(attrs...))
	return ctx, step{span}
}

// end ends the step; err marks it failed, except an account limit, which is an answer.
func (s step) end(err error, attrs ...attribute.KeyValue) {
	if s.span == nil {
		return // not started (startStep)
	}
	if !s.span.IsRecording() {
		s.span.End()
		return
	}
	s.span.SetAttributes(attrs...)
	var limited *LimitedError
	switch {
	case err == nil:
	case errors.As(err, &limited):
		s.span.SetAttributes(attribute.Bool("proxyq.limited", true), attribute.String("proxyq.limit", limited.Reason))
	default:
		s.span.SetStatus(codes.Error, safeDescription(err))
	}
	s.span.End()
}

// StartStatusCallbackSpan starts the span of a Twilio status callback about a message, for the
// callback receiver to end: a child of the message's producer span (its task headers, from
// asynq's TaskInfo.Headers), so it lands in the message's trace beside its attempts, with a
// link to the span of the incoming callback request when ctx has one. taskID and queue may be
// empty when the receiver does not know them; status is Twilio's outbound status (queued,
// sent, delivered, failed, …), never the message content.
func StartStatusCallbackSpan(ctx context.Context, headers map[string]string, taskID, queue, interactionSID, status string) (context.Context, trace.Span) {
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithTimestamp(time.Now())}
	attrs := []attribute.KeyValue{AttrInteractionSID.String(interactionSID), attribute.String("proxyq.outbound_status", status)}
	if taskID != "" {
		attrs = append(attrs, attribute.String("messaging.message.id", taskID))
	}
	if queue != "" {
		attrs = append(attrs, attribute.String("messaging.destination.name", queue))
	}
	opts = append(opts, trace.WithAttributes(attrs...))
	parent := ctx
	if msg := tasks.ContextFromHeaders(context.Background(), headers); trace.SpanContextFromContext(msg).IsValid() {
		if req := trace.SpanContextFromContext(ctx); req.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: req}))
		}
		parent = trace.ContextWithRemoteSpanContext(ctx, trace.SpanContextFromContext(msg))
	}
	return tracer().Start(parent, SpanStatusCallback, opts...)
}

func reconcileAttrs(res found) []attribute.KeyValue {
	return []attribute.KeyValue{attribute.Int("proxyq.reconcile.candidates", len(res.Candidates)),
		attribute.Bool("proxyq.reconcile.truncated", res.Inconclusive != "")}
}
