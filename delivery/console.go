package delivery

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// What the console reads of this package's state, without reaching into it.

// FindInteraction returns the queue and task ID of the message that recorded interaction ki,
// from the interaction index (kept IndexTTL); ok is false when it is not indexed.
func FindInteraction(ctx context.Context, rdb redis.UniversalClient, ki string) (queue, taskID string, ok bool, err error) {
	ref, err := readIndex(ctx, rdb, ki)
	if err != nil || ref == nil {
		return "", "", false, err
	}
	return ref.Queue, ref.TaskID, true, nil
}

// WebhookTaskID is the asynq task ID of the status webhook announcing status for a message:
// the console looks it up to show whether the application took it.
func WebhookTaskID(queue, taskID, status string) string { return webhookID(queue, taskID, status) }
