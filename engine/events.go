package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/engine/webhook"
)

// Events carries the facts the engine decides (enter, exit, dwell,
// offer.issued, push.sent, push.failed, coupon.opened, coupon.redeemed)
// to the event streams that webhooks and workers read (package webhook).
//
// Each fact is written, when some subscription wants its type, to the
// customer's journal (partEvents) by the very script that decides it, in
// the customer's slot: there is no event for a decision that did not
// happen, and none is lost for one that did, on one Redis or a cluster
// alike. The relay then moves the journal to the customer's shard stream
// (XADD) and only after that takes what it moved off the journal, so a
// process that stops in between leaves the facts to be moved again, with
// the same event ids (at least once; the id is the receiver's key). The
// engine kicks the relay after a step that journaled; a sweep at start
// and every SweepEvery finds the journals a stopped process left.
//
// A nil *Events journals nothing.
type Events struct {
	rdb    redis.UniversalClient
	em     *webhook.Emitter
	wanted func() string
	log    *slog.Logger

	// SweepEvery is how often the journals are looked for (SCAN) in case
	// a process stopped before relaying some; 0: only at start.
	SweepEvery time.Duration
	// Workers relay in parallel, each a batch of customers at a time.
	Workers int

	kicks chan string
	mu    sync.Mutex
	// state is each customer's place in the relay: queued, being relayed,
	// or being relayed and kicked again meanwhile. One process relays a
	// customer's journal one batch at a time, so that it moves each fact
	// once.
	state   map[string]relayState
	dropped atomic.Int64 // kicks refused on a full queue: the sweep finds them
	relayed atomic.Int64
}

// NewEvents returns the relay of events into em's streams. wanted answers
// the event types some subscription wants now (webhook.Snapshot.Wanted:
// "" for none, "*" for all, else ",type,…,"), read on every decision.
func NewEvents(rdb redis.UniversalClient, em *webhook.Emitter, wanted func() string, log *slog.Logger) *Events {
	return &Events{rdb: rdb, em: em, wanted: wanted, log: log, SweepEvery: 10 * time.Minute, Workers: 2,
		kicks: make(chan string, 1<<16), state: map[string]relayState{}}
}

// Wanted is what the steps journal: "" when no one listens.
func (ev *Events) Wanted() string {
	if ev == nil || ev.wanted == nil {
		return ""
	}
	return ev.wanted()
}

// wants tells whether type t is journaled now.
func (ev *Events) wants(t string) bool {
	w := ev.Wanted()
	return w == "*" || (w != "" && strings.Contains(w, ","+t+","))
}

// Kick asks the relay to move a customer's journal to the streams. It
// never waits: with the queue full the customer is left to the sweep.
func (ev *Events) Kick(customerID string) {
	if ev == nil || customerID == "" {
		return
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	switch ev.state[customerID] {
	case idle:
		ev.enqueue(customerID)
	case relaying:
		ev.state[customerID] = relayingKicked
	}
}

type relayState uint8

const (
	idle relayState = iota
	queued
	relaying
	relayingKicked // relaying, and kicked since: relayed again after
)

// enqueue queues a customer; ev.mu is held.
func (ev *Events) enqueue(customerID string) {
	select {
	case ev.kicks <- customerID:
		ev.state[customerID] = queued
	default:
		delete(ev.state, customerID)
		ev.dropped.Add(1)
	}
}

// Run relays until ctx ends, sweeping at start and every SweepEvery.
func (ev *Events) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range max(ev.Workers, 1) {
		wg.Go(func() { ev.work(ctx) })
	}
	wg.Go(func() {
		for first := true; ; first = false {
			// While no one listens nothing is journaled: what a stopped
			// process left, the sweep at start found.
			if first || ev.Wanted() != "" {
				if n, err := ev.Sweep(ctx); err != nil && ctx.Err() == nil {
					ev.log.Warn("events: sweep failed", "err", err)
				} else if n > 0 {
					ev.log.Info("events: journals left behind found", "customers", n)
				}
			}
			if ev.SweepEvery <= 0 {
				return
			}
			sleepCtx(ctx, ev.SweepEvery)
			if ctx.Err() != nil {
				return
			}
		}
	})
	wg.Wait()
	return nil
}

// relayBatch bounds the customers one worker relays in one go.
const relayBatch = 64

func (ev *Events) work(ctx context.Context) {
	batch := make([]string, 0, relayBatch)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return
		case id := <-ev.kicks:
			batch = append(batch, id)
		}
	fill:
		for len(batch) < relayBatch {
			select {
			case id := <-ev.kicks:
				batch = append(batch, id)
			default:
				break fill
			}
		}
		ev.mu.Lock()
		for _, id := range batch {
			ev.state[id] = relaying
		}
		ev.mu.Unlock()
		again, err := ev.relay(context.WithoutCancel(ctx), batch)
		if err != nil {
			ev.log.Warn("events: relay failed, left for the next kick or sweep", "customers", len(batch), "err", err)
			sleepCtx(ctx, time.Second)
		}
		ev.mu.Lock()
		for _, id := range again {
			ev.state[id] = relayingKicked
		}
		for _, id := range batch {
			if ev.state[id] == relayingKicked {
				ev.enqueue(id)
			} else {
				delete(ev.state, id)
			}
		}
		ev.mu.Unlock()
	}
}

// relayPage is how many facts of one customer one relay moves.
const relayPage = 100

// popScript takes relayed facts off a journal: each only if it is still
// the journal's first, so that two relays of one journal never take off
// a fact neither moved. KEYS: the journal. ARGV: the facts relayed, in
// order. Answers what is left in the journal.
var popScript = redis.NewScript(`
for i = 1, #ARGV do
  if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[i] then break end
  redis.call('LPOP', KEYS[1])
end
return redis.call('LLEN', KEYS[1])
`)

// relay moves the journals of customers to the streams, answering the
// customers with more to move.
func (ev *Events) relay(ctx context.Context, customers []string) (again []string, err error) {
	reads := make([]*redis.StringSliceCmd, len(customers))
	if _, err := ev.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range customers {
			reads[i] = p.LRange(ctx, customerKey(id, partEvents), 0, relayPage-1)
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return customers, err
	}
	var events []webhook.Event
	for i, id := range customers {
		for _, raw := range reads[i].Val() {
			e, ok := factEvent(id, raw)
			if !ok {
				ev.log.Warn("events: malformed fact dropped", "customer_id", id)
				continue
			}
			events = append(events, e)
		}
	}
	if len(events) > 0 {
		if err := ev.em.Emit(ctx, events...); err != nil {
			return customers, err
		}
	}
	pops := make([]*redis.Cmd, len(customers))
	if _, err := ev.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range customers {
			if facts := reads[i].Val(); len(facts) > 0 {
				args := make([]any, len(facts))
				for k, f := range facts {
					args[k] = f
				}
				pops[i] = popScript.Run(ctx, p, []string{customerKey(id, partEvents)}, args...)
			}
		}
		return nil
	}); err != nil && !redis.HasErrorPrefix(err, "NOSCRIPT") {
		return customers, err
	}
	for i, c := range pops {
		if c == nil {
			continue
		}
		if redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			// A pipeline does not load scripts: run it alone, which does.
			args := make([]any, len(reads[i].Val()))
			for k, f := range reads[i].Val() {
				args[k] = f
			}
			c = popScript.Run(ctx, ev.rdb, []string{customerKey(customers[i], partEvents)}, args...)
		}
		if left, err := c.Int64(); err == nil && left > 0 {
			again = append(again, customers[i])
		}
	}
	ev.relayed.Add(int64(len(events)))
	return again, nil
}

// factEvent reads a journal's fact as the event it is: the id is derived
// from the customer and the fact, the same on every relay of it.
func factEvent(customerID, raw string) (webhook.Event, bool) {
	var f map[string]any
	if err := json.Unmarshal([]byte(raw), &f); err != nil {
		return webhook.Event{}, false
	}
	str := func(k string) string {
		s, _ := f[k].(string)
		delete(f, k)
		return s
	}
	sum := sha256.Sum256([]byte(customerID + "\n" + raw))
	e := webhook.Event{ID: "evt_" + hex.EncodeToString(sum[:12]), Type: str("t"), CustomerID: customerID,
		StoreID: str("s"), RuleID: str("r"), CouponCode: str("c"), DeviceID: str("d")}
	ms, err := strconv.ParseInt(str("at"), 10, 64)
	if err != nil || e.Type == "" {
		return webhook.Event{}, false
	}
	e.At = time.UnixMilli(ms).UTC()
	if exp := str("expires_at"); exp != "" {
		if v, err := strconv.ParseInt(exp, 10, 64); err == nil {
			f["expires_at"] = time.UnixMilli(v).UTC().Format(time.RFC3339Nano)
		}
	}
	if len(f) > 0 {
		e.Data = f
	}
	return e, true
}

// Sweep kicks the relay for every journal in Redis (on every master of
// a cluster), answering how many it found.
func (ev *Events) Sweep(ctx context.Context) (int, error) {
	var found atomic.Int64
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.ScanType(ctx, 0, custKeyOpen+"*"+custKeyClose+partEvents, 1000, "list").Iterator()
		for iter.Next(ctx) {
			key := iter.Val()
			id := strings.TrimSuffix(strings.TrimPrefix(key, custKeyOpen), custKeyClose+partEvents)
			found.Add(1)
			ev.Kick(id)
		}
		return iter.Err()
	}
	err := eachMaster(ctx, ev.rdb, scan)
	return int(found.Load()), err
}

// Erase tells every subscription that a customer was erased and removes
// their events not delivered yet, after the erasure of their keys took
// their journal.
func (ev *Events) Erase(ctx context.Context, customerID string) error {
	if ev == nil {
		return nil
	}
	_, err := ev.em.EraseCustomer(ctx, customerID)
	return err
}

// Relayed is how many events the relay moved to the streams.
func (ev *Events) Relayed() int64 {
	if ev == nil {
		return 0
	}
	return ev.relayed.Load()
}

// Dropped is how many kicks found the queue full (left to the sweep).
func (ev *Events) Dropped() int64 {
	if ev == nil {
		return 0
	}
	return ev.dropped.Load()
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
