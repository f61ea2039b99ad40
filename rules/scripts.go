package rules

import (
	"embed"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/internal/luascript"
)

// The Lua scripts the catalog runs in Redis, one file each in lua/ (and
// the pieces several share in lua/lib/), so that editors and linters read
// them as Lua. Each script's keys, arguments and reply are documented
// where its variable is declared, and checked by TestScripts against
// redis-server and miniredis.
//
//go:embed lua
var luaFiles embed.FS

// script loads lua/<name>.lua, after the shared pieces of lua/lib it uses.
func script(name string, libs ...string) *redis.Script {
	return luascript.Load(luaFiles, name, libs...)
}
