// Package sandbox makes the throwaway Redis a simulated walk runs on
// (engine.Simulate, POST /v1/simulate): a miniredis in this process.
package sandbox

import (
	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/engine"
)

var _ engine.Sandbox = Miniredis

// Miniredis starts an empty miniredis on loopback and answers a client
// on it; release closes both.
func Miniredis() (redis.UniversalClient, func(), error) {
	m, err := miniredis.Run()
	if err != nil {
		return nil, nil, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	return rdb, func() { rdb.Close(); m.Close() }, nil
}
