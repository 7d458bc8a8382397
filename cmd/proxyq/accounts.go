package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"github.com/proxyq/proxyq/accounts"
	"github.com/proxyq/proxyq/internal/envconfig"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/worker"
)

// Environment of the accounts file (see the README).

// serviceLimitsFromEnv reads the per-Service limits (envconfig.ServiceLimits).
func (m *Main) serviceLimitsFromEnv() (worker.ServiceLimits, error) {
	return usage(envconfig.ServiceLimits(m.Getenv))
}

// accountsFromEnv loads PROXYQ_ACCOUNTS_FILE (may be unset: then only the default account).
// client is the template of every account's client (API location, timeout).
func (m *Main) accountsFromEnv(client proxyclient.Config, log *zap.Logger) (*accounts.Registry, error) {
	e := m.env()
	client.AccountSID, client.AuthToken, client.APIKey, client.APISecret = "", "", "", ""
	reg, err := accounts.New(accounts.Options{
		Path:              e.str("PROXYQ_ACCOUNTS_FILE", ""),
		Client:            client,
		DefaultAccountSID: e.str("TWILIO_ACCOUNT_SID", ""),
		DefaultAuthToken:  e.str("TWILIO_AUTH_TOKEN", ""),
		Logger:            log,
	})
	if err != nil {
		return nil, usagef("PROXYQ_ACCOUNTS_FILE: %v", err)
	}
	return reg, nil
}

// watchAccounts keeps the registry in step with its file: polled every
// PROXYQ_ACCOUNTS_POLL (default 2s) and reloaded on SIGHUP, until ctx ends.
func (m *Main) watchAccounts(ctx context.Context, reg *accounts.Registry, log *zap.Logger) {
	every := m.env().duration("PROXYQ_ACCOUNTS_POLL", accounts.DefaultPollEvery)
	go reg.Watch(ctx, every)
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

// knownAccount returns the check producers apply to account_sid when they can read the
// worker's accounts file: the default account (TWILIO_ACCOUNT_SID) or one in the file. nil
// when PROXYQ_ACCOUNTS_FILE is unset (nothing to check against: the worker decides).
func (m *Main) knownAccount() (func(string) bool, *accounts.Registry, error) {
	e := m.env()
	path := e.str("PROXYQ_ACCOUNTS_FILE", "")
	if path == "" {
		return nil, nil, nil
	}
	reg, err := accounts.New(accounts.Options{Path: path})
	if err != nil {
		return nil, nil, usagef("PROXYQ_ACCOUNTS_FILE: %v", err)
	}
	def := e.str("TWILIO_ACCOUNT_SID", "")
	return func(sid string) bool { return sid == "" || sid == def || reg.Has(sid) }, reg, nil
}

// unknownAccountProblems lists the messages whose account_sid has no credentials.
func unknownAccountProblems(known func(string) bool, msgs []tasks.Message, lines []int) []problem {
	if known == nil {
		return nil
	}
	var out []problem
	for i, msg := range msgs {
		if !known(msg.Payload.AccountSID) {
			out = append(out, problem{Line: lines[i], Field: "account_sid", Rule: "has no credentials in PROXYQ_ACCOUNTS_FILE (nor is it TWILIO_ACCOUNT_SID): a worker would archive it"})
		}
	}
	return out
}
