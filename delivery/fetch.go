package delivery

import (
	"context"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/proxyclient"
)

// MessageAPI is the part of the Twilio client the fetches use; *proxyclient.Client has it.
type MessageAPI interface {
	FetchMessage(ctx context.Context, accountSID, messageSID string) (*proxyclient.Message, error)
}

// ClientFetcher adapts the Twilio client's Messaging API fetch to a Fetcher. A permanent
// error (bad SID, no permission) is not retried; a 429 or 5xx is, by the caller.
func ClientFetcher(api MessageAPI) Fetcher { return clientFetcher{api} }

type clientFetcher struct{ api MessageAPI }

func (f clientFetcher) FetchStatus(ctx context.Context, accountSID, messageSID string) (Update, error) {
	m, err := f.api.FetchMessage(ctx, accountSID, messageSID)
	if err != nil {
		if proxyclient.ClassifyRead(err) == proxyclient.ClassPermanent {
			var e *proxyclient.Error
			if errors.As(err, &e) && e.StatusCode == 404 {
				return Update{}, err // the caller tells 404 apart
			}
			return Update{}, fmt.Errorf("%w: %w", err, asynq.SkipRetry)
		}
		return Update{}, err
	}
	return Update{Status: m.Status, At: m.DateUpdated, ErrorCode: m.ErrorCode, ErrorMessage: m.ErrorMessage}, nil
}
