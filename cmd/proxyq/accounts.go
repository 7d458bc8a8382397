package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"github.com/proxyq/proxyq/accounts"
	"github.com/proxyq/proxyq/internal/envconfig"
)

// watchAccounts keeps the registry in step with its file: polled every
// PROXYQ_ACCOUNTS_POLL (default 2s) and reloaded on SIGHUP, until ctx ends.
func (m *Main) watchAccounts(ctx context.Context, reg *accounts.Registry, log *zap.Logger) {
	go reg.Watch(ctx, envconfig.AccountsPoll(m.Getenv))
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if _, err := reg.Reload(); err != nil {
					log.Error("SIGHUP: accounts file refused; the accounts in force stay", zap.Error(err))
				} else {
					log.Info("SIGHUP: accounts file reloaded", zap.Int("accounts", len(reg.Accounts())))
				}
			}
		}
	}()
}
