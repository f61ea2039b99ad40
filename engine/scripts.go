package engine

import (
	"context"
	"embed"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/internal/luascript"
)

// The Lua scripts the engine runs in Redis, one file each in lua/ (and
// the pieces several share in lua/lib/), so that editors and linters read
// them as Lua. Each script's keys, arguments and reply are documented
// where its variable is declared, and checked by TestScripts against
// redis-server and miniredis.
//
//go:embed lua
var luaFiles embed.FS

// script loads lua/<name>.lua, after the shared pieces of lua/lib it uses.
func script(name string, libs ...string) *redis.Script {
	src := luascript.Source(luaFiles, name, libs...)
	sources = append(sources, src)
	return redis.NewScript(src)
}

// sources are the texts of every script the engine runs.
var sources []string

// LoadScripts has every Redis master learn the engine's scripts, so that
// no ping pays the round trip of one Redis does not know yet (NOSCRIPT,
// then EVAL): at start, and on a cluster for every master, each of which
// otherwise learns a script on the first key of its slots a script
// touches.
func LoadScripts(ctx context.Context, rdb redis.UniversalClient) error {
	load := func(ctx context.Context, c *redis.Client) error {
		// SCRIPT LOAD itself: redis.Script's Load, queued in a pipeline,
		// would take the empty answer it has before the pipeline runs for
		// the script's hash.
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, src := range sources {
				p.ScriptLoad(ctx, src)
			}
			return nil
		})
		return err
	}
	return eachMaster(ctx, rdb, load)
}

// eachMaster runs f on every master of a cluster, or on the one Redis.
func eachMaster(ctx context.Context, rdb redis.UniversalClient, f func(context.Context, *redis.Client) error) error {
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, f)
	case *redis.Client:
		return f(ctx, c)
	}
	return fmt.Errorf("a Redis client of type %T", rdb)
}
