// Package otelx turns proxyq's processes' OpenTelemetry tracing on or off from the standard
// OTEL_* environment variables, and holds the HTTP instrumentation they share.
//
// Tracing is off unless asked for: with none of OTEL_TRACES_EXPORTER,
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set (or with
// OTEL_SDK_DISABLED=true, or OTEL_TRACES_EXPORTER=none) Start installs nothing, and every span
// the other packages start is OpenTelemetry's no-op. When on, spans are batched and exported
// over OTLP (http/protobuf by default, http/json by OTEL_EXPORTER_OTLP_PROTOCOL; grpc only in a
// binary built with -tags otlpgrpc, which keeps gRPC's packages out of the default build) or
// printed to stderr (OTEL_TRACES_EXPORTER=console). The OTLP/HTTP client is this package's own
// (otlphttp.go, on the SDK's otlptrace exporter) and reads the exporter's other variables
// (headers, timeout, certificates, compression) here too; the SDK reads OTEL_TRACES_SAMPLER,
// OTEL_TRACES_SAMPLER_ARG, OTEL_BSP_* and OTEL_RESOURCE_ATTRIBUTES. A malformed value of a
// variable read here is an error naming it.
//
// Guarantees: the instrumentation here never records headers (the Authorization header
// included) or bodies; request URLs hold only resource SIDs, and span names replace the SIDs
// with placeholders. Trace context is never sent to Twilio: the client transport injects
// nothing, so our trace IDs stay ours.
//
// Trace context enters a process from the producer's ctx (tasks.Enqueuer), the traceparent and
// tracestate headers of an HTTP request (ServerHandler), or, for a command line, the
// TRACEPARENT and TRACESTATE variables (ContextFromEnv). It crosses Redis in the asynq task's
// headers (package tasks).
package otelx
