// Package devmode is what `proxyq dev` adds around the production parts it runs in one
// process: the environment defaults that suit a laptop and the fake, the embedded Redis, the
// banner, and the demo batch (`--demo N`) with its live progress line and summary.
//
// cmd/proxyq builds the worker, the delivery wiring and the dashboard exactly as the worker
// and serve commands do and hands them the fake's constants from here; this package only
// orchestrates and reports. The demo's guarantee checks are real: a message created twice at
// the fake, a message left unfinished or one ending differently than the demo intended is an
// error from Demo.Run, so `dev --demo N --exit-after-demo` exits non-zero.
package devmode
