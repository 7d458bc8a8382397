package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/delivery"
	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
	"github.com/proxyq/proxyq/tasks"
)

// devAuthToken is the fake account's Auth Token: the client authenticates with it and the
// fake signs its status callbacks with it.
const devAuthToken = "dev"

// devDelivery is dev mode's delivery status wiring: the same as serve's callback route and the
// worker's hook, tasks and sweeper, in one process.
type devDelivery struct {
	svc       *delivery.Service
	work      *delivery.Worker
	limits    *accountLimiter
	callbacks http.Handler // nil with --live: Twilio cannot reach a dev machine
	rdb       redis.UniversalClient
}

func (r *devRun) newDevDelivery(redisOpt asynq.RedisConnOpt, api *proxyclient.Client, reg prometheus.Registerer, base string, fake bool) (*devDelivery, error) {
	dcfg, err := r.m.workerDeliveryConfigFromEnv()
	if err != nil {
		return nil, err
	}
	if dcfg.AccountSID == "" || fake {
		dcfg.AccountSID = api.AccountKey()
	}
	d := &devDelivery{limits: &accountLimiter{}, rdb: redisOpt.MakeRedisClient().(redis.UniversalClient)}
	r.defer_(func() { _ = d.rdb.Close() })
	if d.svc, err = delivery.New(dcfg, d.rdb, delivery.NewMetrics(reg), r.log.Named("delivery")); err != nil {
		return nil, usageError{err}
	}
	if d.work, err = d.svc.NewWorker(delivery.ClientFetcher(api), d.limits); err != nil {
		return nil, usageError{err}
	}
	if fake {
		d.callbacks, err = d.svc.CallbackHandler(delivery.CallbackConfig{PublicURL: base,
			Tokens: delivery.StaticToken{AccountSID: devAccountSID, Token: devAuthToken}})
		if err != nil {
			return nil, err
		}
	}
	return d, nil
}

// startPoller runs the polling sweeper and returns its stop function.
func (d *devDelivery) startPoller() func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.work.RunPoller(ctx) }()
	return func() { cancel(); <-done }
}

// demoCallbacks is the fake's delivery during the demo: most messages delivered, some
// undelivered or failed with an error code, some callbacks repeated or out of order, and the
// first callback of each message sent before the create is answered (so it arrives before the
// send is recorded, and waits as a pending callback).
func demoCallbacks(base string) proxytest.CallbackConfig {
	return proxytest.CallbackConfig{URL: base + delivery.CallbackPath, AuthToken: devAuthToken,
		Delay: 150 * time.Millisecond, Undelivered: 0.10, Failed: 0.04, Duplicates: 0.15, OutOfOrder: 0.15, BeforeAnswer: true}
}

// waitDeliveries waits until every sent demo message has a final delivery status. It returns
// "" or why it stopped.
func waitDeliveries(ctx context.Context, insp *asynq.Inspector, msgs []demoMessage, deadline <-chan time.Time) string {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if deliveriesFinal(insp, msgs) {
			return ""
		}
		select {
		case <-ctx.Done():
			return "interrupted"
		case <-deadline:
			return "gave up waiting for delivery statuses (--demo-timeout)"
		case <-tick.C:
		}
	}
}

func deliveriesFinal(insp *asynq.Inspector, msgs []demoMessage) bool {
	for _, m := range msgs {
		info, err := insp.GetTaskInfo(tasks.DefaultQueue, m.key)
		if err != nil {
			return false
		}
		o, _ := tasks.ParseOutcome(info.Result)
		if o != nil && o.State == tasks.OutcomeSent && !o.Final {
			return false
		}
	}
	return true
}

// deliverySummary counts the sent demo messages by final delivery status, with error codes.
type deliverySummary struct {
	delivered, notFinal int
	failures            map[string]int // "undelivered 30003 Unreachable destination handset" → n
	orderOK             bool
}

func summarizeDeliveries(insp *asynq.Inspector, msgs []demoMessage) deliverySummary {
	s := deliverySummary{failures: map[string]int{}, orderOK: true}
	for _, m := range msgs {
		info, err := insp.GetTaskInfo(tasks.DefaultQueue, m.key)
		if err != nil {
			continue
		}
		o, _ := tasks.ParseOutcome(info.Result)
		if o == nil || o.State != tasks.OutcomeSent {
			continue
		}
		switch {
		case !o.Final:
			s.notFinal++
		case o.OutboundStatus == delivery.StatusDelivered:
			s.delivered++
		default:
			key := o.OutboundStatus
			if o.DeliveryErrorCode != 0 {
				key = fmt.Sprintf("%s %d %s", o.OutboundStatus, o.DeliveryErrorCode, o.DeliveryError)
			}
			s.failures[key]++
		}
		if o.Final && (len(o.StatusHistory) == 0 || o.StatusHistory[0].Status != "queued") {
			s.orderOK = false
		}
	}
	return s
}

func (s deliverySummary) print(w io.Writer) {
	undelivered := 0
	for _, n := range s.failures {
		undelivered += n
	}
	fmt.Fprintf(w, "  delivery    %4d delivered, %d undelivered or failed (Twilio's status callbacks, signed, some repeated or out of order)\n",
		s.delivered, undelivered)
	keys := make([]string, 0, len(s.failures))
	for k := range s.failures {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "                    %d × %s\n", s.failures[k], strings.TrimSpace(k))
	}
	if s.notFinal > 0 {
		fmt.Fprintf(w, "  no status   %4d  no final delivery status yet\n", s.notFinal)
	}
}
