package webhook_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/engine/webhook"
	"github.com/nearcast/nearcast/internal/redistest"
)

// Health comes from Redis alone, so every replica answers the same: the
// entries not read yet, those read and not acknowledged, the oldest not
// delivered, the dead letters. miniredis answers XINFO GROUPS's lag with
// the stream's length whatever the group read, and real Redis answers
// none once entries ahead of the group were deleted (an erasure): the
// lag is counted then.
func TestHealthFromRedis(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			rdb := be.New(t)
			ctx := context.Background()
			st := webhook.NewStore(rdb)
			em := webhook.NewEmitter(rdb, 0)
			// Nothing yet: no subscription, then one with no events.
			if h, err := st.Health(ctx, "crm"); err != nil || h != (webhook.SubHealth{}) {
				t.Fatalf("no subscription: %+v %v", h, err)
			}
			s := &webhook.Subscription{ID: "crm", URL: "https://crm.example.com/h", Events: []string{"enter"}, Enabled: true}
			if _, err := st.Put(ctx, s, 0); err != nil {
				t.Fatal(err)
			}
			if h, err := st.Health(ctx, "crm"); err != nil || h != (webhook.SubHealth{}) {
				t.Fatalf("no events: %+v %v", h, err)
			}

			// Two customers on two shards, nothing read: all lag.
			anna, ben := "anna", "ben"
			for webhook.ShardOf(ben) == webhook.ShardOf(anna) {
				ben += "x"
			}
			start := time.Now().Add(-time.Millisecond)
			for i := 0; i < 5; i++ {
				if err := em.Emit(ctx, webhook.Event{Type: "enter", CustomerID: anna}); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < 3; i++ {
				if err := em.Emit(ctx, webhook.Event{Type: "enter", CustomerID: ben}); err != nil {
					t.Fatal(err)
				}
			}
			h := health(t, st, "crm")
			if h.Lag != 8 || h.Pending != 0 || h.LagAtLeast || h.Oldest.Before(start.Truncate(time.Millisecond)) || time.Since(h.Oldest) > 5*time.Second {
				t.Fatalf("unread: %+v (start %v)", h, start)
			}
			firstAnna := h.Oldest

			// A worker read two of anna's and holds them: pending, and 3 + 3 unread.
			annaKey := webhook.StreamKey(webhook.ShardOf(anna))
			read := func(key string, n int64) []redis.XMessage {
				t.Helper()
				res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "sub:crm", Consumer: "deliverer", Streams: []string{key, ">"}, Count: n, Block: -1}).Result()
				if err != nil {
					t.Fatal(err)
				}
				return res[0].Messages
			}
			held := read(annaKey, 2)
			h = health(t, st, "crm")
			if h.Lag != 6 || h.Pending != 2 || !h.Oldest.Equal(firstAnna) {
				t.Fatalf("two held: %+v", h)
			}
			// Acknowledged: the oldest is the first not read.
			if err := rdb.XAck(ctx, annaKey, "sub:crm", held[0].ID, held[1].ID).Err(); err != nil {
				t.Fatal(err)
			}
			h = health(t, st, "crm")
			if h.Lag != 6 || h.Pending != 0 || !h.Oldest.After(firstAnna.Add(-time.Millisecond)) {
				t.Fatalf("two delivered: %+v", h)
			}

			// ben is erased: his entries go from the stream (XDEL, ahead of
			// the group), and customer.erased comes after them.
			read(webhook.StreamKey(webhook.ShardOf(ben)), 1)
			if _, err := em.EraseCustomer(ctx, ben); err != nil {
				t.Fatal(err)
			}
			// The entry read stays pending in Redis, deleted or not;
			// miniredis forgets it.
			h = health(t, st, "crm")
			if h.Lag != 3+1 || h.Pending != 1 && !(be.Name == "miniredis" && h.Pending == 0) {
				t.Fatalf("after an erasure: %+v", h)
			}

			// Dead letters are counted.
			if err := rdb.LPush(ctx, "nc:{hookdead:crm}:list", `{"event":{"id":"e1","type":"enter"}}`, `{"event":{"id":"e2","type":"enter"}}`).Err(); err != nil {
				t.Fatal(err)
			}
			if h = health(t, st, "crm"); h.DeadLetters != 2 {
				t.Fatalf("dead letters: %+v", h)
			}

			// Everything read and acknowledged: nothing waits.
			for _, key := range []string{annaKey, webhook.StreamKey(webhook.ShardOf(ben))} {
				for _, m := range read(key, 100) {
					rdb.XAck(ctx, key, "sub:crm", m.ID)
				}
				pend, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: key, Group: "sub:crm", Start: "-", End: "+", Count: 100}).Result()
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range pend {
					rdb.XAck(ctx, key, "sub:crm", p.ID)
				}
			}
			if h = health(t, st, "crm"); h.Lag != 0 || h.Pending != 0 || !h.Oldest.IsZero() || h.OldestAge(time.Now()) != 0 {
				t.Fatalf("all delivered: %+v", h)
			}

			// Of several subscriptions at once, each its own.
			other := &webhook.Subscription{ID: "till", URL: "https://till.example.com/h", Events: []string{"coupon.redeemed"}, Enabled: true}
			if _, err := st.Put(ctx, other, 0); err != nil {
				t.Fatal(err)
			}
			if err := em.Emit(ctx, webhook.Event{Type: "enter", CustomerID: anna}); err != nil {
				t.Fatal(err)
			}
			all, err := st.HealthOf(ctx, "crm", "till", "nobody")
			if err != nil {
				t.Fatal(err)
			}
			if all["crm"].Lag != 1 || all["till"].Lag != 1 || all["nobody"] != (webhook.SubHealth{}) || all["crm"].DeadLetters != 2 || all["till"].DeadLetters != 0 {
				t.Fatalf("several: %+v", all)
			}
		})
	}
}

// A lag Redis cannot tell is counted up to LagCountMax a shard, and said
// to be a lower bound beyond.
func TestHealthCountsALagUpToItsBound(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			rdb := be.New(t)
			ctx := context.Background()
			st := webhook.NewStore(rdb)
			if _, err := st.Put(ctx, &webhook.Subscription{ID: "crm", URL: "https://crm.example.com/h", Events: []string{"enter"}, Enabled: true}, 0); err != nil {
				t.Fatal(err)
			}
			events := make([]webhook.Event, webhook.LagCountMax+10)
			for i := range events {
				events[i] = webhook.Event{Type: "enter", CustomerID: "anna"}
			}
			if err := webhook.NewEmitter(rdb, 0).Emit(ctx, events...); err != nil {
				t.Fatal(err)
			}
			key := webhook.StreamKey(webhook.ShardOf("anna"))
			if err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "sub:crm", Consumer: "deliverer", Streams: []string{key, ">"}, Count: 1, Block: -1}).Err(); err != nil {
				t.Fatal(err)
			}
			h := health(t, st, "crm")
			if h.Pending != 1 {
				t.Fatalf("%+v", h)
			}
			switch want := int64(len(events) - 1); {
			case h.Lag == want && !h.LagAtLeast: // Redis told it
			case h.Lag == webhook.LagCountMax && h.LagAtLeast: // counted
			default:
				t.Fatalf("lag %d (at least: %v), want %d", h.Lag, h.LagAtLeast, want)
			}
		})
	}
}

func health(t *testing.T, st *webhook.Store, id string) webhook.SubHealth {
	t.Helper()
	h, err := st.Health(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
