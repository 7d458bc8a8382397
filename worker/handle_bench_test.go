package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/proxyq/proxyq/internal/redistest"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/tasks"
)

// fixedAPI answers every create at once (not safe for concurrent use).
type fixedAPI struct {
	mi proxyclient.MessageInteraction
	n  int
}

func (a *fixedAPI) AccountKey() string { return "AC00000000000000000000000000000001" }
func (a *fixedAPI) CreateMessageInteraction(context.Context, proxyclient.CreateParams) (*proxyclient.MessageInteraction, error) {
	a.n++
	mi := a.mi
	mi.SID = fmt.Sprintf("KI%032x", a.n) // claims are per interaction
	return &mi, nil
}
func (a *fixedAPI) ListMessageInteractions(context.Context, string, string, string, proxyclient.ListOptions) (*proxyclient.InteractionPage, error) {
	return &proxyclient.InteractionPage{}, nil
}

// BenchmarkHandleSent is the worker's own cost of one sent message (Redis included, the HTTP
// request not): what scenario 8 measures less the client.
func BenchmarkHandleSent(b *testing.B) {
	cfg := Config{}.WithDefaults()
	rdb := redistest.NewDB(b).Client(b)
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zapcore.InfoLevel))
	api := &fixedAPI{mi: testInteraction("KI00000000000000000000000000000001", "x", nil, time.Now().UTC().Truncate(time.Second))}
	api.mi.OutboundResourceSID, api.mi.OutboundResourceStatus = "SM00000000000000000000000000000001", "sent"
	h := NewHandler(cfg, api, NewLedger(rdb, cfg.LedgerTTL), nil, nil, log)
	data, _ := json.Marshal(tasks.Payload{ServiceSID: testKS, SessionSID: testKC, ParticipantSID: testKP, Body: "bench message"})
	t := asynq.NewTask(tasks.TypeSendInteraction, data)
	ctx := context.Background()
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i)
		if err := rdb.HSet(ctx, LedgerKey(testQ, ids[i]), "msg", "x", "state", "active").Err(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		// ProcessTask less asynq's context (GetTaskID, GetQueueName)
		sctx, span := startAttempt(ctx, t, ids[i], testQ)
		err := h.handle(sctx, ids[i], testQ, t)
		endAttempt(span, err)
		if err != nil {
			b.Fatal(err)
		}
	}
}
