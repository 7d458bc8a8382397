package envconfig

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/proxyq/proxyq/accounts"
	"github.com/proxyq/proxyq/delivery"
)

// Delivery reads the delivery settings shared by serve and worker (see delivery.Config):
// PROXYQ_DELIVERY_POLL (on|off), PROXYQ_DELIVERY_POLL_AFTER, PROXYQ_DELIVERY_POLL_EVERY,
// PROXYQ_DELIVERY_MAX_AGE, PROXYQ_DELIVERY_POLL_BATCH, PROXYQ_DELIVERY_SWEEP_INTERVAL,
// PROXYQ_DELIVERY_PENDING_TTL, PROXYQ_DELIVERY_INDEX_TTL, PROXYQ_STATUS_WEBHOOK_URL,
// PROXYQ_STATUS_WEBHOOK_SECRET or PROXYQ_STATUS_WEBHOOK_SECRET_FILE, TWILIO_ACCOUNT_SID.
func Delivery(getenv func(string) string) (delivery.Config, error) {
	e := New(getenv)
	cfg := delivery.Config{
		PollAfter:     e.Duration("PROXYQ_DELIVERY_POLL_AFTER", 0),
		PollEvery:     e.Duration("PROXYQ_DELIVERY_POLL_EVERY", 0),
		MaxAge:        e.Duration("PROXYQ_DELIVERY_MAX_AGE", 0),
		PollBatch:     e.Int("PROXYQ_DELIVERY_POLL_BATCH", 0),
		SweepInterval: e.Duration("PROXYQ_DELIVERY_SWEEP_INTERVAL", 0),
		PendingTTL:    e.Duration("PROXYQ_DELIVERY_PENDING_TTL", 0),
		IndexTTL:      e.Duration("PROXYQ_DELIVERY_INDEX_TTL", 0),
		WebhookURL:    e.String("PROXYQ_STATUS_WEBHOOK_URL", ""),
		AccountSID:    e.String("TWILIO_ACCOUNT_SID", ""),
	}
	switch v := strings.ToLower(e.String("PROXYQ_DELIVERY_POLL", "on")); v {
	case "on":
	case "off":
		cfg.PollOff = true
	default:
		e.Fail("PROXYQ_DELIVERY_POLL", v, "want on or off")
	}
	if e.Err != nil {
		return cfg, e.Err
	}
	secret := e.String("PROXYQ_STATUS_WEBHOOK_SECRET", "")
	if path := e.String("PROXYQ_STATUS_WEBHOOK_SECRET_FILE", ""); path != "" {
		if secret != "" {
			return cfg, errors.New("set PROXYQ_STATUS_WEBHOOK_SECRET or PROXYQ_STATUS_WEBHOOK_SECRET_FILE, not both")
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("PROXYQ_STATUS_WEBHOOK_SECRET_FILE: cannot read %s: %v", path, errors.Unwrap(err))
		}
		secret = strings.TrimSpace(string(data))
	}
	cfg.WebhookSecret = secret
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return cfg, errors.New(deliveryEnvNames(err.Error()))
	}
	return cfg, nil
}

// WorkerDelivery is Delivery for the process that sends the status webhooks: with
// PROXYQ_STATUS_WEBHOOK_URL it needs the signing secret.
func WorkerDelivery(getenv func(string) string) (delivery.Config, error) {
	cfg, err := Delivery(getenv)
	if err == nil && cfg.WebhookURL != "" && cfg.WebhookSecret == "" {
		err = errors.New("PROXYQ_STATUS_WEBHOOK_URL is set but there is no signing secret: set PROXYQ_STATUS_WEBHOOK_SECRET or PROXYQ_STATUS_WEBHOOK_SECRET_FILE (whsec_ followed by base64)")
	}
	return cfg, err
}

// deliveryEnvNames rewrites delivery.Config field names as their variables.
func deliveryEnvNames(msg string) string {
	msg = strings.TrimPrefix(msg, "delivery config: ")
	for field, env := range map[string]string{
		"IndexTTL": "PROXYQ_DELIVERY_INDEX_TTL", "PendingTTL": "PROXYQ_DELIVERY_PENDING_TTL",
		"PollAfter": "PROXYQ_DELIVERY_POLL_AFTER", "PollEvery": "PROXYQ_DELIVERY_POLL_EVERY",
		"MaxAge": "PROXYQ_DELIVERY_MAX_AGE", "PollBatch": "PROXYQ_DELIVERY_POLL_BATCH",
		"SweepInterval": "PROXYQ_DELIVERY_SWEEP_INTERVAL",
		"WebhookURL":    "PROXYQ_STATUS_WEBHOOK_URL", "WebhookSecret": "PROXYQ_STATUS_WEBHOOK_SECRET",
	} {
		msg = strings.ReplaceAll(msg, field+" ", env+" ")
		msg = strings.ReplaceAll(msg, field+"=", env+"=")
		msg = strings.ReplaceAll(msg, field+":", env+":")
		msg = strings.ReplaceAll(msg, "("+field+")", "("+env+")")
	}
	return msg
}

// Callbacks reads the callback route's settings. PROXYQ_PUBLIC_URL turns the route on; it then
// needs an Auth Token to check X-Twilio-Signature (Twilio signs callbacks with the account's
// Auth Token, also when REST calls use an API key): TWILIO_ACCOUNT_SID + TWILIO_AUTH_TOKEN for
// the default account, and the auth_token of each account in PROXYQ_ACCOUNTS_FILE (accts, nil
// when unset). nil: the route is off.
func Callbacks(getenv func(string) string, accts *accounts.Registry) (*delivery.CallbackConfig, error) {
	e := New(getenv)
	public := e.String("PROXYQ_PUBLIC_URL", "")
	if public == "" {
		return nil, nil
	}
	var tokens delivery.Tokens
	account, token := e.String("TWILIO_ACCOUNT_SID", ""), e.String("TWILIO_AUTH_TOKEN", "")
	if account != "" && token != "" {
		tokens = append(tokens, delivery.StaticToken{AccountSID: account, Token: token})
	}
	if accts != nil && anyAuthToken(accts) {
		tokens = append(tokens, accts)
	}
	if len(tokens) == 0 {
		return nil, fmt.Errorf("PROXYQ_PUBLIC_URL enables Twilio's status callbacks (POST %s), which need an Auth Token to check X-Twilio-Signature: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN, or an auth_token per account in PROXYQ_ACCOUNTS_FILE; Twilio signs callbacks with the account's Auth Token, also when REST calls use an API key (TWILIO_API_KEY)", delivery.CallbackPath)
	}
	cfg := delivery.CallbackConfig{PublicURL: public, Tokens: tokens}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("PROXYQ_PUBLIC_URL=%q: %v", public, err)
	}
	return &cfg, nil
}

// anyAuthToken reports whether the accounts file gives at least one account's Auth Token.
func anyAuthToken(accts *accounts.Registry) bool {
	for _, sid := range accts.Accounts() {
		if _, ok := accts.AuthToken(sid); ok {
			return true
		}
	}
	return false
}
