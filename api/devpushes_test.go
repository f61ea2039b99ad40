package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/api"
	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/engine/push"
)

// A push leaves behind its ping's answer: announced into the outbox, then
// sent by a dispatcher. GET /v1/dev/pushes waits for the outbox to empty
// (2 s at most), so that the README tour's curl right after a ping finds
// the push; here a dispatcher that takes 300 ms is played by the test.
func TestDevPushesWaitForTheOutbox(t *testing.T) {
	rdb := srv.Client(t)
	ctx := context.Background()
	log := push.NewLog(10, quiet)
	c := newClientWith(t, rdb, func(d *api.Deps) { d.Pushes = log })
	const outbox = "nc:{outbox}:stream"
	id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: outbox, Values: map[string]any{"code": "C0DE"}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		_ = log.Send(ctx, engine.Push{ID: "C0DE", CustomerID: "c-1", Title: "Hi", ExpiresAt: time.Now().Add(time.Hour)})
		rdb.XDel(ctx, outbox, id)
	}()
	res := c.admin("GET", "/v1/dev/pushes?customer_id=c-1", "")
	if res.Status != 200 || !strings.Contains(res.Raw, `"id":"C0DE"`) {
		t.Fatalf("the push sent while the call waited is not listed: %d %s", res.Status, res.Raw)
	}
	// A push no dispatcher takes: the call answers what there is, after
	// 2 s at most.
	if _, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: outbox, Values: map[string]any{"code": "STUCK"}}).Result(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if res := c.admin("GET", "/v1/dev/pushes?customer_id=c-1", ""); res.Status != 200 {
		t.Fatalf("%d %s", res.Status, res.Raw)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("waited %v for a push no dispatcher takes", waited)
	}
}
