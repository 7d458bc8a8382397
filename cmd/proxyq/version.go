package main

import (
	"context"
	"fmt"
	"runtime"

	"github.com/proxyq/proxyq/proxyclient"
)

func init() {
	register(&command{name: "version", summary: "print the version", run: func(_ context.Context, m *Main, args []string) error {
		fs := m.newFlagSet("version", "version")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		fmt.Fprintf(m.Stdout, "proxyq %s %s\n", proxyclient.Version, runtime.Version())
		return nil
	}})
}
