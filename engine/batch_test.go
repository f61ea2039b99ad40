package engine_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/internal/redistest"
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
						b.Do(ctx, incr, get, bad)
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
			b.Do(context.Background(), cmd)
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

// A caller waits no longer than its own deadline, however long Redis
// hangs, and whatever other callers share its pipeline; a caller whose
// deadline passed while it queued sends nothing, and its batch-mates get
// their answers all the same.
func TestBatcherKeepsToDeadlines(t *testing.T) {
	t.Run("hung Redis", func(t *testing.T) {
		rs, err := redistest.Start()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rs.Stop)
		// Only the callers' deadlines can bound the wait: the client's
		// own timeouts are far longer.
		rdb := redis.NewClient(&redis.Options{Addr: rs.Addr, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
			ContextTimeoutEnabled: true})
		t.Cleanup(func() { rdb.Close() })
		if err := rdb.Ping(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rs.Pause(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rs.Resume() })
		b := engine.NewBatcher(rdb, 1)
		var wg sync.WaitGroup
		for c := 0; c < 12; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(c) * 40 * time.Millisecond) // in several pipelines
				budget := time.Duration(200+50*(c%4)) * time.Millisecond
				ctx, cancel := context.WithTimeout(context.Background(), budget)
				defer cancel()
				start := time.Now()
				cmd := redis.NewIntCmd(ctx, "incr", "batch-test:hung")
				b.Do(ctx, cmd)
				took := time.Since(start)
				if cmd.Err() == nil {
					t.Errorf("caller %d: no error from a hung Redis", c)
				}
				if took > budget+300*time.Millisecond {
					t.Errorf("caller %d with %s to spare waited %s", c, budget, took)
				}
			}()
		}
		wg.Wait()
	})
	t.Run("caller past its deadline", func(t *testing.T) {
		rdb := srv.Client(t)
		b := engine.NewBatcher(rdb, 1)
		late, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
		defer cancel()
		<-late.Done()
		var wg sync.WaitGroup
		for c := 0; c < 64; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx := context.Background()
				if c%2 == 1 {
					ctx = late
				}
				key := fmt.Sprintf("batch-test:late:%d", c)
				for r := 1; r <= 20; r++ {
					incr := redis.NewIntCmd(ctx, "incr", key)
					b.Do(ctx, incr)
					switch {
					case c%2 == 1 && !errors.Is(incr.Err(), context.DeadlineExceeded):
						t.Errorf("caller %d, past its deadline: %v %v", c, incr.Val(), incr.Err())
						return
					case c%2 == 0 && (incr.Err() != nil || incr.Val() != int64(r)):
						t.Errorf("caller %d round %d: %v %v", c, r, incr.Val(), incr.Err())
						return
					}
				}
			}()
		}
		wg.Wait()
		if n, err := rdb.Exists(context.Background(), "batch-test:late:1", "batch-test:late:63").Result(); err != nil || n != 0 {
			t.Errorf("commands of callers past their deadline were sent: %d %v", n, err)
		}
	})
}
