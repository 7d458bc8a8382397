// Package enqueuecli is what `proxyq enqueue` does between reading its flags and enqueuing:
// it checks the combination of flags, builds the one message of flag mode, checks every
// message (fields, accounts, the batch's rules) before anything is enqueued, and prints the
// problems and the results. The JSON lines of --file are read by package tasks/jsonl.
//
// Guarantees: a problem names the flag behind the field in flag mode and the input line in
// file mode; any problem means nothing is enqueued. Problems and results never contain a
// message body or media URL beyond what the caller typed in a flag name.
package enqueuecli
