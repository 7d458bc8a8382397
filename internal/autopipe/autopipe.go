// Package autopipe is where the commands each message makes go: go-redis's async
// autopipeliner, which puts the commands of all of a process's concurrent messages (the send
// ledger's in-flight mark and record, delivery's index, poll entry and status updates) in
// shared pipelines, so that each costs a fraction of a round trip (docs/performance.md, Redis
// cost per message). Each caller still waits for its own replies before it acts.
//
// On a Redis Cluster, or with Direct, there is no autopipeliner and the commands go to the
// client itself.
package autopipe

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Cmds is what a message's commands and scripts are sent through.
type Cmds interface {
	redis.Cmdable
	redis.Scripter
}

// Pipe is a client's per-message command path. The zero value and nil are not valid; build
// one with New or Direct.
type Pipe struct {
	rdb redis.UniversalClient
	ap  func() *redis.AutoPipeliner // nil result: none (a Cluster, or it could not be made)
}

// New returns rdb's pipe. On a single Redis the autopipeliner is made on first use (closed
// with the client; its defaults: one ordered stream of batches, no waiting for a batch to
// fill, so a lone command goes at once), so a process that only reads starts none.
func New(rdb redis.UniversalClient) *Pipe {
	p := Direct(rdb)
	if c, ok := rdb.(*redis.Client); ok {
		p.ap = sync.OnceValue(func() *redis.AutoPipeliner {
			ap, err := c.AsyncAutoPipeline()
			if err != nil {
				return nil
			}
			return ap
		})
	}
	return p
}

// Direct returns a pipe that sends every command to rdb as it comes (tests that count or
// fail single commands).
func Direct(rdb redis.UniversalClient) *Pipe {
	return &Pipe{rdb: rdb, ap: func() *redis.AutoPipeliner { return nil }}
}

// Cmds returns where a message's own commands go: the autopipeliner, else the client.
func (p *Pipe) Cmds() Cmds {
	if ap := p.ap(); ap != nil {
		return ap
	}
	return p.rdb
}

// OneTrip sends fn's commands in one round trip (queued on the autopipeliner, or as a
// pipeline); each command's reply and error are read from the command afterwards.
func (p *Pipe) OneTrip(ctx context.Context, fn func(redis.Cmdable)) {
	if ap := p.ap(); ap != nil {
		fn(ap)
		return
	}
	_, _ = p.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		fn(pl)
		return nil
	})
}
