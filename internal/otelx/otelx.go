package otelx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Config is what the environment says about tracing. Build it with ConfigFromEnv.
type Config struct {
	// Exporters are "otlp" and/or "console"; empty means tracing is off.
	Exporters []string
	// Protocol is the OTLP protocol: "http/protobuf" or "http/json" ("grpc" too in a binary
	// built with -tags otlpgrpc).
	Protocol string
	// EndpointURL is the full URL spans are sent to ("" = the exporter's default,
	// http://localhost:4318/v1/traces or localhost:4317).
	EndpointURL string
	// ServiceName is OTEL_SERVICE_NAME ("" = the caller's default, e.g. "proxyq-worker").
	ServiceName string
	// otlp holds the OTLP/HTTP exporter's other settings (headers, timeout, compression, TLS).
	otlp otlpSettings
}

// Enabled reports whether spans are exported.
func (c Config) Enabled() bool { return len(c.Exporters) > 0 }

// ConfigFromEnv reads the tracing variables through getenv. It returns an error naming the
// variable for a malformed value.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	get := func(k string) string { return strings.TrimSpace(getenv(k)) }
	var c Config
	if v := get("OTEL_SDK_DISABLED"); v != "" {
		disabled, err := strconv.ParseBool(v)
		if err != nil {
			return c, fmt.Errorf("OTEL_SDK_DISABLED=%q: want true or false", v)
		}
		if disabled {
			return c, nil
		}
	}
	c.ServiceName = get("OTEL_SERVICE_NAME")

	base, traces := get("OTEL_EXPORTER_OTLP_ENDPOINT"), get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	exporters := get("OTEL_TRACES_EXPORTER")
	if exporters == "" && (base != "" || traces != "") {
		exporters = "otlp" // an endpoint alone says where to send: that is asking for traces
	}
	for _, e := range strings.Split(exporters, ",") {
		switch e = strings.ToLower(strings.TrimSpace(e)); e {
		case "":
		case "none":
			if exporters != "none" {
				return Config{}, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: none cannot be combined with other exporters", exporters)
			}
			return Config{}, nil
		case "otlp", "console":
			c.Exporters = append(c.Exporters, e)
		default:
			return Config{}, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: want otlp, console or none", exporters)
		}
	}

	var protoVar string
	c.Protocol, protoVar = tracesOrGeneral(getenv, "PROTOCOL")
	switch c.Protocol {
	case "":
		c.Protocol = "http/protobuf"
	case "http/protobuf", "http/json":
	case "grpc":
		if newGRPCExporter == nil {
			return Config{}, fmt.Errorf("%s=%q: this proxyq exports spans over OTLP/HTTP only: want http/protobuf (the default) or http/json, "+
				"with the collector's HTTP port (4318); gRPC needs a binary built with -tags otlpgrpc", protoVar, c.Protocol)
		}
	default:
		return Config{}, fmt.Errorf("%s=%q: want %s", protoVar, c.Protocol, supportedProtocols())
	}

	// The exporters read these variables too, but from the process environment; reading them
	// here validates them and honours getenv.
	switch {
	case traces != "":
		if err := checkEndpoint(traces); err != nil {
			return Config{}, fmt.Errorf("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=%q: %v", traces, err)
		}
		c.EndpointURL = traces // used as is, by the specification
	case base != "":
		if err := checkEndpoint(base); err != nil {
			return Config{}, fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT=%q: %v", base, err)
		}
		c.EndpointURL = base
		if c.Protocol != "grpc" {
			c.EndpointURL = strings.TrimRight(base, "/") + "/v1/traces" // the signal's path
		}
	}

	if err := checkSampler(get("OTEL_TRACES_SAMPLER"), get("OTEL_TRACES_SAMPLER_ARG")); err != nil {
		return Config{}, err
	}
	if c.Protocol != "grpc" { // the gRPC exporter reads its own
		var err error
		if c.otlp, err = otlpSettingsFromEnv(getenv); err != nil {
			return Config{}, err
		}
	}
	return c, nil
}

func checkEndpoint(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("want an absolute http or https URL such as http://localhost:4318")
	}
	return nil
}

// checkSampler validates what the SDK would otherwise ignore with a log line.
func checkSampler(sampler, arg string) error {
	switch sampler {
	case "", "always_on", "always_off", "parentbased_always_on", "parentbased_always_off":
		return nil
	case "traceidratio", "parentbased_traceidratio":
		if arg == "" {
			return nil // the SDK's default ratio, 1.0
		}
		if r, err := strconv.ParseFloat(arg, 64); err != nil || r < 0 || r > 1 {
			return fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q: want a ratio between 0 and 1", arg)
		}
		return nil
	}
	return fmt.Errorf("OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio", sampler)
}

// Provider is the process's tracer provider; the zero value (tracing off) is valid.
type Provider struct {
	tp *sdktrace.TracerProvider
	// uploads are the OTLP/HTTP exports in flight; Shutdown ends them, so that none goes on
	// retrying (and reporting) after it returned.
	uploads *uploads
}

// Enabled reports whether spans are exported.
func (p *Provider) Enabled() bool { return p != nil && p.tp != nil }

// Start installs the global tracer provider described by cfg, with service.name
// cfg.ServiceName or defaultService and service.version version. Export errors go to onError
// (nil: dropped). With tracing off it installs nothing and returns a Provider whose Shutdown
// does nothing. console spans are written to console (the process's stderr: stdout may carry
// a command's output).
func Start(ctx context.Context, cfg Config, defaultService, version string, console io.Writer, onError func(error)) (*Provider, error) {
	if !cfg.Enabled() {
		return &Provider{}, nil
	}
	name := cfg.ServiceName
	if name == "" {
		name = defaultService
	}
	// Default reads OTEL_RESOURCE_ATTRIBUTES; ours come second and win.
	res, err := resource.Merge(resource.DefaultWithContext(ctx), resource.NewSchemaless(
		attribute.String("service.name", name), attribute.String("service.version", version)))
	if err != nil {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	inFlight := newUploads()
	for _, e := range cfg.Exporters {
		exp, err := newExporter(ctx, cfg, e, console, inFlight)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	if onError != nil {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(onError))
	}
	otel.SetTracerProvider(tp)
	// For code of the embedding process that uses the global propagator; proxyq's own
	// packages name theirs explicitly, so propagation works with tracing off too.
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return &Provider{tp: tp, uploads: inFlight}, nil
}

func newExporter(ctx context.Context, cfg Config, kind string, console io.Writer, inFlight *uploads) (sdktrace.SpanExporter, error) {
	if kind == "console" {
		return stdouttrace.New(stdouttrace.WithWriter(console))
	}
	if cfg.Protocol == "grpc" && newGRPCExporter != nil {
		exp, err := newGRPCExporter(ctx, cfg.EndpointURL)
		if err != nil {
			return nil, fmt.Errorf("OTLP grpc trace exporter: %w", err)
		}
		return exp, nil
	}
	exp, err := newOTLPHTTPExporter(ctx, cfg, cfg.otlp, inFlight)
	if err != nil {
		return nil, fmt.Errorf("OTLP http trace exporter: %w", err)
	}
	return exp, nil
}

// newGRPCExporter builds the OTLP gRPC exporter; it is nil unless the binary is built with
// -tags otlpgrpc (grpc.go). The default build leaves gRPC out: it was 66 of the binary's ~300
// non-standard packages, for one exporter, and OTLP over HTTP is the specification's default.
var newGRPCExporter func(ctx context.Context, endpointURL string) (sdktrace.SpanExporter, error)

// supportedProtocols is the list of OTEL_EXPORTER_OTLP_PROTOCOL values this build accepts.
func supportedProtocols() string {
	if newGRPCExporter != nil {
		return "http/protobuf, http/json or grpc"
	}
	return "http/protobuf or http/json (grpc needs a build with -tags otlpgrpc)"
}

// ShutdownTimeout bounds the final flush of Shutdown.
const ShutdownTimeout = 5 * time.Second

// Shutdown flushes the spans not exported yet and stops the exporters, within ShutdownTimeout.
// An export still retrying then is ended, and Shutdown waits for it to give up, so that it
// does not go on in the background of an exiting process. It does nothing with tracing off.
func (p *Provider) Shutdown() error {
	if !p.Enabled() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	err := p.tp.Shutdown(ctx)
	p.uploads.end()
	if err != nil {
		return fmt.Errorf("tracing: flush on exit: %w", err)
	}
	return nil
}
