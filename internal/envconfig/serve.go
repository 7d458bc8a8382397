package envconfig

import (
	"time"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/accounts"
	"github.com/proxyq/proxyq/delivery"
	"github.com/proxyq/proxyq/httpapi"
	"github.com/proxyq/proxyq/tasks"
)

// ServeSettings is the checked configuration of one `proxyq serve`.
type ServeSettings struct {
	API             httpapi.Config // KnownAccount set from PROXYQ_ACCOUNTS_FILE
	Redis           asynq.RedisConnOpt
	Enqueuer        []tasks.EnqueuerOption
	ShutdownTimeout time.Duration
	Callbacks       *delivery.CallbackConfig // nil: the callback route is off
	Accounts        *accounts.Registry       // PROXYQ_ACCOUNTS_FILE, nil when unset
	Delivery        delivery.Config
}

// Serve reads the API's configuration (API), Redis, the accounts, the status callbacks and the
// producer options. defaultShutdown is PROXYQ_SHUTDOWN_TIMEOUT's default.
func Serve(getenv func(string) string, defaultShutdown time.Duration) (ServeSettings, error) {
	var s ServeSettings
	var err error
	if s.API, s.ShutdownTimeout, err = API(getenv, defaultShutdown); err != nil {
		return s, err
	}
	if s.Redis, err = Redis(getenv); err != nil {
		return s, err
	}
	if s.API.KnownAccount, s.Accounts, err = KnownAccount(getenv); err != nil {
		return s, err
	}
	if s.Callbacks, err = Callbacks(getenv, s.Accounts); err != nil {
		return s, err
	}
	if s.Delivery, err = Delivery(getenv); err != nil {
		return s, err
	}
	s.Enqueuer, err = EnqueuerOptions(getenv)
	return s, err
}
