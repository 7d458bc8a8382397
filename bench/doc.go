// Package bench measures the proxyq worker beside a naive peer, in one run, on the same Redis and
// the same in-process proxytest fake, and reports ratios that can be compared across machines.
//
// The peer is what most teams write first: an asynq server with asynq's default configuration
// (Concurrency set to the scenario's, TaskCheckInterval 1s, one queue "default") and a handler
// that decodes the JSON payload, POSTs the form with net/http and writes the interaction's SID
// and status as the task result (one HSET). It has no send ledger, no
// account limits, no metrics, no outcome records, no logging. Its HTTP client gets an idle
// connection pool as large as its concurrency, so that connection churn does not make it look
// worse than it is. The proxyq side is worker.New as shipped (PollInterval 20ms; proxyclient's
// own transport) but reading the peer's single queue "default", so the two differ by handler
// only): ledger, outcome records, registered
// metrics, a zap JSON logger at info (written to io.Discard), and the account limiter where the
// scenario says so (scenario 1 switches both limits on with values that never bind, to price
// them). Everything runs on one machine: Redis, the fake, and the workers share its CPUs.
//
// Scenarios (Config.Scenarios):
//
//  1. Throughput at zero API latency, concurrency 50, messages enqueued beforehand: tasks/s of
//     each and the ratio proxyq/peer.
//  2. Throughput at 200ms API latency with concurrency 1000 in one process: tasks/s and the
//     fraction of the ideal 1000/0.2s.
//  3. Pick-up latency at low load, one message every 100ms: p50 and p99 from just before the
//     enqueue call to the fake receiving the request. proxyq polls every 20ms (its default
//     PollInterval); the peer uses asynq's default of 1s.
//  4. Enqueue throughput from one producer: tasks.Enqueuer.Enqueue one at a time and
//     EnqueueBatch, messages/s.
//  5. Memory: each side runs in a child process (the same binary, `proxyq bench --child`) with
//     1,000 requests in flight (API latency 1s); peak RSS (VmHWM) per 1,000 in flight.
//  6. Account limits: three proxyq child processes, the fake capping the account at K
//     concurrent requests with 100ms latency and the workers configured with MaxInFlight=K:
//     429s received and throughput as a fraction of K/latency; the same with the messages over
//     100 Services (per-Service limits at their defaults), timed from outside (first create to
//     the queue's completed count); then RateLimit=R without a cap: the achieved rate as a
//     fraction of R.
//  7. Redis cost per message, 5,000 messages, concurrency 50, Redis with AOF on (appendfsync
//     everysec): INFO commandstats is reset after the enqueue and read when every message is
//     completed. First on the realistic mix (realistic.go), on which the targets are judged:
//     every message with an idempotency key, 100 Services, sessions of two participants with
//     three messages each, status callbacks posted by the fake (in its own process) to the
//     callback endpoint `proxyq serve` mounts (in its own process), and the worker with the
//     delivery hook and poller; the peer gets the same keys as asynq task IDs and no status.
//     Then on the narrow mix (no keys, one Service, 64 participants, no delivery status).
//     Commands per message count those run inside scripts (commandstats does); Redis CPU is the
//     sum of commandstats usec (a script's usec includes its commands', as Redis reports it)
//     and, beside it, the Redis process's user+sys CPU (INFO cpu). Memory is MEMORY USAGE of
//     every key after completion, per message; the log breaks commands down by command and
//     memory by key class. proxyq runs with the defaults (no limits), then once more on the
//     narrow mix with both account limits on to price them. Best of 3 by usec.
//  8. Throughput with the fake in another process (`proxyq bench --child --side fake`), timed
//     from outside (the queue's completed count), Redis with AOF on: the realistic mix at 0ms
//     (concurrency 50) and 200ms (concurrency 500) of API latency; then the narrow mix with
//     proxyq's defaults (no account limits, two dequeue loops), and with one dequeue loop, as
//     the peer has.
//  9. Ordered lanes (lanes.go), proxyq only: the hand-off from one message of a lane being
//     recorded to the next one's POST (p50, p99), and throughput of 1,000 lanes × 10 messages
//     against the same messages without ordering keys.
//  10. Twilio's per-Service limit (servicelimits.go): the fake caps each Service at 30/s over a
//     5 s window (80621) and the account's concurrency; three proxyq processes with the defaults
//     beside three naive peers send to two Services: 429s received and each Service's rate.
//
// Throughputs of scenarios 1 and 2 are messages over the time from starting the pool to the last
// completion; those of scenario 6 (child processes, whose start-up is fuzzy) are the slope of the
// completed count between 10% and 90% of the messages. Scenarios 1, 2, 4, 5 and 8 run each side
// three times in turn and keep its best result (lowest peak for memory): the machine may be
// shared, and a run slowed by someone else's work says nothing about the code. Every run starts
// on a flushed Redis database and a reset fake.
//
// Redis: Config.RedisURL, or a private redis-server started on a free loopback port (killed
// at the end). The database given is FLUSHED before every scenario, which is why REDIS_URL is
// not read: pointing the benchmark at a Redis must be explicit.
package bench
