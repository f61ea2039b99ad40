package webhook

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/rules"
)

// Event is one fact sent to subscribers. It names ids, the store, the
// rule, the coupon and times, never a coordinate: Emit refuses Data that
// looks like one.
type Event struct {
	// ID is unique per event and the same on every delivery of it: the
	// receiver's idempotency key (the webhook-id header). Emit makes one
	// when it is empty; a caller that may emit the same fact twice gives
	// a deterministic one (e.g. "redeemed:<coupon code>").
	ID         string         `json:"id"`
	Type       string         `json:"type"`
	CustomerID string         `json:"customer_id,omitempty"`
	StoreID    string         `json:"store_id,omitempty"`
	RuleID     string         `json:"rule_id,omitempty"`
	CouponCode string         `json:"coupon_code,omitempty"`
	DeviceID   string         `json:"device_id,omitempty"`
	At         time.Time      `json:"at"`
	Data       map[string]any `json:"data,omitempty"`
}

// Shards is how many event streams there are. A customer's events all go
// to one (ShardOf), so they stay in order; changing it reorders the
// events in flight, so it is fixed.
const Shards = 8

// DefaultMaxLen bounds each shard's stream (XADD MAXLEN ~): about a
// million entries of about 400 bytes, some 400 MB per shard at most. A
// subscription that falls further behind than that (a receiver dead for
// longer than the stream holds at the event rate) loses the oldest
// events it had not read. Those it had read and not delivered yet come
// back empty and are counted as skipped; those trimmed before it read
// them are not counted (the group's lag shows how far behind it is).
const DefaultMaxLen = 1_000_000

// StreamKey is shard n's stream of events. Each entry has the fields
// "id" (the event id), "type", "customer" (the customer id, may be
// empty), "event" (the Event as JSON, the body sent) and, for an event
// replayed from one subscription's dead letters, "only" (that
// subscription's id; everyone else skips it).
//
// A worker inside the cluster reads it directly with a consumer group of
// its own on each of the Shards streams (XGROUP CREATE <key> <group> $
// MKSTREAM, then XREADGROUP ... STREAMS <key> > and XACK), one consumer
// per group when it needs a customer's events in order.
func StreamKey(n int) string { return "nc:{hooks:" + strconv.Itoa(n) + "}:events" }

// ShardOf is the shard of a customer's events.
func ShardOf(customerID string) int {
	h := fnv.New32a()
	h.Write([]byte(customerID))
	return int(h.Sum32() % Shards)
}

// groupOf is a subscription's consumer group on every shard.
func groupOf(subID string) string { return "sub:" + subID }

// consumerName is the one consumer of every group: one process at a time
// reads a shard (its lease), so that its successor finds the entries
// left pending as its own.
const consumerName = "deliverer"

// leaseKey is held by the process delivering shard n.
func leaseKey(n int) string { return "nc:{hooks:" + strconv.Itoa(n) + "}:lease" }

// coordinateKeys are keys Data may not carry.
var coordinateKeys = []string{"lat", "lng", "lon", "latitude", "longitude", "location", "position", "coordinates", "fix", "geo", "accuracy_m"}

// NewEventID makes a random event id.
func NewEventID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return "evt_" + hex.EncodeToString(b)
}

// check validates an event before it is written.
func (e *Event) check() error {
	if !KnownType(e.Type) {
		return rules.Invalid("type", "unknown event type %q", e.Type)
	}
	for field, id := range map[string]string{"id": e.ID, "customer_id": e.CustomerID, "store_id": e.StoreID, "rule_id": e.RuleID, "device_id": e.DeviceID} {
		if id != "" {
			if err := rules.ValidID(field, id); err != nil {
				return err
			}
		}
	}
	for k := range e.Data {
		for _, c := range coordinateKeys {
			if strings.EqualFold(k, c) {
				return rules.Invalid("data."+k, "events never carry coordinates")
			}
		}
	}
	return nil
}

// Emitter appends events to the shard streams.
type Emitter struct {
	rdb    redis.UniversalClient
	maxLen int64
	now    func() time.Time
}

// NewEmitter returns an emitter whose streams hold about maxLen entries
// each (0: DefaultMaxLen).
func NewEmitter(rdb redis.UniversalClient, maxLen int64) *Emitter {
	if maxLen <= 0 {
		maxLen = DefaultMaxLen
	}
	return &Emitter{rdb: rdb, maxLen: maxLen, now: time.Now}
}

// Emit appends events, each to its customer's shard, in the order given.
// An event without an ID gets one, without a time now. Events of one
// customer keep their order; nothing is written when one is invalid.
func (em *Emitter) Emit(ctx context.Context, events ...Event) error {
	args := make([]*redis.XAddArgs, 0, len(events))
	for i := range events {
		e := events[i]
		if e.ID == "" {
			e.ID = NewEventID()
		}
		if e.At.IsZero() {
			e.At = em.now()
		}
		e.At = e.At.UTC().Truncate(time.Millisecond)
		if err := e.check(); err != nil {
			return err
		}
		a, err := em.xadd(&e, "")
		if err != nil {
			return err
		}
		args = append(args, a)
	}
	if len(args) == 0 {
		return nil
	}
	_, err := em.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, a := range args {
			p.XAdd(ctx, a)
		}
		return nil
	})
	return rules.RedisErr("emit events", err)
}

// xadd is the XADD of an event, for one subscription only when only is set.
func (em *Emitter) xadd(e *Event, only string) (*redis.XAddArgs, error) {
	doc, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	values := []any{"id", e.ID, "type", e.Type, "customer", e.CustomerID, "event", doc}
	if only != "" {
		values = append(values, "only", only)
	}
	return &redis.XAddArgs{Stream: StreamKey(ShardOf(e.CustomerID)), MaxLen: em.maxLen, Approx: true, Values: values}, nil
}

// EraseCustomer forgets a customer in the webhooks: it emits
// customer.erased (to every subscription), then deletes every earlier
// entry of the customer from their shard's stream, delivered or not,
// and their events from every subscription's dead letters. A Deliverer
// that holds some of them in memory drops them when it reads the
// customer.erased entry, which comes after them. It answers how many
// entries and dead letters it removed.
//
// The stream is scanned whole (at most its MaxLen entries, in pages of
// 1,000): erasure is rare, and the scan keeps no index of customers.
func (em *Emitter) EraseCustomer(ctx context.Context, customerID string) (int, error) {
	if err := rules.ValidID("customer_id", customerID); err != nil {
		return 0, err
	}
	e := Event{ID: NewEventID(), Type: TypeCustomerErased, CustomerID: customerID, At: em.now().UTC().Truncate(time.Millisecond)}
	a, err := em.xadd(&e, "")
	if err != nil {
		return 0, err
	}
	mark, err := em.rdb.XAdd(ctx, a).Result()
	if err != nil {
		return 0, rules.RedisErr("emit customer.erased", err)
	}
	key := StreamKey(ShardOf(customerID))
	removed, start := 0, "-"
	for {
		msgs, err := em.rdb.XRangeN(ctx, key, start, mark, 1000).Result()
		if err != nil {
			return removed, rules.RedisErr("scan events", err)
		}
		var ids []string
		for _, m := range msgs {
			if m.ID != mark && m.Values["customer"] == customerID {
				ids = append(ids, m.ID)
			}
		}
		if len(ids) > 0 {
			n, err := em.rdb.XDel(ctx, key, ids...).Result()
			if err != nil {
				return removed, rules.RedisErr("delete events", err)
			}
			removed += int(n)
		}
		if len(msgs) < 1000 || msgs[len(msgs)-1].ID == mark {
			break
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
	subs, err := em.rdb.HKeys(ctx, keySubs).Result()
	if err != nil {
		return removed, rules.RedisErr("list subscriptions", err)
	}
	for _, sub := range subs {
		n, err := removeDead(ctx, em.rdb, sub, func(d *DeadLetter) bool { return d.Event.CustomerID == customerID })
		if err != nil {
			return removed, err
		}
		removed += n
	}
	return removed, nil
}

// entryTime is when a stream entry was written, from its id.
func entryTime(id string) time.Time {
	ms, _, _ := strings.Cut(id, "-")
	v, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(v)
}

func (e *Event) String() string { return fmt.Sprintf("%s %s %s", e.Type, e.ID, e.CustomerID) }
