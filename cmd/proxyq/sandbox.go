package main

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/proxyq/proxyq/internal/adminhttp"
	"github.com/proxyq/proxyq/internal/sandbox"
	"github.com/proxyq/proxyq/proxyclient/proxytest"
)

const sandboxDoc = `
Serves a fake Twilio Proxy API (the one proxyq's own tests use: proxyclient/proxytest) so that
your code, or 'proxyq worker', can be exercised without Twilio and without sending an SMS.

Point a worker at it:
  PROXYQ_API_BASE_URL=http://127.0.0.1:4010 TWILIO_ACCOUNT_SID=AC00000000000000000000000000000000 \
  TWILIO_AUTH_TOKEN=any proxyq worker

Any Account SID (AC + 32 hex) or API key (SK + 32 hex) with a non-empty secret is accepted;
every participant and session exists unless marked with --unknown-participant or
--closed-session. Fault flags make create requests fail the ways Twilio's can: the rates are
probabilities per create request (together at most 1), drawn from a generator seeded by --seed.

It also serves each message's Messaging API resource (GET /2010-04-01/Accounts/{AC}/Messages/
{SM}.json: status, error_code, error_message), and moves every message queued -> sent ->
delivered, --callback-delay apart (or undelivered/failed with an error code, by --undelivered,
--failed and --error-codes); --advance-status=false keeps every message "queued".

Status callbacks: with --callback-url (the Proxy Service's callback_url, e.g.
http://127.0.0.1:8080/v1/twilio/proxy/callbacks of 'proxyq serve') each status change is POSTed
there as Twilio does, form-encoded and signed with X-Twilio-Signature (HMAC-SHA1 keyed with
the account's Auth Token: --callback-auth-token, PROXYQ_SANDBOX_CALLBACK_AUTH_TOKEN, or else
the secret the worker authenticates with as TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN; a worker
using an API key needs one of the first two). --callback-signing-url signs another URL than
the one posted to (the public URL of a receiver behind a proxy). --callback-duplicates,
--callback-out-of-order and --callback-before-answer make them arrive twice, out of order, and
before the create is answered. Failed POSTs are retried (--callback-attempts).

The fake Twilio Conversations API (conversations/convtest) is served beside it, at
/conversations (PROXYQ_CONVERSATIONS_BASE_URL=http://127.0.0.1:4010/conversations, whatever
--prefix), with the same credentials, --seed, --max-concurrent and fault rates. With
--receipts-url its signed onDeliveryUpdated receipts are POSTed there, keyed with a
--callback-auth-token given as a plain TOKEN, else with the secret the worker authenticates with.

Read-only, unauthenticated endpoints beside the API:
  GET /_proxytest/interactions   every interaction created (JSON), bodies included
  GET /_proxytest/stats          request, create and fault counters
  GET /_proxytest/callbacks      callbacks sent (parameters included) and their counters
  GET /healthz                   200 while serving

Each request is logged (method, path, status, fault, account; never bodies or secrets).
Stops on SIGINT or SIGTERM.`

func init() {
	register(&command{name: "sandbox", summary: "serve fake Twilio Proxy and Conversations APIs with fault injection", run: runSandbox})
}

func runSandbox(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSetDoc("sandbox", "sandbox [flags]", sandboxDoc)
	f := sandbox.Defaults()
	fs.StringVar(&f.Addr, "addr", sandbox.DefaultAddr, "listen address host:port (port 0 picks a free one)")
	fs.StringVar(&f.Prefix, "prefix", "", `path the API is served under, e.g. "/twilio" (PROXYQ_API_BASE_URL then ends with it); default: the root`)
	fs.DurationVar(&f.Latency, "latency", 0, "delay added to every API request, e.g. 150ms")
	fs.IntVar(&f.MaxConcurrent, "max-concurrent", 0, "requests one account may have in progress; beyond it: 429 code 20429 (0: no limit)")
	fs.Float64Var(&f.Rate429, "rate-429", 0, "share of creates answered 429 (nothing created), 0..1")
	fs.Float64Var(&f.Rate503, "rate-503", 0, "share of creates answered 503 (nothing created), 0..1")
	fs.Float64Var(&f.Rate500AfterCreate, "rate-500-after-create", 0, "share of creates that create the interaction, then answer 500, 0..1")
	fs.Float64Var(&f.RateResetAfterCreate, "rate-reset-after-create", 0, "share of creates that create the interaction, then reset the connection, 0..1")
	fs.Float64Var(&f.RateHangAfterCreate, "rate-hang-after-create", 0, "share of creates that create the interaction, then never answer (until the client gives up), 0..1")
	fs.Var((*repeated)(&f.FaultRates), "fault-rate", `any fault kind as name=rate, repeatable: `+sandbox.FaultNames())
	fs.Var((*repeated)(&f.UnknownParticipants), "unknown-participant", "participant SID (KP…) answered 404 code 20404, as if removed; repeatable")
	fs.Var((*repeated)(&f.ClosedSessions), "closed-session", "session SID (KC…) whose creates answer 400 code 80607 (session closed); repeatable")
	fs.Int64Var(&f.Seed, "seed", f.Seed, "seed of the fault generator, so a run can be repeated")
	fs.Float64Var(&f.Limits.ServiceRate, "service-rate", 0, "per-Service rate limit per endpoint, requests/s over a 5s sliding window (Twilio: 30); beyond it: 429 code 80621 (0: none)")
	fs.Var((*repeated)(&f.Limits.ServiceLimits), "service-limit", "a Service's own rate (a raised limit) as KS…=rate; repeatable")
	fs.Var((*repeated)(&f.Limits.Accounts), "account", "accepted credentials as USER=SECRET (USER an AC… Account SID or SK… API key); repeatable. Given any, only these authenticate")
	fs.Var((*repeated)(&f.Limits.AccountConcurrency), "account-concurrency", "one user's own concurrency cap as USER=N (instead of --max-concurrent); repeatable")
	fs.StringVar(&f.ListOrder, "list-order", f.ListOrder, "order of list results: oldest-first, newest-first or shuffled (Twilio documents none)")
	fs.StringVar(&f.CallbackURL, "callback-url", "", "the Proxy Service's callback_url: POST signed status callbacks there (default: none)")
	fs.StringVar(&f.CallbackSigningURL, "callback-signing-url", "", "URL the signature covers when it differs from --callback-url (a public URL behind a proxy)")
	fs.Var((*repeated)(&f.CallbackAuthTokens), "callback-auth-token", "Auth Token signing callbacks: TOKEN for every account, or AC…=TOKEN for one; repeatable (or PROXYQ_SANDBOX_CALLBACK_AUTH_TOKEN)")
	fs.DurationVar(&f.CallbackDelay, "callback-delay", proxytest.DefaultCallbackDelay, "time between a message's statuses (queued, sent, final)")
	fs.Float64Var(&f.Undelivered, "undelivered", 0, "share of messages ending undelivered (queued, sent, undelivered) with an error code, 0..1")
	fs.Float64Var(&f.Failed, "failed", 0, "share of messages ending failed (queued, failed) with an error code, 0..1")
	fs.StringVar(&f.ErrorCodes, "error-codes", sandbox.DefaultErrorCodes, "comma-separated Messaging error codes drawn for undelivered and failed messages")
	fs.Float64Var(&f.CallbackDuplicates, "callback-duplicates", 0, "share of callbacks POSTed twice (same signature and I-Twilio-Idempotency-Token), 0..1")
	fs.Float64Var(&f.CallbackOutOfOrder, "callback-out-of-order", 0, "share of messages whose callbacks are held to the final status, then sent newest first, 0..1")
	fs.BoolVar(&f.CallbackBeforeAnswer, "callback-before-answer", false, "POST each message's first callback, and wait for its answer, before answering the create")
	fs.IntVar(&f.CallbackAttempts, "callback-attempts", proxytest.DefaultCallbackAttempts, "POSTs per callback at most while answered non-2xx or not at all")
	fs.DurationVar(&f.CallbackTimeout, "callback-timeout", proxytest.DefaultCallbackTimeout, "bound on one callback POST")
	fs.StringVar(&f.ReceiptsURL, "receipts-url", "", "the Conversation Service's onDeliveryUpdated webhook URL, e.g. http://127.0.0.1:8080/v1/twilio/conversations/receipts of 'proxyq serve' (default: none)")
	fs.BoolVar(&f.AdvanceStatus, "advance-status", true, "move messages through their statuses even without --callback-url (for pollers); false keeps them queued")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (the sandbox takes flags only)", fs.Arg(0))
	}
	log, err := m.logger("")
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	if tok := m.Getenv("PROXYQ_SANDBOX_CALLBACK_AUTH_TOKEN"); tok != "" && len(f.CallbackAuthTokens) == 0 {
		f.CallbackAuthTokens = []string{tok}
	}
	fake, prefix, err := f.NewFake(log.Named("sandbox"))
	if err != nil {
		return usageError{err}
	}
	defer fake.Close()
	conv, err := f.NewConversationsFake()
	if err != nil {
		return usageError{err}
	}
	defer conv.Close()

	srv, err := adminhttp.Listen(f.Addr, sandbox.WithConversations(sandbox.Handler(fake, prefix), conv))
	if err != nil {
		return err
	}
	root := "http://" + adminhttp.Dialable(srv.Addr())
	base := root + prefix
	f.WriteBanner(m.Stdout, srv.Addr(), base)
	f.WriteConversationsBanner(m.Stdout, root)
	log.Info("sandbox listening", zap.String("addr", srv.Addr()), zap.String("base_url", base),
		zap.Duration("latency", f.Latency), zap.Int("max_concurrent", f.MaxConcurrent), zap.Int64("seed", f.Seed))

	<-ctx.Done()
	// Close the fake first: it ends latency waits and hangs, so the server's shutdown does not
	// wait for them.
	fake.Close()
	conv.Close()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Close(shutdownCtx); err != nil {
		log.Warn("sandbox did not close cleanly", zap.Error(err))
	}
	return nil
}
