package rules

import (
	"embed"

	"github.com/redis/go-redis/v9"
)

// The Lua scripts the catalog runs in Redis, one file each in lua/, so that
// editors and linters read them as Lua. Each script's keys, arguments and
// reply are documented where its variable is declared, and checked by
// TestScripts against redis-server.
//
//go:embed lua/*.lua
var luaFiles embed.FS

// script loads lua/<name>.lua; a missing file is a build mistake, caught by
// any test.
func script(name string) *redis.Script {
	src, err := luaFiles.ReadFile("lua/" + name + ".lua")
	if err != nil {
		panic(err)
	}
	return redis.NewScript(string(src))
}
