// Package sandbox turns the settings of `proxyq sandbox` into a configured fake Twilio API
// (package proxytest) and the handler that serves it: fault rates, removed participants and
// closed sessions, per-Service limits, accepted credentials, and signed status callbacks.
//
// Every setting is checked before the fake is built, and each error names the flag to fix;
// no error quotes a secret (a callback Auth Token or an account's secret).
package sandbox
