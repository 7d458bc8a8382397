// Package validate checks the deployment files of proxyq without Docker, a
// Kubernetes cluster or Prometheus: docker-compose.yml, deploy/Dockerfile,
// deploy/kubernetes and deploy/monitoring are parsed with the same libraries
// their real consumers use (compose-go, BuildKit's Dockerfile parser, kustomize,
// the Kubernetes API types, Prometheus' rule and PromQL parsers) and held to the
// project's invariants (ports, grace periods, metric names, security context).
//
// It is a separate Go module so that these heavy dependencies never reach the
// product module. The package has no non-test code; run it with
//
//	cd deploy/validate && go test ./...
//
// The tests read only files of this repository, through paths relative to this
// directory, and write only to t.TempDir().
package validate
