package worker_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/proxyq/proxyq/internal/otelx"
	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/worker"
)

// Values that must never appear in a span.
const (
	secretBody  = "SECRET-BODY-7d1f: your code is 424242"
	secretMedia = "https://media.example.com/SECRET-MEDIA-93ab.png?sig=SECRETSIG"
	secretToken = "SECRET-TOKEN-5c2e0000000000000000"
)

// recordSpans installs an in-memory tracer provider as the global one for the test.
func recordSpans(t *testing.T) (*tracetest.SpanRecorder, trace.Tracer) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev); _ = tp.Shutdown(context.Background()) })
	return rec, tp.Tracer("test")
}

// tracingWorker starts a worker whose Proxy client has the HTTP instrumentation cmd/proxyq
// wires when tracing is on, against the fake, with fast retries.
func tracingWorker(t *testing.T, conn asynq.RedisConnOpt, fake *proxytest.Server, limiter ...worker.Limiter) {
	t.Helper()
	client, err := proxyclient.New(proxyclient.Config{
		AccountSID: "AC00000000000000000000000000000001", AuthToken: secretToken,
		BaseURL: fake.URL, HTTPTimeout: 2 * time.Second, WrapTransport: otelx.ClientTransport,
	})
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(worker.Config{
		Concurrency: 2, HTTPTimeout: 2 * time.Second, BackoffBase: 20 * time.Millisecond,
		BackoffMax: 100 * time.Millisecond, DelayedCheckInterval: 50 * time.Millisecond,
		PollInterval: 10 * time.Millisecond, ReconcileSettle: time.Second,
	}, worker.Deps{Redis: conn, API: client, Limiter: firstOr(limiter)})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Shutdown)
}

func firstOr(l []worker.Limiter) worker.Limiter {
	if len(l) > 0 {
		return l[0]
	}
	return nil
}

// limitOnce refuses the first request, as an account limit reached would, then grants all.
type limitOnce struct{ calls atomic.Int32 }

func (l *limitOnce) Acquire(ctx context.Context, account, holder string, maxWait time.Duration) (worker.Permit, error) {
	if l.calls.Add(1) == 1 {
		return nil, &worker.LimitedError{RetryIn: 10 * time.Millisecond, Reason: "in-flight cap"}
	}
	return worker.NoLimit{}.Acquire(ctx, account, holder, maxWait)
}

func tracedPayload(n int) tasks.Payload {
	return tasks.Payload{
		ServiceSID: "KS00000000000000000000000000000001", SessionSID: "KC00000000000000000000000000000001",
		ParticipantSID: fmt.Sprintf("KP%032d", n), Body: secretBody, MediaURLs: []string{secretMedia},
	}
}

// spansOf returns the ended spans of one trace, and them by name.
func spansOf(rec *tracetest.SpanRecorder, id trace.TraceID) ([]sdktrace.ReadOnlySpan, map[string][]sdktrace.ReadOnlySpan) {
	var all []sdktrace.ReadOnlySpan
	byName := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID() == id {
			all = append(all, s)
			byName[s.Name()] = append(byName[s.Name()], s)
		}
	}
	return all, byName
}

func attrOf(s sdktrace.ReadOnlySpan, key attribute.Key) attribute.Value {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// waitForSpans waits until cond holds over the trace's spans.
func waitForSpans(t *testing.T, rec *tracetest.SpanRecorder, id trace.TraceID, what string, cond func(map[string][]sdktrace.ReadOnlySpan) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, byName := spansOf(rec, id)
		if cond(byName) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 20s; spans of the trace: %v", what, names(byName))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func names(byName map[string][]sdktrace.ReadOnlySpan) map[string]int {
	out := map[string]int{}
	for n, s := range byName {
		out[n] = len(s)
	}
	return out
}

func hasOutcome(outcome string) func(map[string][]sdktrace.ReadOnlySpan) bool {
	return func(byName map[string][]sdktrace.ReadOnlySpan) bool {
		for _, s := range byName[worker.SpanAttempt] {
			if attrOf(s, worker.AttrOutcome).AsString() == outcome {
				return true
			}
		}
		return false
	}
}

// assertNothingSecret fails when any part of any span holds the body, a media URL or the
// credentials.
func assertNothingSecret(t *testing.T, spans []sdktrace.ReadOnlySpan) {
	t.Helper()
	forbidden := []string{secretBody, "SECRET-BODY", secretMedia, "SECRET-MEDIA", "SECRETSIG", secretToken, "SECRET-TOKEN", "Basic ", "media.example.com"}
	check := func(where, v string) {
		for _, f := range forbidden {
			if strings.Contains(v, f) {
				t.Errorf("%s holds %q: %q", where, f, v)
			}
		}
	}
	for _, s := range spans {
		check("span name", s.Name())
		check(s.Name()+" status", s.Status().Description)
		for _, kv := range s.Attributes() {
			check(s.Name()+" attribute "+string(kv.Key), kv.Value.Emit())
		}
		for _, ev := range s.Events() {
			check(s.Name()+" event", ev.Name)
			for _, kv := range ev.Attributes {
				check(s.Name()+" event attribute "+string(kv.Key), kv.Value.Emit())
			}
		}
		for _, kv := range s.Resource().Attributes() {
			check("resource attribute "+string(kv.Key), kv.Value.Emit())
		}
	}
}

// One trace joins the producer, the enqueue, every attempt — a 429 (not a failure), a 503
// (a failure, retried) and the successful send — and the outcome, across a producer with its
// own asynq client and a worker with its own asynq server on a real Redis. No span holds the
// body, the media URL or the credentials.
func TestTraceFollowsOneMessageThroughRetries(t *testing.T) {
	rec, testTracer := recordSpans(t)
	db := redistest.NewDB(t)
	fake := proxytest.NewServer(proxytest.Config{})
	t.Cleanup(fake.Close)
	must(t, fake.Fake.Inject(proxytest.Fault429, 1))
	must(t, fake.Fake.Inject(proxytest.Fault503, 1))

	enq := tasks.NewEnqueuer(db.ConnOpt()) // the producer's own asynq client
	t.Cleanup(func() { _ = enq.Close() })
	ctx, root := testTracer.Start(context.Background(), "producer request")
	res, err := enq.Enqueue(ctx, tracedPayload(1), tasks.IdempotencyKey("traced-1"))
	root.End()
	if err != nil {
		t.Fatal(err)
	}
	traceID := root.SpanContext().TraceID()

	tracingWorker(t, db.ConnOpt(), fake) // the worker's own asynq server
	waitForSpans(t, rec, traceID, "attempt with outcome sent", hasOutcome("sent"))

	all, byName := spansOf(rec, traceID)
	enqSpans := byName[tasks.SpanEnqueue]
	if len(enqSpans) != 1 {
		t.Fatalf("%d %s spans in the trace, want 1: %v", len(enqSpans), tasks.SpanEnqueue, names(byName))
	}
	enqSpan := enqSpans[0]
	if enqSpan.Parent().SpanID() != root.SpanContext().SpanID() || enqSpan.SpanKind() != trace.SpanKindProducer {
		t.Errorf("enqueue span: parent %v kind %v, want the producer's span %v and PRODUCER", enqSpan.Parent().SpanID(), enqSpan.SpanKind(), root.SpanContext().SpanID())
	}
	if got := attrOf(enqSpan, "messaging.message.id").AsString(); got != res.TaskID {
		t.Errorf("enqueue span messaging.message.id = %q, want %q", got, res.TaskID)
	}

	attempts := byName[worker.SpanAttempt]
	outcomes := map[string]sdktrace.ReadOnlySpan{}
	for _, a := range attempts {
		if a.Parent().SpanID() != enqSpan.SpanContext().SpanID() || a.SpanKind() != trace.SpanKindConsumer {
			t.Errorf("attempt span: parent %v kind %v, want the enqueue span and CONSUMER", a.Parent().SpanID(), a.SpanKind())
		}
		if got := attrOf(a, "messaging.message.id").AsString(); got != "traced-1" {
			t.Errorf("attempt messaging.message.id = %q", got)
		}
		if got := attrOf(a, worker.AttrParticipantSID).AsString(); got != tracedPayload(1).ParticipantSID {
			t.Errorf("attempt participant SID = %q", got)
		}
		if got := attrOf(a, "messaging.destination.name").AsString(); got != "default" {
			t.Errorf("attempt queue = %q", got)
		}
		outcomes[attrOf(a, worker.AttrOutcome).AsString()] = a
	}
	if len(attempts) != 3 {
		t.Errorf("%d attempts in the trace, want 3 (429, 503, sent): outcomes %v", len(attempts), outcomes)
	}
	limited, retried, sent := outcomes["rate_limited"], outcomes["retried"], outcomes["sent"]
	if limited == nil || retried == nil || sent == nil {
		t.Fatalf("want attempts with outcomes rate_limited, retried and sent, got %v", outcomes)
	}
	if got := attrOf(limited, worker.AttrNext).AsString(); got != "retry" || attrOf(limited, "proxyq.failure").AsBool() {
		t.Errorf("429 attempt: next %q failure %v, want a retry that is not a failure", got, attrOf(limited, "proxyq.failure").AsBool())
	}
	if got := attrOf(retried, worker.AttrTwilioCode).AsInt64(); got != 20503 {
		t.Errorf("503 attempt Twilio code = %d, want 20503", got)
	}
	if got := attrOf(sent, worker.AttrRetryCount).AsInt64(); got != 1 {
		t.Errorf("sent attempt retry_count = %d, want 1 (only the 503 was a failure)", got)
	}
	if got := attrOf(sent, worker.AttrAttempt).AsInt64(); got != 3 {
		t.Errorf("sent attempt proxyq.attempt = %d, want 3 POSTs", got)
	}
	created := fake.Fake.Created()
	if len(created) != 1 || attrOf(sent, worker.AttrInteractionSID).AsString() != created[0].SID {
		t.Errorf("sent attempt interaction SID = %q, fake created %v", attrOf(sent, worker.AttrInteractionSID).AsString(), created)
	}
	if attrOf(sent, worker.AttrNext).AsString() != "done" {
		t.Errorf("sent attempt next = %q, want done", attrOf(sent, worker.AttrNext).AsString())
	}
	var recorded bool
	for _, ev := range sent.Events() {
		if ev.Name == "proxyq.outcome_recorded" {
			recorded = true
		}
	}
	if !recorded {
		t.Error("sent attempt has no proxyq.outcome_recorded event")
	}

	// The children of each attempt: limiter wait, ledger, the POST with HTTP conventions.
	var posts []sdktrace.ReadOnlySpan
	for name, spans := range byName {
		// The fake serves under a path prefix; Twilio's path follows it.
		if strings.HasPrefix(name, "POST /") && strings.HasSuffix(name, "/v1/Services/{KS}/Sessions/{KC}/Participants/{KP}/MessageInteractions") {
			posts = append(posts, spans...)
		}
	}
	if len(posts) != 3 {
		t.Fatalf("%d POST spans, want 3: %v", len(posts), names(byName))
	}
	statusOf := map[int64]bool{}
	attemptIDs := map[trace.SpanID]bool{}
	for _, a := range attempts {
		attemptIDs[a.SpanContext().SpanID()] = true
	}
	for _, p := range posts {
		if p.SpanKind() != trace.SpanKindClient || !attemptIDs[p.Parent().SpanID()] {
			t.Errorf("POST span kind %v parent %v: want a CLIENT child of an attempt", p.SpanKind(), p.Parent().SpanID())
		}
		if attrOf(p, "http.request.method").AsString() != "POST" || !strings.HasPrefix(attrOf(p, "url.full").AsString(), fake.URL+"/v1/Services/KS") {
			t.Errorf("POST span lacks the HTTP conventions: %v", p.Attributes())
		}
		statusOf[attrOf(p, "http.response.status_code").AsInt64()] = true
	}
	for _, code := range []int64{429, 503, 201} {
		if !statusOf[code] {
			t.Errorf("no POST span with http.response.status_code %d (got %v)", code, statusOf)
		}
	}
	for _, name := range []string{worker.SpanLimiterWait, worker.SpanLedgerAcquire, worker.SpanLedgerRecord, worker.SpanLedgerRelease} {
		if len(byName[name]) == 0 {
			t.Errorf("no %s span in the trace: %v", name, names(byName))
		}
		for _, s := range byName[name] {
			if !attemptIDs[s.Parent().SpanID()] {
				t.Errorf("%s is not a child of an attempt", name)
			}
		}
	}
	assertNothingSecret(t, all)
}

// A message's trace context is in the task's headers, which asynq keeps when it archives the
// task (out of retries here) and when the task is run again from the archive: the re-run's
// attempt is in the same trace, under the same producer span.
func TestTraceSurvivesArchiveAndRunFromArchive(t *testing.T) {
	rec, testTracer := recordSpans(t)
	db := redistest.NewDB(t)
	fake := proxytest.NewServer(proxytest.Config{})
	t.Cleanup(fake.Close)
	must(t, fake.Fake.Inject(proxytest.Fault503, 1))

	enq := tasks.NewEnqueuer(db.ConnOpt())
	t.Cleanup(func() { _ = enq.Close() })
	ctx, root := testTracer.Start(context.Background(), "producer request")
	_, err := enq.Enqueue(ctx, tracedPayload(2), tasks.IdempotencyKey("traced-2"), tasks.MaxRetry(0))
	root.End()
	must(t, err)
	traceID := root.SpanContext().TraceID()

	tracingWorker(t, db.ConnOpt(), fake)
	insp := asynq.NewInspector(db.ConnOpt())
	t.Cleanup(func() { _ = insp.Close() })
	waitFor(t, 20*time.Second, func() bool {
		info, err := insp.GetTaskInfo("default", "traced-2")
		return err == nil && info.State == asynq.TaskStateArchived
	})
	info, err := insp.GetTaskInfo("default", "traced-2")
	must(t, err)
	if !strings.Contains(info.Headers[tasks.HeaderTraceparent], traceID.String()) {
		t.Fatalf("archived task headers %v do not carry trace %s", info.Headers, traceID)
	}
	must(t, insp.RunTask("default", "traced-2"))
	waitForSpans(t, rec, traceID, "attempt with outcome sent after the run from the archive", hasOutcome("sent"))

	_, byName := spansOf(rec, traceID)
	enqSpan := byName[tasks.SpanEnqueue][0]
	attempts := byName[worker.SpanAttempt]
	if len(attempts) != 2 {
		t.Fatalf("%d attempts, want 2 (503 then archived; sent after the run from the archive)", len(attempts))
	}
	for _, a := range attempts {
		if a.Parent().SpanID() != enqSpan.SpanContext().SpanID() {
			t.Errorf("attempt %q is not a child of the enqueue span", attrOf(a, worker.AttrOutcome).AsString())
		}
	}
}

// A task written without trace context (a producer that does not trace, another language)
// is processed as ever, its attempt the root of a trace of its own.
func TestTraceTaskWithoutTraceContext(t *testing.T) {
	rec, _ := recordSpans(t)
	db := redistest.NewDB(t)
	fake := proxytest.NewServer(proxytest.Config{})
	t.Cleanup(fake.Close)
	data, err := tracedPayload(3).Encode()
	must(t, err)
	client := asynq.NewClient(db.ConnOpt())
	t.Cleanup(func() { _ = client.Close() })
	// A malformed traceparent is ignored the same way.
	task := asynq.NewTaskWithHeaders(tasks.TypeSendInteraction, data, map[string]string{"traceparent": "00-garbage"})
	_, err = client.Enqueue(task, asynq.TaskID("untraced-3"))
	must(t, err)
	tracingWorker(t, db.ConnOpt(), fake)
	waitFor(t, 20*time.Second, func() bool { return fake.Fake.CreatesForBody(secretBody) == 1 })
	waitFor(t, 5*time.Second, func() bool {
		for _, s := range rec.Ended() {
			if s.Name() == worker.SpanAttempt && attrOf(s, "messaging.message.id").AsString() == "untraced-3" {
				if s.Parent().IsValid() {
					t.Errorf("attempt of a task without trace context has parent %v", s.Parent())
				}
				return true
			}
		}
		return false
	})
}

// A run that our own account limits turn away is an attempt with outcome rate_limited, not a
// failure, its limiter span saying which limit; the next run sends.
func TestTraceAccountLimitWait(t *testing.T) {
	rec, testTracer := recordSpans(t)
	db := redistest.NewDB(t)
	fake := proxytest.NewServer(proxytest.Config{})
	t.Cleanup(fake.Close)
	enq := tasks.NewEnqueuer(db.ConnOpt())
	t.Cleanup(func() { _ = enq.Close() })
	ctx, root := testTracer.Start(context.Background(), "producer request")
	_, err := enq.Enqueue(ctx, tracedPayload(4), tasks.IdempotencyKey("traced-4"))
	root.End()
	must(t, err)
	tracingWorker(t, db.ConnOpt(), fake, &limitOnce{})
	traceID := root.SpanContext().TraceID()
	waitForSpans(t, rec, traceID, "attempt with outcome sent", hasOutcome("sent"))
	_, byName := spansOf(rec, traceID)
	var limited sdktrace.ReadOnlySpan
	for _, a := range byName[worker.SpanAttempt] {
		if attrOf(a, worker.AttrOutcome).AsString() == "rate_limited" {
			limited = a
		}
	}
	if limited == nil || attrOf(limited, "proxyq.failure").AsBool() || attrOf(limited, worker.AttrNext).AsString() != "retry" {
		t.Fatalf("no rate_limited attempt that is a retry and not a failure: %v", names(byName))
	}
	var saw bool
	for _, w := range byName[worker.SpanLimiterWait] {
		if w.Parent().SpanID() == limited.SpanContext().SpanID() {
			saw = attrOf(w, "proxyq.limited").AsBool() && attrOf(w, "proxyq.limit").AsString() == "in-flight cap"
		}
	}
	if !saw {
		t.Error("the limited attempt's limiter span does not say proxyq.limited / proxyq.limit")
	}
}

// After an ambiguous answer (500 once the interaction was created) the next run reconciles
// instead of resending: its proxyq.reconcile span finds the one candidate through a GET to the
// list, and the attempt ends reconciled with the interaction's SID. One create in all.
func TestTraceReconciliation(t *testing.T) {
	rec, testTracer := recordSpans(t)
	db := redistest.NewDB(t)
	fake := proxytest.NewServer(proxytest.Config{})
	t.Cleanup(fake.Close)
	must(t, fake.Fake.Inject(proxytest.Fault500AfterCreate, 1))
	enq := tasks.NewEnqueuer(db.ConnOpt())
	t.Cleanup(func() { _ = enq.Close() })
	ctx, root := testTracer.Start(context.Background(), "producer request")
	_, err := enq.Enqueue(ctx, tracedPayload(5), tasks.IdempotencyKey("traced-5"))
	root.End()
	must(t, err)
	tracingWorker(t, db.ConnOpt(), fake)
	traceID := root.SpanContext().TraceID()
	waitForSpans(t, rec, traceID, "attempt with outcome reconciled", hasOutcome("reconciled"))
	all, byName := spansOf(rec, traceID)
	if n := len(fake.Fake.Created()); n != 1 {
		t.Fatalf("%d interactions created, want 1", n)
	}
	var unknown, reconciled sdktrace.ReadOnlySpan
	for _, a := range byName[worker.SpanAttempt] {
		switch attrOf(a, worker.AttrOutcome).AsString() {
		case "unknown":
			unknown = a
		case "reconciled":
			reconciled = a
		}
	}
	if unknown == nil || reconciled == nil {
		t.Fatalf("want an unknown then a reconciled attempt: %v", names(byName))
	}
	if got := attrOf(reconciled, worker.AttrInteractionSID).AsString(); got != fake.Fake.Created()[0].SID {
		t.Errorf("reconciled attempt interaction SID %q, want %q", got, fake.Fake.Created()[0].SID)
	}
	recSpans := byName[worker.SpanReconcile]
	if len(recSpans) != 1 || recSpans[0].Parent().SpanID() != reconciled.SpanContext().SpanID() ||
		attrOf(recSpans[0], "proxyq.reconcile.candidates").AsInt64() != 1 {
		t.Fatalf("want one proxyq.reconcile span with 1 candidate under the reconciled attempt, got %d", len(recSpans))
	}
	var list bool
	for _, s := range all {
		if strings.HasPrefix(s.Name(), "GET /") && s.Parent().SpanID() == recSpans[0].SpanContext().SpanID() {
			list = true
		}
	}
	if !list {
		t.Errorf("no GET list span under proxyq.reconcile: %v", names(byName))
	}
	assertNothingSecret(t, all)
}

// A status callback's span joins the message's trace under its producer span, linked to the
// callback request's own span.
func TestStartStatusCallbackSpan(t *testing.T) {
	rec, testTracer := recordSpans(t)
	producerCtx, producer := testTracer.Start(context.Background(), "producer")
	producer.End()
	_ = producerCtx
	// The headers a task gets: the producer span's W3C context.
	headers := map[string]string{tasks.HeaderTraceparent: fmt.Sprintf("00-%s-%s-01", producer.SpanContext().TraceID(), producer.SpanContext().SpanID())}

	reqCtx, req := testTracer.Start(context.Background(), "POST /callbacks")
	_, span := worker.StartStatusCallbackSpan(reqCtx, headers, "task-1", "default", "KI00000000000000000000000000000001", "delivered")
	span.End()
	req.End()

	var cb sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == worker.SpanStatusCallback {
			cb = s
		}
	}
	if cb == nil {
		t.Fatal("no status callback span")
	}
	if cb.SpanContext().TraceID() != producer.SpanContext().TraceID() || cb.Parent().SpanID() != producer.SpanContext().SpanID() {
		t.Errorf("callback span in trace %v under %v, want the message's trace under its producer span", cb.SpanContext().TraceID(), cb.Parent().SpanID())
	}
	if len(cb.Links()) != 1 || cb.Links()[0].SpanContext.SpanID() != req.SpanContext().SpanID() {
		t.Errorf("callback span links %v, want the request's span", cb.Links())
	}
	if got := attrOf(cb, "proxyq.outbound_status").AsString(); got != "delivered" {
		t.Errorf("outbound status %q", got)
	}

	// Without a message context (no headers) it is a plain child of the request.
	_, span = worker.StartStatusCallbackSpan(reqCtx, nil, "", "", "KI00000000000000000000000000000001", "failed")
	span.End()
	ended := rec.Ended()
	last := ended[len(ended)-1]
	if last.Parent().SpanID() != req.SpanContext().SpanID() || len(last.Links()) != 0 {
		t.Errorf("callback span without headers: parent %v links %v, want the request span and no link", last.Parent().SpanID(), last.Links())
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
