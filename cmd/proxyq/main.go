// Command proxyq runs the proxyq worker pool and its tools. It is wiring only: configuration
// from the environment and flags, logging, signal handling; the policy lives in package worker.
//
// Each subcommand lives in its own file and registers itself in init with register. Main holds
// the process's environment and streams so that end-to-end tests can run the real program.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// Exit codes, documented in the README.
const (
	exitOK       = 0 // success
	exitFailure  = 1 // the command ran and failed (Redis down, an enqueue failed, …)
	exitUsage    = 2 // bad flags, bad input or bad configuration: nothing was done
	exitNotFound = 3 // status: no message with that ID
)

// usageError marks errors caused by the caller's input; they exit with exitUsage.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef returns a usageError.
func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// notFoundError exits with exitNotFound.
type notFoundError struct{ err error }

func (e notFoundError) Error() string { return e.err.Error() }

// command is one subcommand.
type command struct {
	name    string
	summary string
	// run executes the command; args exclude the command name. Returning a usageError exits 2.
	run func(ctx context.Context, m *Main, args []string) error
}

var commands = map[string]*command{}

func register(c *command) { commands[c.name] = c }

// Main is the program with its environment, so tests can run it in-process.
type Main struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// NewMain returns a Main on the real process environment.
func NewMain() *Main {
	return &Main{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
}

func main() {
	// go-redis prints its own dial failures to stderr; every command reports Redis errors
	// itself (the worker through its structured log), so that would only duplicate them.
	redis.SetLogger(quietRedisLog{})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	// The first signal asks for a graceful stop; after it the default action is restored, so
	// a second Ctrl-C ends the process at once for an operator who will not wait.
	go func() { <-ctx.Done(); stop() }()
	code := NewMain().Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// quietRedisLog discards go-redis's internal log lines.
type quietRedisLog struct{}

func (quietRedisLog) Printf(context.Context, string, ...any) {}

// Run executes one command line and returns the exit code. ctx is cancelled on SIGINT/SIGTERM.
func (m *Main) Run(ctx context.Context, args []string) int {
	if len(args) == 2 && args[0] == "help" {
		// "proxyq help worker" is "proxyq worker --help".
		args = []string{args[1], "--help"}
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		m.usage(m.Stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(m.Stderr, "proxyq: unknown command %q\n\n", args[0])
		m.usage(m.Stderr)
		return exitUsage
	}
	err := c.run(ctx, m, args[1:])
	var usage usageError
	var notFound notFoundError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &usage):
		fmt.Fprintf(m.Stderr, "proxyq %s: %v\n", c.name, err)
		return exitUsage
	case errors.As(err, &notFound):
		fmt.Fprintf(m.Stderr, "proxyq %s: %v\n", c.name, err)
		return exitNotFound
	default:
		fmt.Fprintf(m.Stderr, "proxyq %s: %v\n", c.name, err)
		return exitFailure
	}
}

func (m *Main) usage(w io.Writer) {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("proxyq: send Twilio Proxy messages from a Redis queue, exactly once.\n\nUsage: proxyq <command> [flags]\n\nCommands:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %-12s %s\n", n, commands[n].summary)
	}
	b.WriteString("\nRun 'proxyq <command> --help' for a command's flags. Configuration comes from the environment (see README).\n")
	b.WriteString("Exit codes: 0 ok, 1 failure, 2 bad input or configuration (nothing done), 3 not found.\n")
	fmt.Fprint(w, b.String())
}

// repeated is a flag that may be given several times.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

// newFlagSet returns a flag set that reports errors instead of exiting, printing help to stdout.
func (m *Main) newFlagSet(name, synopsis string) *flag.FlagSet {
	return m.newFlagSetDoc(name, synopsis, "")
}

// newFlagSetDoc is newFlagSet with a description printed between the synopsis and the flags
// by --help.
func (m *Main) newFlagSetDoc(name, synopsis, doc string) *flag.FlagSet {
	fs := flag.NewFlagSet("proxyq "+name, flag.ContinueOnError)
	errOut := &flagErrorWriter{w: m.Stderr}
	fs.SetOutput(errOut)
	fs.Usage = func() {
		// flag calls Usage after a parse error too, having written the error to the output
		// first. The full help is for --help only, on stdout; after an error, stdout must stay
		// clean (it may be piped), so stderr gets a pointer to the help instead.
		if errOut.wrote {
			fmt.Fprintf(m.Stderr, "Run 'proxyq %s --help' for usage.\n", name)
			return
		}
		fmt.Fprintf(m.Stdout, "Usage: proxyq %s\n\n", synopsis)
		if doc != "" {
			fmt.Fprintf(m.Stdout, "%s\n\n", strings.TrimSpace(doc))
		}
		fmt.Fprintln(m.Stdout, "Flags:")
		fs.SetOutput(m.Stdout)
		fs.PrintDefaults()
		fs.SetOutput(errOut)
	}
	return fs
}

// flagErrorWriter notes whether flag wrote an error message.
type flagErrorWriter struct {
	w     io.Writer
	wrote bool
}

func (e *flagErrorWriter) Write(p []byte) (int, error) {
	e.wrote = true
	return e.w.Write(p)
}

// parseFlags parses args, turning flag errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	return nil
}

// parseInterspersed is parseFlags for commands that take positional arguments: flags may come
// before or after them ("status ID --json"), and "--" ends flag parsing. It returns the
// positional arguments in order.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		// flag stops at the first non-flag, or after "--": then everything left is positional.
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}
