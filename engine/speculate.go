package engine

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/geo"
	"github.com/nearcast/nearcast/rules"
)

// A speculative intent. On one Redis, an offer's intent goes in the same
// pipeline as the customer's step, just before it (a pipeline runs in
// order on one connection): 2 round trips before the answer, the presence
// step and then the offer. Redis Cluster keeps the intent (the outbox's
// slot) and the customer's keys on different nodes, which a pipeline
// reaches at once and in no order, so the intent, which must be written
// before the step may issue (intent.go), took a round trip of its own.
//
// Instead, when a fix is surely inside a store where an offer may fire on
// entering or dwelling, of a customer whose last presence step here found
// their location consent, the intent is written beside the presence step,
// to its own node, in the ping's first round trip. Should the step find an
// offer, the customer's step follows in the second, the intent already
// written: 2 round trips, as on one Redis, with the intent before the step
// as before. A ping that issues nothing takes its intent back behind its
// answer (one round trip there; a process that stops first leaves it to
// the dispatcher, which drops an intent with no coupon past its deadline).
// An offer fired by leaving a store, or at a store with rule capacity to
// reserve first, still takes its round trip more.
type speculation struct {
	code, intent string
	deadline     int64 // unix ms, the wall clock, as Redis's
	zadd         *redis.IntCmd
	used         bool // an issuance took it
}

// speculate makes the ping's speculative intent, or nil: not on one Redis
// (the intent goes with the step there), nor in a dry run, nor for a
// customer whose last presence step here did not find their location
// consent (seen: an intent names its customer, and nothing is kept of a
// customer without it), nor for a fix that cannot fire an offer: late,
// or surely inside no store with enter or dwell rules.
func (e *Engine) speculate(ctx context.Context, snap *rules.Snapshot, p Ping, ts, now time.Time, hits []geo.Hit, opt Options) *speculation {
	if opt.DryRun || e.orderedPipelines() || now.Sub(ts) > e.cfg.LateFix || !e.mayOffer(snap, p, hits, opt.ended) || !e.seen.has(p.CustomerID) {
		return nil
	}
	s := &speculation{code: e.coupons.NewCode(), deadline: time.Now().Add(commitWindow).UnixMilli()}
	s.intent = intentOf(s.code, p.CustomerID)
	s.zadd = redis.NewIntCmd(ctx, "zadd", keyIntents, s.deadline, s.intent)
	return s
}

// mayOffer tells a fix surely inside a store where rules fire on
// entering or dwelling (and where, in a batch, a later fix does not show
// the visit ended).
func (e *Engine) mayOffer(snap *rules.Snapshot, p Ping, hits []geo.Hit, ended map[int32]bool) bool {
	for _, h := range hits {
		if ended[h.Fence] {
			continue
		}
		if e.surelyInside(h, p) && (len(snap.Candidates(h.Fence, rules.OnEnter)) > 0 || len(snap.Candidates(h.Fence, rules.OnDwell)) > 0) {
			return true
		}
	}
	return false
}

// unspeculate takes back, behind the answer, a speculative intent that no
// offer took.
func (e *Engine) unspeculate(ctx context.Context, s *speculation, customerID string) {
	if s == nil || s.used || s.zadd.Err() != nil {
		return
	}
	e.runBehind(ctx, "a speculative intent not taken back (its deadline will see to it)", func(ctx context.Context) error {
		e.settle(ctx, s.intent, s.code, customerID, nil)
		return nil
	})
}

// consentSeen remembers the customers whose last presence step on this
// process let the call through and found their presence, which exists
// only with location consent: only their pings speculate. A step that
// found no consent, or refused the call (a revoked token, a limit),
// forgets the customer. Two generations of at most consentSeenMax each,
// the older dropped when the newer fills or ages past consentSeenFor:
// bounded memory, and a customer not seen for a while is asked again.
type consentSeen struct {
	mu        sync.Mutex
	cur, prev map[string]struct{}
	since     time.Time
}

const (
	consentSeenMax = 100_000
	consentSeenFor = 5 * time.Minute
)

func (c *consentSeen) has(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.cur[id]; ok {
		return true
	}
	_, ok := c.prev[id]
	return ok
}

func (c *consentSeen) add(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.cur[id]; ok {
		return
	}
	if now := time.Now(); c.cur == nil || len(c.cur) >= consentSeenMax || now.Sub(c.since) > consentSeenFor {
		c.prev, c.cur, c.since = c.cur, make(map[string]struct{}), now
	}
	c.cur[id] = struct{}{}
}

func (c *consentSeen) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.cur, id)
	delete(c.prev, id)
}

// learnConsent remembers what a presence step found: through, with
// presence (a stale fix too), or not. Only where pings may speculate: on
// one Redis nothing reads it, and the ping's path keeps no such work.
func (e *Engine) learnConsent(customerID, skipped string, err error) {
	if e.orderedPipelines() {
		return
	}
	switch {
	case err == nil && (skipped == "" || skipped == ReasonStale):
		e.seen.add(customerID)
	case !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && (err != nil || skipped != ""):
		e.seen.forget(customerID)
	}
}
