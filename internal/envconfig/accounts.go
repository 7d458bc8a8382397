package envconfig

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/proxyq/proxyq/accounts"
	"github.com/proxyq/proxyq/conversations"
	"github.com/proxyq/proxyq/proxyclient"
)

// Accounts loads PROXYQ_ACCOUNTS_FILE (may be unset: then only the default account,
// TWILIO_ACCOUNT_SID with TWILIO_AUTH_TOKEN). client is the template of every account's client
// (API location, timeout); its credentials are not used.
func Accounts(getenv func(string) string, client proxyclient.Config, log *zap.Logger) (*accounts.Registry, error) {
	return loadAccounts(getenv, client, nil, log)
}

// WorkerAccounts is Accounts with a Conversations client per account too, built from the
// template conv (API location, timeout; its credentials are not used).
func WorkerAccounts(getenv func(string) string, client proxyclient.Config, conv conversations.Config, log *zap.Logger) (*accounts.Registry, error) {
	conv.AccountSID, conv.AuthToken, conv.APIKey, conv.APISecret = "", "", "", ""
	return loadAccounts(getenv, client, &conv, log)
}

func loadAccounts(getenv func(string) string, client proxyclient.Config, conv *conversations.Config, log *zap.Logger) (*accounts.Registry, error) {
	e := New(getenv)
	client.AccountSID, client.AuthToken, client.APIKey, client.APISecret = "", "", "", ""
	reg, err := accounts.New(accounts.Options{
		Path:              e.String("PROXYQ_ACCOUNTS_FILE", ""),
		Client:            client,
		Conversations:     conv,
		DefaultAccountSID: e.String("TWILIO_ACCOUNT_SID", ""),
		DefaultAuthToken:  e.String("TWILIO_AUTH_TOKEN", ""),
		Logger:            log,
	})
	if err != nil {
		return nil, fmt.Errorf("PROXYQ_ACCOUNTS_FILE: %v", err)
	}
	return reg, nil
}

// AccountsPoll is PROXYQ_ACCOUNTS_POLL, how often the accounts file is re-read (default
// accounts.DefaultPollEvery; a malformed value is the default too).
func AccountsPoll(getenv func(string) string) time.Duration {
	return New(getenv).Duration("PROXYQ_ACCOUNTS_POLL", accounts.DefaultPollEvery)
}

// KnownAccount returns the check producers apply to account_sid when they can read the
// worker's accounts file: the default account (TWILIO_ACCOUNT_SID) or one in the file. nil
// when PROXYQ_ACCOUNTS_FILE is unset (nothing to check against: the worker decides). The
// registry is returned too, for watching.
func KnownAccount(getenv func(string) string) (func(string) bool, *accounts.Registry, error) {
	e := New(getenv)
	path := e.String("PROXYQ_ACCOUNTS_FILE", "")
	if path == "" {
		return nil, nil, nil
	}
	reg, err := accounts.New(accounts.Options{Path: path})
	if err != nil {
		return nil, nil, fmt.Errorf("PROXYQ_ACCOUNTS_FILE: %v", err)
	}
	def := e.String("TWILIO_ACCOUNT_SID", "")
	return func(sid string) bool { return sid == "" || sid == def || reg.Has(sid) }, reg, nil
}
