// Package envconfig maps the environment to the components' configuration: one loader per
// component (Client, Worker, EnqueueOptions, EnqueuerOptions, Logger, Redis, ServiceLimits,
// API, Delivery, Callbacks, Accounts, DashboardCredentials), each reading its variables,
// applying the component's WithDefaults and Validate, and returning an error that names the
// variable to fix ("PROXYQ_CONCURRENCY must be between 1 and 10000, got 0"), never the
// component's Go field name. WorkerWithFlags and Serve assemble one command's whole
// configuration; WorkerWithFlags applies the worker's flags over their variables and names the
// flag in its errors.
//
// The components themselves never read the environment; only cmd/proxyq calls this package,
// so the mapping of each variable lives in one place. Every error is a configuration error:
// the caller reports it as a usage error.
package envconfig
