package rules

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/internal/luascript"
	"github.com/nearcast/nearcast/internal/luascript/luatest"
	"github.com/nearcast/nearcast/internal/redistest"
)

// The catalog's Lua scripts checked like code: each script of lua/ is
// called with the keys and arguments the catalog passes it, on an empty
// database of a real redis-server and of miniredis (the embedded demo's
// Redis), and its reply and effects are checked: the document written,
// the catalog's version raised and published on ChannelChanged.
//
// The package's own server (srv, of TestMain) is left to the other tests:
// this test starts one of its own, so that it depends on nothing else.

// catalogLuaCase is the test of one script.
type catalogLuaCase struct {
	name   string        // lua/<name>.lua
	script *redis.Script // the variable the catalog runs it through
	noMini string        // why it cannot run on miniredis ("": it can)
	check  func(e catalogLuaEnv)
}

func catalogLuaCases() []catalogLuaCase {
	return []catalogLuaCase{
		{name: "delete", script: deleteScript, check: checkDeleteScript},
		{name: "put_rule", script: putRuleScript, check: checkPutRuleScript},
		{name: "put_store", script: putStoreScript, check: checkPutStoreScript},
	}
}

func TestScripts(t *testing.T) {
	own, err := redistest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(own.Stop)
	for _, c := range catalogLuaCases() {
		t.Run(c.name, func(t *testing.T) {
			if c.script.Hash() != script(c.name).Hash() {
				t.Fatalf("the case %q checks a variable that does not run lua/%s.lua", c.name, c.name)
			}
			t.Run("redis-server", func(t *testing.T) {
				c.check(newCatalogLuaEnv(t, own.Client(t)))
			})
			t.Run("miniredis", func(t *testing.T) {
				if c.noMini != "" {
					t.Skip(c.noMini)
				}
				rdb, _ := redistest.Mini(t)
				c.check(newCatalogLuaEnv(t, rdb))
			})
		})
	}
}

// TestScriptsCoverEveryFile fails for a script of lua/ that no case of
// TestScripts checks, so that a new script comes with its test.
func TestScriptsCoverEveryFile(t *testing.T) {
	var names []string
	for _, c := range catalogLuaCases() {
		names = append(names, c.name)
	}
	luascript.CheckCovered(t, luaFiles, names)
}

// putStoreScript: KEYS stores, version; ARGV store id, doc, channel.
// Answers {1 when the store is new else 0, the catalog's new version},
// published on the channel.
func checkPutStoreScript(e catalogLuaEnv) {
	keys := []string{keyStores, keyVersion}
	e.Eq("new store", e.Ints(putStoreScript, keys, "s-1", `{"id":"s-1"}`, ChannelChanged), []int64{1, 1})
	e.published("1")
	e.Eq("stored", e.RDB.HGet(e.Ctx, keyStores, "s-1").Val(), `{"id":"s-1"}`)
	e.Eq("version", e.RDB.Get(e.Ctx, keyVersion).Val(), "1")
	e.Eq("changed store", e.Ints(putStoreScript, keys, "s-1", `{"id":"s-1","name":"x"}`, ChannelChanged), []int64{0, 2})
	e.published("2")
	e.Eq("stored", e.RDB.HGet(e.Ctx, keyStores, "s-1").Val(), `{"id":"s-1","name":"x"}`)
	e.Eq("version", e.RDB.Get(e.Ctx, keyVersion).Val(), "2")
}

// deleteScript: KEYS the documents' hash (stores or rules), version; ARGV
// id, channel. Answers the catalog's new version, published, or 0 (no
// such document: nothing raised, nothing published).
func checkDeleteScript(e catalogLuaEnv) {
	e.Eq("no such store", e.Num(deleteScript, []string{keyStores, keyVersion}, "s-1", ChannelChanged), int64(0))
	if n := e.RDB.Exists(e.Ctx, keyVersion).Val(); n != 0 {
		e.T.Errorf("a delete of nothing wrote the version")
	}
	e.RDB.HSet(e.Ctx, keyStores, "s-1", "{}", "s-2", "{}")
	e.RDB.HSet(e.Ctx, keyRules, "r-1", "{}")
	e.RDB.Set(e.Ctx, keyVersion, "7", 0)
	e.Eq("store deleted", e.Num(deleteScript, []string{keyStores, keyVersion}, "s-1", ChannelChanged), int64(8))
	e.published("8") // the first message: the delete of nothing published none
	e.Eq("stores left", e.RDB.HKeys(e.Ctx, keyStores).Val(), []string{"s-2"})
	e.Eq("rule deleted", e.Num(deleteScript, []string{keyRules, keyVersion}, "r-1", ChannelChanged), int64(9))
	e.published("9")
	e.Eq("rules left", e.RDB.Exists(e.Ctx, keyRules).Val(), int64(0))
	e.Eq("version", e.RDB.Get(e.Ctx, keyVersion).Val(), "9")
}

// putRuleScript: KEYS rules, rule_versions, the rule's history, version;
// ARGV rule id, the version the caller read (ARGV[2]), doc, channel.
// Answers the rule's new version, or -1 when its latest version is not
// the one read (nothing written).
func checkPutRuleScript(e catalogLuaEnv) {
	keys := []string{keyRules, keyRuleVersions, keyRuleHistory + "r-1", keyVersion}
	v1, v2 := `{"id":"r-1","version":1}`, `{"id":"r-1","version":2}`
	e.Eq("first version", e.Num(putRuleScript, keys, "r-1", 0, v1, ChannelChanged), int64(1))
	e.published("1")
	e.Eq("current", e.RDB.HGet(e.Ctx, keyRules, "r-1").Val(), v1)
	e.Eq("rule version", e.RDB.HGet(e.Ctx, keyRuleVersions, "r-1").Val(), "1")
	e.Eq("history", e.RDB.LRange(e.Ctx, keys[2], 0, -1).Val(), []string{v1})
	e.Eq("catalog version", e.RDB.Get(e.Ctx, keyVersion).Val(), "1")

	e.Eq("conflict", e.Num(putRuleScript, keys, "r-1", 0, v2, ChannelChanged), int64(-1))
	e.Eq("current", e.RDB.HGet(e.Ctx, keyRules, "r-1").Val(), v1)
	e.Eq("history", e.RDB.LLen(e.Ctx, keys[2]).Val(), int64(1))
	e.Eq("catalog version", e.RDB.Get(e.Ctx, keyVersion).Val(), "1")

	e.Eq("second version", e.Num(putRuleScript, keys, "r-1", 1, v2, ChannelChanged), int64(2))
	e.published("2") // the first message since "1": the conflict published none
	e.Eq("current", e.RDB.HGet(e.Ctx, keyRules, "r-1").Val(), v2)
	e.Eq("rule version", e.RDB.HGet(e.Ctx, keyRuleVersions, "r-1").Val(), "2")
	e.Eq("history", e.RDB.LRange(e.Ctx, keys[2], 0, -1).Val(), []string{v1, v2})
	e.Eq("catalog version", e.RDB.Get(e.Ctx, keyVersion).Val(), "2")
}

// catalogLuaEnv is a subtest's Redis, subscribed to ChannelChanged, with
// the checks the cases share.
type catalogLuaEnv struct {
	luatest.Env
	sub *redis.PubSub
}

func newCatalogLuaEnv(t *testing.T, rdb redis.UniversalClient) catalogLuaEnv {
	t.Helper()
	sub := rdb.Subscribe(t.Context(), ChannelChanged)
	if _, err := sub.Receive(t.Context()); err != nil { // the subscription's confirmation
		t.Fatalf("subscribe: %v", err)
	}
	t.Cleanup(func() { sub.Close() })
	return catalogLuaEnv{luatest.New(t, rdb), sub}
}

// published checks the next message on ChannelChanged.
func (e catalogLuaEnv) published(want string) {
	e.T.Helper()
	ctx, cancel := context.WithTimeout(e.Ctx, 5*time.Second)
	defer cancel()
	msg, err := e.sub.ReceiveMessage(ctx)
	if err != nil {
		e.T.Fatalf("no message on %s: %v", ChannelChanged, err)
	}
	if msg.Payload != want {
		e.T.Errorf("published %q, want %q", msg.Payload, want)
	}
}
