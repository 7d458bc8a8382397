// Package enqueuecli is what `proxyq enqueue` does between reading its flags and enqueuing:
// it checks the combination of flags, builds the one message of flag mode, checks every
// message (fields, accounts, the batch's rules) before anything is enqueued, and prints the
// problems and the results. The JSON lines of --file are read by package tasks/jsonl.
//
// Guarantees: every message is checked before any is enqueued, and a caller that follows
// Validate with Report on any problem enqueues nothing; a problem names the flag behind the
// field in flag mode and the input line in file mode.
package enqueuecli
