//go:build otlpgrpc

package otelx

import (
	"context"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// With -tags otlpgrpc, OTEL_EXPORTER_OTLP_PROTOCOL=grpc exports over OTLP/gRPC. The tag is
// opt-in because the exporter alone pulls in gRPC (dozens of packages, megabytes of binary).
func init() {
	newGRPCExporter = func(ctx context.Context, endpointURL string) (sdktrace.SpanExporter, error) {
		var opts []otlptracegrpc.Option
		if endpointURL != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(endpointURL))
		}
		return otlptracegrpc.New(ctx, opts...)
	}
}
