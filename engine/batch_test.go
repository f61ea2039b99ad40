package engine_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/engine"
)

// Many callers at once, each with commands of its own: every caller gets
// its own answers, in its own order, whether one lane carries them all or
// several share them; a failing command fails alone.
func TestBatcherGivesEachCallerItsAnswers(t *testing.T) {
	for _, lanes := range []int{1, 4} {
		t.Run(fmt.Sprintf("%d lanes", lanes), func(t *testing.T) {
			rdb := srv.Client(t)
			b := engine.NewBatcher(rdb, lanes)
			ctx := context.Background()
			const callers, rounds = 64, 50
			var wg sync.WaitGroup
			errs := make(chan error, callers)
			for c := 0; c < callers; c++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					key := fmt.Sprintf("batch-test:%d", c)
					for r := 1; r <= rounds; r++ {
						incr := redis.NewIntCmd(ctx, "incr", key)
						get := redis.NewStringCmd(ctx, "get", key)
						bad := redis.NewIntCmd(ctx, "hincrby", key, "f", 1) // a string is no hash
						b.Do(incr, get, bad)
						if incr.Val() != int64(r) || get.Val() != fmt.Sprint(r) || bad.Err() == nil {
							errs <- fmt.Errorf("caller %d round %d: incr %v %v, get %q, hincrby %v", c, r, incr.Val(), incr.Err(), get.Val(), bad.Err())
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// After Redis forgets its scripts (a restart, SCRIPT FLUSH), a script
// sent through the batcher still runs: sent whole once, by hash again
// after.
func TestBatcherRunsAScriptRedisForgot(t *testing.T) {
	rdb := srv.Client(t)
	b := engine.NewBatcher(rdb, 1)
	ctx := context.Background()
	s := redis.NewScript(`return redis.call('INCR', KEYS[1]) * tonumber(ARGV[1])`)
	for i, flush := range []bool{true, false, true} {
		if flush {
			if err := rdb.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		}
		got, err := b.RunScript(ctx, s, []string{"batch-test:script"}, 10).Int64()
		if want := int64(10 * (i + 1)); err != nil || got != want {
			t.Fatalf("run %d: %d %v, want %d", i, got, err, want)
		}
	}
}

// With Redis down, every waiting caller gets an error, and soon.
func TestBatcherWithRedisDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	b := engine.NewBatcher(rdb, 1)
	start := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < 16; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := redis.NewIntCmd(context.Background(), "incr", "k")
			b.Do(cmd)
			if cmd.Err() == nil {
				t.Error("no error from a Redis that is down")
			}
		}()
	}
	wg.Wait()
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("callers waited %s", d)
	}
}
