package rules

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/internal/luascript"
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
	e.eq("new store", e.ints(putStoreScript, keys, "s-1", `{"id":"s-1"}`, ChannelChanged), []int64{1, 1})
	e.published("1")
	e.eq("stored", e.rdb.HGet(e.ctx, keyStores, "s-1").Val(), `{"id":"s-1"}`)
	e.eq("version", e.rdb.Get(e.ctx, keyVersion).Val(), "1")
	e.eq("changed store", e.ints(putStoreScript, keys, "s-1", `{"id":"s-1","name":"x"}`, ChannelChanged), []int64{0, 2})
	e.published("2")
	e.eq("stored", e.rdb.HGet(e.ctx, keyStores, "s-1").Val(), `{"id":"s-1","name":"x"}`)
	e.eq("version", e.rdb.Get(e.ctx, keyVersion).Val(), "2")
}

// deleteScript: KEYS the documents' hash (stores or rules), version; ARGV
// id, channel. Answers the catalog's new version, published, or 0 (no
// such document: nothing raised, nothing published).
func checkDeleteScript(e catalogLuaEnv) {
	e.eq("no such store", e.num(deleteScript, []string{keyStores, keyVersion}, "s-1", ChannelChanged), int64(0))
	if n := e.rdb.Exists(e.ctx, keyVersion).Val(); n != 0 {
		e.t.Errorf("a delete of nothing wrote the version")
	}
	e.rdb.HSet(e.ctx, keyStores, "s-1", "{}", "s-2", "{}")
	e.rdb.HSet(e.ctx, keyRules, "r-1", "{}")
	e.rdb.Set(e.ctx, keyVersion, "7", 0)
	e.eq("store deleted", e.num(deleteScript, []string{keyStores, keyVersion}, "s-1", ChannelChanged), int64(8))
	e.published("8") // the first message: the delete of nothing published none
	e.eq("stores left", e.rdb.HKeys(e.ctx, keyStores).Val(), []string{"s-2"})
	e.eq("rule deleted", e.num(deleteScript, []string{keyRules, keyVersion}, "r-1", ChannelChanged), int64(9))
	e.published("9")
	e.eq("rules left", e.rdb.Exists(e.ctx, keyRules).Val(), int64(0))
	e.eq("version", e.rdb.Get(e.ctx, keyVersion).Val(), "9")
}

// putRuleScript: KEYS rules, rule_versions, the rule's history, version;
// ARGV rule id, the version the caller read (ARGV[2]), doc, channel.
// Answers the rule's new version, or -1 when its latest version is not
// the one read (nothing written).
func checkPutRuleScript(e catalogLuaEnv) {
	keys := []string{keyRules, keyRuleVersions, keyRuleHistory + "r-1", keyVersion}
	v1, v2 := `{"id":"r-1","version":1}`, `{"id":"r-1","version":2}`
	e.eq("first version", e.num(putRuleScript, keys, "r-1", 0, v1, ChannelChanged), int64(1))
	e.published("1")
	e.eq("current", e.rdb.HGet(e.ctx, keyRules, "r-1").Val(), v1)
	e.eq("rule version", e.rdb.HGet(e.ctx, keyRuleVersions, "r-1").Val(), "1")
	e.eq("history", e.rdb.LRange(e.ctx, keys[2], 0, -1).Val(), []string{v1})
	e.eq("catalog version", e.rdb.Get(e.ctx, keyVersion).Val(), "1")

	e.eq("conflict", e.num(putRuleScript, keys, "r-1", 0, v2, ChannelChanged), int64(-1))
	e.eq("current", e.rdb.HGet(e.ctx, keyRules, "r-1").Val(), v1)
	e.eq("history", e.rdb.LLen(e.ctx, keys[2]).Val(), int64(1))
	e.eq("catalog version", e.rdb.Get(e.ctx, keyVersion).Val(), "1")

	e.eq("second version", e.num(putRuleScript, keys, "r-1", 1, v2, ChannelChanged), int64(2))
	e.published("2") // the first message since "1": the conflict published none
	e.eq("current", e.rdb.HGet(e.ctx, keyRules, "r-1").Val(), v2)
	e.eq("rule version", e.rdb.HGet(e.ctx, keyRuleVersions, "r-1").Val(), "2")
	e.eq("history", e.rdb.LRange(e.ctx, keys[2], 0, -1).Val(), []string{v1, v2})
	e.eq("catalog version", e.rdb.Get(e.ctx, keyVersion).Val(), "2")
}

// catalogLuaEnv is a subtest's Redis, subscribed to ChannelChanged, with
// the checks the cases share.
type catalogLuaEnv struct {
	t   *testing.T
	ctx context.Context
	rdb redis.UniversalClient
	sub *redis.PubSub
}

func newCatalogLuaEnv(t *testing.T, rdb redis.UniversalClient) catalogLuaEnv {
	t.Helper()
	sub := rdb.Subscribe(t.Context(), ChannelChanged)
	if _, err := sub.Receive(t.Context()); err != nil { // the subscription's confirmation
		t.Fatalf("subscribe: %v", err)
	}
	t.Cleanup(func() { sub.Close() })
	return catalogLuaEnv{t: t, ctx: t.Context(), rdb: rdb, sub: sub}
}

// published checks the next message on ChannelChanged.
func (e catalogLuaEnv) published(want string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	msg, err := e.sub.ReceiveMessage(ctx)
	if err != nil {
		e.t.Fatalf("no message on %s: %v", ChannelChanged, err)
	}
	if msg.Payload != want {
		e.t.Errorf("published %q, want %q", msg.Payload, want)
	}
}

func (e catalogLuaEnv) reply(s *redis.Script, keys []string, args ...any) any {
	e.t.Helper()
	v, err := s.Run(e.ctx, e.rdb, keys, args...).Result()
	if err != nil {
		e.t.Fatalf("script %v %v: %v", keys, args, err)
	}
	return v
}

// num runs a script whose reply is an integer.
func (e catalogLuaEnv) num(s *redis.Script, keys []string, args ...any) int64 {
	e.t.Helper()
	v := e.reply(s, keys, args...)
	n, ok := v.(int64)
	if !ok {
		e.t.Fatalf("reply %#v, want an integer", v)
	}
	return n
}

// ints runs a script whose reply is an array of integers.
func (e catalogLuaEnv) ints(s *redis.Script, keys []string, args ...any) []int64 {
	e.t.Helper()
	v := e.reply(s, keys, args...)
	arr, ok := v.([]any)
	if !ok {
		e.t.Fatalf("reply %#v, want an array", v)
	}
	out := make([]int64, len(arr))
	for i, x := range arr {
		if out[i], ok = x.(int64); !ok {
			e.t.Fatalf("reply %#v: element %d is %T, want an integer", arr, i, x)
		}
	}
	return out
}

func (e catalogLuaEnv) eq(what string, got, want any) {
	e.t.Helper()
	if !reflect.DeepEqual(got, want) {
		e.t.Errorf("%s:\n got %#v\nwant %#v", what, got, want)
	}
}
