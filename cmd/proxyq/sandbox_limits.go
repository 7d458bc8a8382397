package main

import (
	"flag"
	"strconv"
	"strings"

	"github.com/proxyq/proxyq/proxyclient/proxytest"
)

// sandboxLimitFlags are the sandbox's per-Service limits and accounts.
type sandboxLimitFlags struct {
	serviceRate        float64
	serviceLimits      repeated // KS…=rate
	accounts           repeated // USER=SECRET
	accountConcurrency repeated // USER=N
}

func (f *sandboxLimitFlags) register(fs *flag.FlagSet) {
	fs.Float64Var(&f.serviceRate, "service-rate", 0, "per-Service rate limit per endpoint, requests/s over a 5s sliding window (Twilio: 30); beyond it: 429 code 80621 (0: none)")
	fs.Var(&f.serviceLimits, "service-limit", "a Service's own rate (a raised limit) as KS…=rate; repeatable")
	fs.Var(&f.accounts, "account", "accepted credentials as USER=SECRET (USER an AC… Account SID or SK… API key); repeatable. Given any, only these authenticate")
	fs.Var(&f.accountConcurrency, "account-concurrency", "one user's own concurrency cap as USER=N (instead of --max-concurrent); repeatable")
}

// apply sets cfg's per-Service limits, credentials and per-account caps; errors name the flag.
func (f *sandboxLimitFlags) apply(cfg *proxytest.Config) error {
	if f.serviceRate < 0 {
		return usagef("--service-rate=%v: want 0 or more", f.serviceRate)
	}
	cfg.ServiceLimits.Rate = f.serviceRate
	for _, kv := range f.serviceLimits {
		ks, v, ok := strings.Cut(kv, "=")
		r, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil || r <= 0 || !serviceSIDPattern.MatchString(ks) {
			return usagef("--service-limit=%q: want KS…=rate, e.g. KS0123456789abcdef0123456789abcdef=60", kv)
		}
		if cfg.ServiceLimits.Services == nil {
			cfg.ServiceLimits.Services = map[string]float64{}
		}
		cfg.ServiceLimits.Services[ks] = r
	}
	for _, kv := range f.accounts {
		user, secret, ok := strings.Cut(kv, "=")
		if !ok || secret == "" || !(accountSIDPattern.MatchString(user) || apiKeyPattern.MatchString(user)) {
			// Never echo the value: it holds a secret.
			return usagef("--account: want USER=SECRET with USER an AC… or SK… SID and a non-empty secret")
		}
		if cfg.Credentials == nil {
			cfg.Credentials = map[string]string{}
		}
		cfg.Credentials[user] = secret
	}
	for _, kv := range f.accountConcurrency {
		user, v, ok := strings.Cut(kv, "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n < 0 || user == "" {
			return usagef("--account-concurrency=%q: want USER=N, e.g. AC0123456789abcdef0123456789abcdef=20", kv)
		}
		if cfg.AccountConcurrency == nil {
			cfg.AccountConcurrency = map[string]int{}
		}
		cfg.AccountConcurrency[user] = n
	}
	return nil
}
