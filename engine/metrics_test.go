package engine_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/engine"
)

// Redis errors count when Redis cannot be reached, not when it answers
// "no such key" or refuses a command.
func TestMetricsCountRedisErrors(t *testing.T) {
	rdb := srv.Client(t)
	f := setup(t, rdb)
	reg := prometheus.NewRegistry()
	client := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { client.Close() })
	engine.NewMetrics(reg, client, f.live)
	ctx := context.Background()
	client.Get(ctx, "no-such-key") // redis.Nil: an answer
	client.HIncrBy(ctx, "metrics-test", "f", 1)
	client.Incr(ctx, "metrics-test") // WRONGTYPE: an answer
	if n := counted(t, reg, "nearcast_redis_errors_total"); n != 0 {
		t.Fatalf("errors counted for answers: %v", n)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	down := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { down.Close() })
	reg2 := prometheus.NewRegistry()
	engine.NewMetrics(reg2, down, f.live)
	down.Get(ctx, "k")
	if got := counted(t, reg2, "nearcast_redis_errors_total"); got != 1 {
		t.Fatalf("errors with Redis down: %v, want 1", got)
	}
}

// counted sums the series of a counter in a registry.
func counted(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
