package engine

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/internal/luascript"
	"github.com/nearcast/nearcast/internal/luascript/luatest"
	"github.com/nearcast/nearcast/internal/redistest"
	"github.com/nearcast/nearcast/rules"
)

// The Lua scripts checked like code: each script of lua/ is called with
// the keys and arguments its variable's doc comment gives, on an empty
// database of a real redis-server and of miniredis (the embedded demo's
// Redis), and its reply's shape and meaning and its effects on Redis are
// checked. Where the comment and the script disagree, the test follows
// the script and says so.
//
// The package's other tests are external (engine_test) and own the
// package's redis-server; this internal test starts a server of its own.

// luaCase is the test of one script.
type luaCase struct {
	name   string        // lua/<name>.lua
	libs   []string      // the pieces of lua/lib it runs after
	script *redis.Script // the variable the engine runs it through
	noMini string        // why it cannot run on miniredis ("": it can)
	check  func(e luaEnv)
}

func TestScripts(t *testing.T) {
	srv, err := redistest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	for _, c := range luaCases() {
		t.Run(c.name, func(t *testing.T) {
			if c.script.Hash() != script(c.name, c.libs...).Hash() {
				t.Fatalf("the case %q checks a variable that does not run lua/%s.lua", c.name, c.name)
			}
			t.Run("redis-server", func(t *testing.T) {
				c.check(luaEnv{luatest.New(t, srv.Client(t))})
			})
			t.Run("miniredis", func(t *testing.T) {
				if c.noMini != "" {
					t.Skip(c.noMini)
				}
				rdb, _ := redistest.Mini(t)
				c.check(luaEnv{luatest.New(t, rdb)})
			})
		})
	}
}

// TestScriptsCoverEveryFile fails for a script of lua/ that no case of
// TestScripts checks, so that a new script comes with its test.
func TestScriptsCoverEveryFile(t *testing.T) {
	var names []string
	for _, c := range luaCases() {
		names = append(names, c.name)
	}
	luascript.CheckCovered(t, luaFiles, names)
}

func luaCases() []luaCase {
	return []luaCase{
		{name: "admit", libs: []string{"rate", "presence"}, script: admitScript, check: checkAdmit},
		{name: "drop_push", libs: []string{"journal"}, script: dropPushScript, check: checkDropPush},
		{name: "feedback_answer", libs: []string{"journal"}, script: feedbackAnswerScript, check: checkFeedbackAnswer},
		{name: "claim_token", script: claimTokenScript, check: checkClaimToken},
		{name: "commit", libs: []string{"journal"}, script: commitScript, check: checkCommit},
		{name: "defer", script: deferScript, check: checkDefer},
		{name: "delete_device", libs: []string{"presence"}, script: deleteDeviceScript, check: checkDeleteDevice},
		{name: "drop_device", libs: []string{"presence"}, script: dropDeviceScript, check: checkDropDevice},
		{name: "erase", libs: []string{"counted"}, script: eraseScript, check: checkErase},
		{name: "give_back", script: giveBackScript, check: checkGiveBack},
		{name: "index_code", script: indexCodeScript, check: checkIndexCode},
		{name: "key_rate", script: keyRateScript, check: checkKeyRate},
		{name: "learn_attributes", script: learnAttributesScript, check: checkLearnAttributes},
		{name: "mark_sent", libs: []string{"journal"}, script: markSentScript, check: checkMarkSent},
		{name: "observe", libs: []string{"rate", "trust", "journal", "presence"}, script: observeScript, check: checkObserve},
		{name: "opened", libs: []string{"journal"}, script: openedScript, check: checkOpened},
		{name: "put_device", libs: []string{"presence"}, script: putDeviceScript, check: checkPutDevice},
		{name: "put_profile", libs: []string{"counted"}, script: putProfileScript, check: checkPutProfile},
		{name: "redeem", libs: []string{"journal"}, script: redeemScript, check: checkRedeem},
		{name: "release", script: releaseScript, check: checkRelease},
		{name: "release_token", script: releaseTokenScript, check: checkReleaseToken},
		{name: "reserve", script: reserveScript, check: checkReserve},
		{name: "revoke_tokens", script: revokeTokensScript, check: checkRevokeTokens},
		{name: "settle", script: settleScript, check: checkSettle},
		{name: "suspect", script: suspectScript, check: checkSuspect}, // fraud_internal_test.go
		{name: "record", script: recordScript, check: checkRecord},
		{name: "token_generation", script: tokenGenerationScript, check: checkTokenGeneration},
	}
}

const (
	luaDay    = 24 * time.Hour
	luaMinute = int64(60000)
	// luaNowMs is a "now" of the server's clock for the rate limits: 15 s
	// into a minute, so that a refused call waits 45 s.
	luaNowMs = 30_000_000*luaMinute + 15_000
)

// tokenGenerationScript: KEYS the tokens key, ARGV[1] ms the token lives;
// answers the generation (1 when never raised) and keeps a raised one at
// least that long.
func checkTokenGeneration(e luaEnv) {
	tokens := customerKey("c-1", partTokens)
	e.Eq("generation never raised", e.Num(tokenGenerationScript, []string{tokens}, time.Hour.Milliseconds()), int64(1))
	e.Absent(tokens) // nothing to keep
	e.Do("set", tokens, "3", "px", 1000)
	e.Eq("generation raised", e.Num(tokenGenerationScript, []string{tokens}, time.Hour.Milliseconds()), int64(3))
	e.TTL(tokens, time.Hour)
	e.Eq("generation kept", e.Get(tokens), "3")
	// A TTL already longer is not shortened.
	e.Eq("generation", e.Num(tokenGenerationScript, []string{tokens}, time.Minute.Milliseconds()), int64(3))
	e.TTL(tokens, time.Hour)
}

// revokeTokensScript: KEYS the tokens key, ARGV[1] ms to keep it; raises
// the generation (from 1 when missing) and answers the new one.
func checkRevokeTokens(e luaEnv) {
	tokens := customerKey("c-1", partTokens)
	e.Eq("first revocation", e.Num(revokeTokensScript, []string{tokens}, MaxTokenTTL.Milliseconds()), int64(2))
	e.Eq("generation stored", e.Get(tokens), "2")
	e.TTL(tokens, MaxTokenTTL)
	e.Eq("second revocation", e.Num(revokeTokensScript, []string{tokens}, MaxTokenTTL.Milliseconds()), int64(3))
	e.Eq("generation stored", e.Get(tokens), "3")
}

// admitScript: KEYS tokens, rate; ARGV generation, now, limit per
// customer, per device, device id, ms the counters live. Answers {"ok"},
// {"revoked"} or {"rate_limited", ms}.
func checkAdmit(e luaEnv) {
	tokens, rate, presence := customerKey("c-1", partTokens), customerKey("c-1", partRate), customerKey("c-1", partPresence)
	keys := []string{tokens, rate, presence}
	ttl := rateWindow.Milliseconds()
	e.Do("set", tokens, "3")
	e.Eq("older token", e.Strs(admitScript, keys, 2, luaNowMs, 2, 0, "d-1", ttl), []string{"revoked"})
	e.Absent(rate) // refused before it is counted
	e.Eq("current token", e.Strs(admitScript, keys, 3, luaNowMs, 2, 0, "d-1", ttl), []string{"ok"})
	e.Eq("no token", e.Strs(admitScript, keys, 0, luaNowMs, 2, 0, "d-1", ttl), []string{"ok"})
	minute := fmt.Sprint(luaNowMs / luaMinute)
	e.Eq("counters", e.HGetAll(rate), map[string]string{"m": minute, "c": "2", "d:d-1": "2"})
	e.TTL(rate, rateWindow)
	e.Eq("over the customer's limit", e.Strs(admitScript, keys, 0, luaNowMs, 2, 0, "d-1", ttl), []string{"rate_limited", "45000"})
	e.Eq("a call over the limit is not counted", e.HGet(rate, "c"), "2")
	// The next minute starts again.
	next := minute1(luaNowMs)
	e.Eq("next minute", e.Strs(admitScript, keys, 0, next, 2, 0, "d-1", ttl), []string{"ok"})
	e.Eq("counters of the next minute", e.HGetAll(rate), map[string]string{"m": fmt.Sprint(next / luaMinute), "c": "1", "d:d-1": "1"})
	e.TTL(rate, rateWindow)
	// A device's own limit; no device id, no device counter.
	e.Eq("device within its limit", e.Strs(admitScript, keys, 0, next, 0, 1, "d-2", ttl), []string{"ok"})
	e.Eq("over the device's limit", e.Strs(admitScript, keys, 0, next, 0, 1, "d-2", ttl), []string{"rate_limited", "60000"})
	e.Eq("no device", e.Strs(admitScript, keys, 0, next, 0, 1, "", ttl), []string{"ok"})
	e.Eq("device fields", len(e.HGetAll(rate)), 4) // m, c, d:d-1, d:d-2

	// A customer with presence has the counts kept in it, with the
	// ping's: the rate key is left alone; a new minute drops the other
	// devices' counts of the last.
	nm := next / luaMinute
	e.Do("hset", presence, "#fix", lastCall(1, "2", "3", nm, 1, 77, "ios", "d-9"), "#d:d-9", "1")
	before := e.HGetAll(rate)
	e.Eq("counted in the presence", e.Strs(admitScript, keys, 0, next, 2, 0, "d-1", ttl), []string{"ok"})
	e.Eq("the presence's counts", e.HGetAll(presence), map[string]string{"#fix": lastCall(1, "2", "3", nm, 2, 77, "ios", "d-9"), "#d:d-9": "1", "#d:d-1": "1"})
	e.Eq("the rate key left alone", e.HGetAll(rate), before)
	e.Eq("over the limit in the presence", e.Strs(admitScript, keys, 0, next, 2, 0, "d-1", ttl), []string{"rate_limited", "60000"})
	later := minute1(next)
	e.Eq("a minute later", e.Strs(admitScript, keys, 0, later, 2, 0, "d-1", ttl), []string{"ok"})
	e.Eq("the presence's counts of the minute", e.HGetAll(presence), map[string]string{"#fix": lastCall(1, "2", "3", later/luaMinute, 1, 77, "ios", "d-9"), "#d:d-1": "1"})
	// A presence an older version wrote ("#fix" without the counts): the
	// rate key counts.
	e.Do("del", presence, rate)
	e.Do("hset", presence, "#fix", "1:2:3:0:0", "#dev", "d-9")
	e.Eq("an older presence", e.Strs(admitScript, keys, 0, later, 2, 0, "d-1", ttl), []string{"ok"})
	e.Eq("counted in the rate key", e.HGet(rate, "c")+" "+e.HGet(presence, "#fix"), "1 1:2:3:0:0")
}

// lastCall is a presence's "#fix" (lua/lib/presence.lua), for a fix of
// accuracy 0 that repeats none.
func lastCall(ts int64, lat, lng string, minute int64, calls int, ttlSet int64, platform, device string) string {
	return fmt.Sprintf("%d:%s:%s:0:0:%d:%d:%d:%s:%s", ts, lat, lng, minute, calls, ttlSet, platform, device)
}

func minute1(ms int64) int64 { return (ms/luaMinute + 1) * luaMinute }

// keyRateScript: KEYS the credential's counter; ARGV limit, now. Answers 0,
// or the ms until the next minute.
func checkKeyRate(e luaEnv) {
	key := credentialRateKey("secret")
	e.Eq("first call", e.Num(keyRateScript, []string{key}, 2, luaNowMs), int64(0))
	e.Eq("second call", e.Num(keyRateScript, []string{key}, 2, luaNowMs), int64(0))
	e.Eq("counter", e.Get(key), fmt.Sprintf("%d:2", luaNowMs/luaMinute))
	e.TTL(key, 2*time.Minute)
	e.Eq("over the limit", e.Num(keyRateScript, []string{key}, 2, luaNowMs), int64(45000))
	e.Eq("not counted", e.Get(key), fmt.Sprintf("%d:2", luaNowMs/luaMinute))
	e.Eq("next minute", e.Num(keyRateScript, []string{key}, 2, minute1(luaNowMs)), int64(0))
	// The script has no "0: no limit": a limit of 0 refuses every call
	// (CredentialRate.Allow never calls it with 0).
	e.Eq("limit 0", e.Num(keyRateScript, []string{credentialRateKey("other")}, 0, luaNowMs), int64(45000))
}

// eraseScript: KEYS the customer's nine keys (profile, devices,
// device_seen, presence, caps, coupons, visits, rate, tokens); ARGV the
// prefix of their coupon records, ms to keep the raised generation.
func checkErase(e luaEnv) {
	id := "c-1"
	keys := []string{
		customerKey(id, partProfile), customerKey(id, partDevices), customerKey(id, partDeviceSeen),
		customerKey(id, partPresence), customerKey(id, partCaps), customerKey(id, partCoupons),
		customerKey(id, partVisits), customerKey(id, partRate), customerKey(id, partTokens),
		customerKey(id, partFraud), customerKey(id, partEvents),
	}
	doc1, doc2 := luaDevice("d-1", "tok-1"), luaDevice("d-2", "tok-2")
	doc := `{"id":"c-1","attributes":{"tier":"gold"}}`
	e.Do("hset", keys[0], "doc", doc, "loc", "1", "push", "1", "fb", "0")
	e.Do("hset", keys[1], "d-1", doc1, "d-2", doc2)
	e.Do("hset", keys[2], "d-1", "1000")
	e.Do("hset", keys[3], "s-1", "1:1:0")
	e.Do("hset", keys[4], "*|t", "1")
	e.Do("sadd", keys[5], "CODEA", "CODEB")
	e.Do("hset", keys[6], "n", "1")
	e.Do("hset", keys[7], "c", "1:1")
	e.Do("hset", keys[9], "f:20261122", "1", "s:20261122:mocked", "1", "v:20261122:d-1", "1", "last", "1000")
	e.Do("rpush", keys[10], `{"t":"enter","s":"s-1","at":"1000"}`)
	redeemed, open := couponRecordKey(id, "CODEA"), couponRecordKey(id, "CODEB")
	e.Do("hset", redeemed, "customer_id", id, "rule_id", "r-1", "store_id", "s-1", "issued_at", "1000", "expires_at", "2000",
		"redeemed_at", "1500", "redeemed_store", "s-1", "only_store", "", "rule_tags", "food")
	e.Do("pexpire", redeemed, time.Hour.Milliseconds())
	e.Do("hset", open, "customer_id", id, "rule_id", "r-2", "store_id", "s-2", "issued_at", "1000", "expires_at", "2000", "push", "{}")

	out := e.Strs(eraseScript, keys, couponRecordKey(id, ""), MaxTokenTTL.Milliseconds())
	// {existed, doc, device docs…, "", (code, 7 fields, ms to live)…, "", codes…}
	if len(out) != 2+2+1+9+1+1 {
		e.T.Fatalf("erase answered %q", out)
	}
	e.Eq("existed", out[0], "1")
	e.Eq("what the catalog counted the profile with", out[1], "d:"+doc)
	devs := slices.Clone(out[2:4])
	slices.Sort(devs)
	e.Eq("device docs", devs, []string{doc1, doc2})
	e.Eq("end of the devices", out[4], "")
	e.Eq("redeemed coupon", out[5:13], []string{"CODEA", "r-1", "s-1", "1000", "2000", "1500", "s-1", ""})
	e.TTLString("redeemed coupon's ms to live", out[13], time.Hour)
	e.Eq("end of the redeemed", out[14], "")
	e.Eq("codes not redeemed", out[15:], []string{"CODEB"})
	e.Absent(append(keys[:8:8], keys[9], keys[10], redeemed, open)...)
	e.Eq("token generation raised", e.Get(keys[8]), "2")
	e.TTL(keys[8], MaxTokenTTL)

	// Again: nothing left but the generation, raised once more.
	e.Eq("erased again", e.Strs(eraseScript, keys, couponRecordKey(id, ""), MaxTokenTTL.Milliseconds()), []string{"0", "", "", ""})
	e.Eq("token generation raised", e.Get(keys[8]), "3")
}

// putProfileScript: KEYS profile, presence; ARGV doc, loc, push, feedback.
// Answers {created, what the profile replaced was counted with}: "a:"
// and the list profiles once kept ("attrs", which the write drops), "d:"
// and the document of one written since, "" for one from before the
// catalog (neither "attrs" nor "fb"). Without location consent the
// presence goes.
func checkPutProfile(e luaEnv) {
	keys := []string{customerKey("c-1", partProfile), customerKey("c-1", partPresence)}
	e.Do("hset", keys[1], "#ts", "1")
	e.Eq("new", e.Slice(putProfileScript, keys, `{"id":"c-1"}`, "1", "0", "1"), []any{int64(1), ""})
	e.Eq("profile", e.HGetAll(keys[0]), map[string]string{"doc": `{"id":"c-1"}`, "loc": "1", "push": "0", "fb": "1"})
	e.Eq("presence kept", e.HGet(keys[1], "#ts"), "1")
	e.NoTTL(keys[0])
	e.Eq("replaced", e.Slice(putProfileScript, keys, `{"id":"c-1","x":1}`, "1", "1", "0"), []any{int64(0), `d:{"id":"c-1"}`})
	e.Do("hset", keys[0], "attrs", "string:tier") // as profiles were written before
	e.Eq("replaced, written before", e.Slice(putProfileScript, keys, `{"id":"c-1"}`, "0", "1", "0"), []any{int64(0), "a:string:tier"})
	e.Eq("profile replaced", e.HGetAll(keys[0]), map[string]string{"doc": `{"id":"c-1"}`, "loc": "0", "push": "1", "fb": "0"})
	e.Absent(keys[1]) // no location consent
	// A profile written before the catalog: no attrs, no fb, counted with none.
	e.Do("hdel", keys[0], "fb")
	e.Eq("uncounted", e.Slice(putProfileScript, keys, `{"id":"c-1"}`, "1", "1", "0"), []any{int64(0), ""})
}

// learnAttributesScript: KEYS count, types, declared; ARGV cap, n, n
// (name, delta), then ("<type>:<name>", delta). Answers the names not
// learned.
func checkLearnAttributes(e luaEnv) {
	keys := []string{keyAttrCount, keyAttrTypes, keyAttrDeclared}
	e.Eq("two profiles gain tier", e.Num(learnAttributesScript, keys, 3, 2, "tier", 2, "vip", 1, "string:tier", 2, "bool:vip", 1), int64(0))
	e.Eq("counts", e.HGetAll(keyAttrCount), map[string]string{"tier": "2", "vip": "1"})
	e.Eq("types", e.HGetAll(keyAttrTypes), map[string]string{"string:tier": "2", "bool:vip": "1"})
	// One changes tier's type: its count stays, its types move.
	e.Eq("a type changes", e.Num(learnAttributesScript, keys, 3, 1, "tier", 0, "string:tier", -1, "number:tier", 1), int64(0))
	e.Eq("types", e.HGetAll(keyAttrTypes), map[string]string{"string:tier": "1", "number:tier": "1", "bool:vip": "1"})
	// A loss counted before its gain: negative for a while, then gone.
	e.Eq("a loss first", e.Num(learnAttributesScript, keys, 3, 1, "late", -1, "list:late", -1), int64(0))
	e.Eq("negative", e.HGet(keyAttrCount, "late"), "-1")
	e.Eq("its gain", e.Num(learnAttributesScript, keys, 3, 1, "late", 1, "list:late", 1), int64(0))
	e.Eq("counts", e.HGetAll(keyAttrCount), map[string]string{"tier": "2", "vip": "1"})
	// The catalog holds 3 names: a fourth is not learned unless declared;
	// the names it has still move.
	e.Eq("room for one", e.Num(learnAttributesScript, keys, 3, 1, "a", 1, "string:a", 1), int64(0))
	e.Eq("full", e.Num(learnAttributesScript, keys, 3, 3, "b", 1, "c", -1, "vip", -1, "string:b", 1, "string:c", -1, "bool:vip", -1), int64(2))
	e.Eq("counts", e.HGetAll(keyAttrCount), map[string]string{"tier": "2", "a": "1"})
	e.Eq("types", e.HGetAll(keyAttrTypes), map[string]string{"string:tier": "1", "number:tier": "1", "string:a": "1"})
	e.Do("hset", keyAttrDeclared, "b", `{"type":"string"}`, "d", `{"type":"number"}`)
	e.Eq("declared", e.Num(learnAttributesScript, keys, 3, 3, "b", 1, "d", 1, "e", 1, "string:b", 1, "number:d", 1, "bool:e", 1), int64(1))
	e.Eq("counts", e.HGetAll(keyAttrCount), map[string]string{"tier": "2", "a": "1", "b": "1", "d": "1"})
	// Nothing but losses: every count at 0 goes.
	e.Eq("all lost", e.Num(learnAttributesScript, keys, 3, 4, "a", -1, "b", -1, "d", -1, "tier", -2,
		"number:d", -1, "number:tier", -1, "string:a", -1, "string:b", -1, "string:tier", -1), int64(0))
	e.Absent(keyAttrCount, keyAttrTypes)
}

func luaDevice(id, token string) string {
	b, _ := json.Marshal(rules.Device{ID: id, FCMToken: token, Platform: "android"})
	return string(b)
}

// putDeviceScript: KEYS profile, devices, presence; ARGV device id, doc.
// Answers {stored, new to the customer, the doc replaced or ""}; the
// presence forgets its last device.
func checkPutDevice(e luaEnv) {
	keys := []string{customerKey("c-1", partProfile), customerKey("c-1", partDevices), customerKey("c-1", partPresence)}
	e.Do("hset", keys[2], "#ts", "1", "#dev", "d-1", "#os", "ios", "#fix", lastCall(1, "2", "3", 4, 5, 6, "ios", "d:1@x"))
	doc1, doc2 := luaDevice("d-1", "tok-1"), luaDevice("d-1", "tok-2")
	// No profile: not stored, though the device is new to the customer.
	e.Eq("no profile", e.Slice(putDeviceScript, keys, "d-1", doc1), []any{int64(0), int64(1), ""})
	e.Absent(keys[1])
	e.Do("hset", keys[0], "doc", "{}", "push", "1")
	e.Eq("new device", e.Slice(putDeviceScript, keys, "d-1", doc1), []any{int64(1), int64(1), ""})
	e.Eq("stored", e.HGet(keys[1], "d-1"), doc1)
	e.Eq("replaced", e.Slice(putDeviceScript, keys, "d-1", doc2), []any{int64(1), int64(0), doc1})
	e.Eq("stored", e.HGet(keys[1], "d-1"), doc2)
	// The last call names no device (nor the "#dev" older versions kept).
	e.Eq("last device forgotten", e.HGetAll(keys[2]), map[string]string{"#ts": "1", "#os": "ios", "#fix": lastCall(1, "2", "3", 4, 5, 6, "", "")})
}

// dropDeviceScript: KEYS devices, device_seen (the stamps as earlier
// releases kept them), presence; ARGV device id, token. Answers 1 when it
// removed the device (with its stamps), else 0.
func checkDropDevice(e luaEnv) {
	keys := []string{customerKey("c-1", partDevices), customerKey("c-1", partDeviceSeen), customerKey("c-1", partPresence)}
	e.Do("hset", keys[2], "#dev", "d-1")
	e.Eq("no device", e.Num(dropDeviceScript, keys, "d-1", "tok-1"), int64(0))
	e.Do("hset", keys[0], "d-1", luaDevice("d-1", "tok-2"), "d-2", "not json", "#seen:d-1", "1500")
	e.Do("hset", keys[1], "d-1", "1000")
	e.Eq("the device has another token", e.Num(dropDeviceScript, keys, "d-1", "tok-1"), int64(0))
	e.Eq("kept", e.HGet(keys[0], "d-1"), luaDevice("d-1", "tok-2"))
	e.Eq("its stamp kept", e.HGet(keys[0], "#seen:d-1"), "1500")
	e.Eq("a doc that is not JSON", e.Num(dropDeviceScript, keys, "d-2", "tok-1"), int64(0))
	e.Eq("the device holds the token", e.Num(dropDeviceScript, keys, "d-1", "tok-2"), int64(1))
	e.Eq("devices left", e.HGetAll(keys[0]), map[string]string{"d-2": "not json"})
	e.Absent(keys[1], keys[2])
}

// releaseTokenScript: KEYS the owner hash, or a legacy owner key; ARGV
// the holder, the token's field (none for a legacy key). Answers 1 when
// it deleted the owner, else 0.
func checkReleaseToken(e luaEnv) {
	o, other := tokenOwnerOf("tok-1"), tokenOwnerOf("tok-2")
	holder := tokenHolder("c-1", "d-1")
	e.Eq("no owner", e.Num(releaseTokenScript, []string{o.key}, holder, o.field), int64(0))
	e.Do("hset", o.key, o.field, holder)
	e.Do("hset", other.key, other.field, holder)
	e.Eq("another holder", e.Num(releaseTokenScript, []string{o.key}, tokenHolder("c-2", "d-1"), o.field), int64(0))
	e.Eq("kept", e.HGet(o.key, o.field), holder)
	e.Eq("its holder", e.Num(releaseTokenScript, []string{o.key}, holder, o.field), int64(1))
	e.Eq("the other token's owner kept", e.HGet(other.key, other.field), holder)
	e.Do("hdel", other.key, other.field)
	e.Absent(o.key, other.key)

	key := legacyTokenOwnerKey("tok-1")
	e.Eq("legacy: no owner", e.Num(releaseTokenScript, []string{key}, holder), int64(0))
	e.Do("set", key, holder)
	e.Eq("legacy: another holder", e.Num(releaseTokenScript, []string{key}, tokenHolder("c-2", "d-1")), int64(0))
	e.Eq("legacy: kept", e.Get(key), holder)
	e.Eq("legacy: its holder", e.Num(releaseTokenScript, []string{key}, holder), int64(1))
	e.Absent(key)
}

// claimTokenScript: KEYS the owner hash; ARGV the token's field, the
// holder. Answers the holder before, or nil.
func checkClaimToken(e luaEnv) {
	o := tokenOwnerOf("tok-1")
	e.NilReply("no owner before", claimTokenScript, []string{o.key}, o.field, tokenHolder("c-1", "d-1"))
	e.Eq("claimed", e.HGet(o.key, o.field), tokenHolder("c-1", "d-1"))
	e.Eq("the owner before", e.Str(claimTokenScript, []string{o.key}, o.field, tokenHolder("c-2", "d-5")), tokenHolder("c-1", "d-1"))
	e.Eq("claimed again", e.HGet(o.key, o.field), tokenHolder("c-2", "d-5"))
}

// deleteDeviceScript: KEYS devices, device_seen (the stamps as earlier
// releases kept them), presence; ARGV device id. Answers the device's
// doc, or nil when it had none, and removes it with its stamps; the
// presence forgets its last device.
func checkDeleteDevice(e luaEnv) {
	keys := []string{customerKey("c-1", partDevices), customerKey("c-1", partDeviceSeen), customerKey("c-1", partPresence)}
	e.Do("hset", keys[2], "#fix", lastCall(1, "2", "3", 4, 5, 6, "android", "d-1"))
	e.NilReply("no device", deleteDeviceScript, keys, "d-1")
	doc := luaDevice("d-1", "tok-1")
	e.Do("hset", keys[0], "d-1", doc, "d-2", luaDevice("d-2", "tok-2"), "#seen:d-1", "1500", "#seen:d-2", "2500")
	e.Do("hset", keys[1], "d-1", "1000", "d-2", "2000")
	e.Eq("deleted", e.Str(deleteDeviceScript, keys, "d-1"), doc)
	e.Eq("devices left", e.HGetAll(keys[0]), map[string]string{"d-2": luaDevice("d-2", "tok-2"), "#seen:d-2": "2500"})
	e.Eq("seen left", e.HGetAll(keys[1]), map[string]string{"d-2": "2000"})
	e.Eq("last device forgotten", e.HGetAll(keys[2]), map[string]string{"#fix": lastCall(1, "2", "3", 4, 5, 6, "", "")})
}

// giveBackScript: KEYS store-day counter, budget counter. Lowers each that
// is above 0, answers 1.
func checkGiveBack(e luaEnv) {
	storeDay, budget := storeDayKey("r-1", "s-1", "20261115"), budgetKey("r-1")
	e.Do("set", storeDay, "2", "px", luaDay.Milliseconds())
	e.Eq("given back", e.Num(giveBackScript, []string{storeDay, budget}), int64(1))
	e.Eq("store-day counter", e.Get(storeDay), "1")
	e.TTL(storeDay, luaDay) // the counter keeps its TTL
	e.Absent(budget)        // never below 0, nor created
	e.Do("set", budget, "0")
	e.Eq("given back", e.Num(giveBackScript, []string{storeDay, budget}), int64(1))
	e.Eq("store-day counter", e.Get(storeDay), "0")
	e.Eq("budget counter", e.Get(budget), "0")
}

// settleScript: KEYS intents, stream, reservations; ARGV intent, "a" or
// "d", push reference. Answers the reservations ("" for none), or nil once
// settled.
func checkSettle(e luaEnv) {
	keys := []string{keyIntents, keyOutbox, keyReserved}
	issued, dropped := intentOf("CODEAAAAAA", "c-1"), intentOf("CODEBBBBBB", "c-1")
	res := reservation{"r-1", "s-1", storeDayKey("r-1", "s-1", "20261115"), budgetKey("r-1")}.String()
	e.Do("zadd", keyIntents, 1000, issued, 2000, dropped)
	e.Do("hset", keyReserved, issued, res)
	ref := pushRef("CODEAAAAAA", "c-1")
	e.Eq("announced", e.Str(settleScript, keys, issued, "a", ref), res)
	msgs := e.RDB.XRange(e.Ctx, keyOutbox, "-", "+").Val()
	if len(msgs) != 1 || msgs[0].Values["push"] != ref {
		e.T.Fatalf("the stream holds %v, want one push %s", msgs, ref)
	}
	e.Eq("reservations taken", e.HGetAll(keyReserved), map[string]string{})
	e.Eq("intents left", e.RDB.ZRange(e.Ctx, keyIntents, 0, -1).Val(), []string{dropped})
	e.NilReply("settled already", settleScript, keys, issued, "a", ref)
	e.Eq("dropped, no reservation", e.Str(settleScript, keys, dropped, "d", pushRef("CODEBBBBBB", "c-1")), "")
	e.Absent(keyIntents)
	e.Eq("stream", e.RDB.XLen(e.Ctx, keyOutbox).Val(), int64(1)) // a dropped intent is not announced
}

// recordScript: KEYS intents, reserved; ARGV intent, units. Records while
// the intent is pending (1), and nothing once it is settled (0).
func checkRecord(e luaEnv) {
	keys := []string{keyIntents, keyReserved}
	pending, settled := intentOf("CODEAAAAAA", "c-1"), intentOf("CODEBBBBBB", "c-1")
	res := reservation{"r-1", "s-1", storeDayKey("r-1", "s-1", "20261115"), budgetKey("r-1")}.String()
	e.Do("zadd", keyIntents, 1000, pending)
	e.Eq("recorded", e.Num(recordScript, keys, pending, res), int64(1))
	e.Eq("again, with more", e.Num(recordScript, keys, pending, res+"\n"+res), int64(1))
	e.Eq("settled: not recorded", e.Num(recordScript, keys, settled, res), int64(0))
	e.Eq("records", e.HGetAll(keyReserved), map[string]string{pending: res + "\n" + res})
}

// indexCodeScript: KEYS the code's index; ARGV customer id, ms it lives.
// Answers 1, or 0 when an erasure marked the code erased ("").
func checkIndexCode(e luaEnv) {
	key := codeIndexKey("CODEAAAAAA")
	e.Eq("indexed", e.Num(indexCodeScript, []string{key}, "c-1", time.Hour.Milliseconds()), int64(1))
	e.Eq("index", e.Get(key), "c-1")
	e.TTL(key, time.Hour)
	erased := codeIndexKey("CODEBBBBBB")
	e.Do("set", erased, "", "px", erasedCodeTTL.Milliseconds())
	e.Eq("erased", e.Num(indexCodeScript, []string{erased}, "c-1", luaDay.Milliseconds()), int64(0))
	e.Eq("still marked erased", e.Get(erased), "")
	e.TTL(erased, erasedCodeTTL)
}

// reserveScript: KEYS store-day counter, budget counter; ARGV caps per
// store and day, total (0: none), dry. Answers "r", "store_cap", "budget".
func checkReserve(e luaEnv) {
	keys := []string{storeDayKey("r-1", "s-1", "20261115"), budgetKey("r-1")}
	e.Eq("dry", e.Str(reserveScript, keys, 2, 0, "1"), "r")
	e.Absent(keys...)
	e.Eq("first", e.Str(reserveScript, keys, 2, 0, "0"), "r")
	e.Eq("second", e.Str(reserveScript, keys, 2, 0, "0"), "r")
	e.Eq("store-day counter", e.Get(keys[0]), "2")
	e.Eq("budget counter", e.Get(keys[1]), "2")
	e.TTL(keys[0], 2*luaDay)
	e.NoTTL(keys[1])
	e.Eq("store full", e.Str(reserveScript, keys, 2, 0, "0"), ReasonStoreCap)
	e.Eq("budget spent", e.Str(reserveScript, keys, 0, 2, "0"), ReasonBudget)
	e.Eq("nothing taken", e.Get(keys[0])+" "+e.Get(keys[1]), "2 2")
	e.Eq("no caps", e.Str(reserveScript, keys, 0, 0, "0"), "r")
	e.Eq("counted", e.Get(keys[1]), "3")
}

// deferScript: KEYS outbox, delayed; ARGV group, entry id, due ms, push.
func checkDefer(e luaEnv) {
	e.Do("xgroup", "create", keyOutbox, outboxGroup, "$", "mkstream")
	id := e.RDB.XAdd(e.Ctx, &redis.XAddArgs{Stream: keyOutbox, Values: []string{"push", pushRef("CODEAAAAAA", "c-1")}}).Val()
	got := e.RDB.XReadGroup(e.Ctx, &redis.XReadGroupArgs{Group: outboxGroup, Consumer: "w-1", Streams: []string{keyOutbox, ">"}, Count: 1}).Val()
	if len(got) != 1 || len(got[0].Messages) != 1 {
		e.T.Fatalf("read %v", got)
	}
	payload := `{"id":"CODEAAAAAA","attempts":1}`
	e.Eq("deferred", e.Num(deferScript, []string{keyOutbox, keyDelayed}, outboxGroup, id, 5000, payload), int64(1))
	e.Eq("due", e.RDB.ZScore(e.Ctx, keyDelayed, payload).Val(), float64(5000))
	e.Eq("stream", e.RDB.XLen(e.Ctx, keyOutbox).Val(), int64(0))
	e.Eq("pending", e.RDB.XPending(e.Ctx, keyOutbox, outboxGroup).Val().Count, int64(0))
}

// releaseScript: KEYS delayed, outbox; ARGV now ms, how many at most.
// Answers how many it moved.
func checkRelease(e luaEnv) {
	keys := []string{keyDelayed, keyOutbox}
	e.Do("zadd", keyDelayed, 100, "p-1", 200, "p-2", 5000, "p-3")
	e.Eq("at most one", e.Num(releaseScript, keys, 1000, 1), int64(1))
	e.Eq("the rest", e.Num(releaseScript, keys, 1000, 64), int64(1))
	e.Eq("none due", e.Num(releaseScript, keys, 1000, 64), int64(0))
	var pushes []string
	for _, m := range e.RDB.XRange(e.Ctx, keyOutbox, "-", "+").Val() {
		pushes = append(pushes, fmt.Sprint(m.Values["push"]))
	}
	e.Eq("stream", pushes, []string{"p-1", "p-2"})
	e.Eq("still delayed", e.RDB.ZRange(e.Ctx, keyDelayed, 0, -1).Val(), []string{"p-3"})
}

// markSentScript: KEYS the coupon's record; ARGV now ms. Answers 1.
func checkMarkSent(e luaEnv) {
	rec, journal := couponRecordKey("c-1", "CODEAAAAAA"), customerKey("c-1", partEvents)
	keys := []string{rec, journal}
	e.Eq("erased coupon", e.Num(markSentScript, keys, 5000, "*", "CODEAAAAAA", "d-1"), int64(1))
	e.Absent(rec, journal) // not created again, nothing journaled
	e.Do("hset", rec, "rule_id", "r-1", "store_id", "s-1", "push", "{}")
	e.Eq("marked", e.Num(markSentScript, keys, 5000, "*", "CODEAAAAAA", "d-1"), int64(1))
	e.Eq("record", e.HGetAll(rec), map[string]string{"rule_id": "r-1", "store_id": "s-1", "sent_at": "5000"})
	e.Eq("journaled", luaFacts(e, journal), []map[string]any{{"t": "push.sent", "c": "CODEAAAAAA", "r": "r-1", "s": "s-1", "d": "d-1", "at": "5000"}})
	// Marked again (a worker stopped before its acknowledgement): journaled once.
	e.Eq("marked again", e.Num(markSentScript, keys, 6000, "*", "CODEAAAAAA", "d-1"), int64(1))
	e.Eq("journaled once", len(luaFacts(e, journal)), 1)
	// Not wanted: not journaled.
	e.Do("del", journal)
	e.Do("hdel", rec, "sent_at")
	e.Eq("marked, not wanted", e.Num(markSentScript, keys, 7000, ",push.failed,", "CODEAAAAAA", "d-1"), int64(1))
	e.Absent(journal)
}

// dropPushScript: KEYS the record, the journal; ARGV now, wanted, code,
// reason.
func checkDropPush(e luaEnv) {
	rec, journal := couponRecordKey("c-1", "CODEAAAAAA"), customerKey("c-1", partEvents)
	keys := []string{rec, journal}
	e.Eq("erased coupon", e.Num(dropPushScript, keys, 5000, "*", "CODEAAAAAA", "expired"), int64(1))
	e.Absent(rec, journal)
	e.Do("hset", rec, "rule_id", "r-1", "store_id", "s-1", "device_id", "d-1", "push", "{}")
	e.Eq("dropped", e.Num(dropPushScript, keys, 5000, ",push.failed,", "CODEAAAAAA", "no_device"), int64(1))
	e.Eq("record", e.HGetAll(rec), map[string]string{"rule_id": "r-1", "store_id": "s-1", "device_id": "d-1"})
	e.Eq("journaled", luaFacts(e, journal), []map[string]any{{"t": "push.failed", "c": "CODEAAAAAA", "r": "r-1", "s": "s-1", "d": "d-1", "at": "5000", "reason": "no_device"}})
	e.Eq("dropped again", e.Num(dropPushScript, keys, 6000, "*", "CODEAAAAAA", "no_device"), int64(1))
	e.Eq("journaled once", len(luaFacts(e, journal)), 1)
}

// feedbackAnswerScript: KEYS the question's record, visits, journal;
// ARGV now, score, comment, wanted, id.
func checkFeedbackAnswer(e luaEnv) {
	rec, visits, journal := couponRecordKey("c-1", "CODEFFFFFF"), customerKey("c-1", partVisits), customerKey("c-1", partEvents)
	keys := []string{rec, visits, journal}
	e.Eq("no question", e.Strs(feedbackAnswerScript, keys, 5000, 9, "", "*", "CODEFFFFFF"), []string{"missing"})
	e.Do("hset", rec, "rule_id", "r-1", "store_id", "s-1", "expires_at", "9000")
	e.Eq("a coupon is no question", e.Strs(feedbackAnswerScript, keys, 5000, 9, "", "*", "CODEFFFFFF"), []string{"missing"})
	e.Do("hset", rec, "kind", "feedback", "scale", "nps", "comments", "0")
	e.Eq("a comment to a question that takes none", e.Strs(feedbackAnswerScript, keys, 5000, 3, "cold coffee", "*", "CODEFFFFFF"), []string{"no_comment"})
	e.Do("hset", rec, "comments", "1")
	e.Eq("out of the scale", e.Strs(feedbackAnswerScript, keys, 5000, 11, "", "*", "CODEFFFFFF"), []string{"bad_score", "0", "10"})
	e.Eq("late", e.Strs(feedbackAnswerScript, keys, 9000, 9, "", "*", "CODEFFFFFF"), []string{"late"})
	e.Absent(visits, journal)
	e.Eq("answered", e.Strs(feedbackAnswerScript, keys, 5000, 3, "cold coffee", "*", "CODEFFFFFF"), []string{"ok", "r-1", "s-1", "nps"})
	e.Eq("record", e.HGetAll(rec), map[string]string{"rule_id": "r-1", "store_id": "s-1", "expires_at": "9000", "kind": "feedback",
		"scale": "nps", "comments": "1", "answered_at": "5000", "score": "3", "comment": "cold coffee"})
	e.Eq("visits", e.HGetAll(visits), map[string]string{"fb:s-1": "3", "fb_at": "5000", "nps": "3"})
	e.TTL(visits, 400*luaDay)
	e.Eq("journaled, without the comment", luaFacts(e, journal), []map[string]any{{"t": "feedback.answered", "c": "CODEFFFFFF",
		"r": "r-1", "s": "s-1", "at": "5000", "score": float64(3), "scale": "nps"}})
	e.Eq("once", e.Strs(feedbackAnswerScript, keys, 6000, 10, "", "*", "CODEFFFFFF"), []string{"answered"})
	// A CSAT question: 1 to 5, and no NPS.
	csat := couponRecordKey("c-1", "CODEGGGGGG")
	e.Do("hset", csat, "rule_id", "r-2", "store_id", "s-2", "expires_at", "9000", "kind", "feedback", "scale", "csat")
	e.Eq("csat out of its scale", e.Strs(feedbackAnswerScript, []string{csat, visits, journal}, 5000, 0, "", "", "CODEGGGGGG"), []string{"bad_score", "1", "5"})
	e.Eq("csat", e.Strs(feedbackAnswerScript, []string{csat, visits, journal}, 7000, 5, "", "", "CODEGGGGGG"), []string{"ok", "r-2", "s-2", "csat"})
	e.Eq("visits after csat", e.HGetAll(visits), map[string]string{"fb:s-1": "3", "fb:s-2": "5", "fb_at": "7000", "nps": "3"})
}

// luaFacts reads a customer's journal of events out.
func luaFacts(e luaEnv, journal string) []map[string]any {
	e.T.Helper()
	raw, err := e.RDB.LRange(e.Ctx, journal, 0, -1).Result()
	if err != nil {
		e.T.Fatal(err)
	}
	out := []map[string]any{}
	for _, r := range raw {
		var f map[string]any
		if err := json.Unmarshal([]byte(r), &f); err != nil {
			e.T.Fatalf("journal fact %q: %v", r, err)
		}
		out = append(out, f)
	}
	return out
}

// openedScript: KEYS the coupon's record; ARGV now ms. Answers -1 (no
// record), 1 (first open, recorded) or 0.
func checkOpened(e luaEnv) {
	rec, journal := couponRecordKey("c-1", "CODEAAAAAA"), customerKey("c-1", partEvents)
	keys := []string{rec, journal}
	e.Eq("no record", e.Num(openedScript, keys, 5000, "*", "CODEAAAAAA"), int64(-1))
	e.Absent(rec, journal)
	e.Do("hset", rec, "rule_id", "r-1", "store_id", "s-1")
	e.Eq("first open", e.Num(openedScript, keys, 5000, "*", "CODEAAAAAA"), int64(1))
	e.Eq("again", e.Num(openedScript, keys, 6000, "*", "CODEAAAAAA"), int64(0))
	e.Eq("opened_at", e.HGet(rec, "opened_at"), "5000")
	e.Eq("journaled once", luaFacts(e, journal), []map[string]any{{"t": "coupon.opened", "c": "CODEAAAAAA", "r": "r-1", "s": "s-1", "at": "5000"}})
	// An archived coupon (its customer erased): its journal is the record, not written.
	arch := archivedCouponKey("CODEBBBBBB")
	e.Do("hset", arch, "rule_id", "r-1")
	e.Eq("archived, first open", e.Num(openedScript, []string{arch, arch}, 5000, "*", "CODEBBBBBB"), int64(1))
	e.Eq("archived record", e.HGetAll(arch), map[string]string{"rule_id": "r-1", "opened_at": "5000"})
}

// redeemScript: KEYS coupon record, visits (the record itself for an
// archived coupon); ARGV now ms, store id.
func checkRedeem(e luaEnv) {
	rec, visits, fraud := couponRecordKey("c-1", "CODEAAAAAA"), customerKey("c-1", partVisits), customerKey("c-1", partFraud)
	journal := customerKey("c-1", partEvents)
	keys := []string{rec, visits, fraud, journal}
	keep := FraudRetention.Milliseconds()
	e.Eq("missing", e.Strs(redeemScript, keys, 5000, "s-1", "0", "19700101", keep, "*", "CODEAAAAAA"), []string{"missing"})
	e.Do("hset", rec, "rule_id", "r-1", "store_id", "s-1", "expires_at", "9000", "only_store", "s-1", "rule_tags", "food,drink")
	e.Eq("another store", e.Strs(redeemScript, keys, 5000, "s-2", "0", "19700101", keep, "*", "CODEAAAAAA"), []string{"store:s-1"})
	e.Eq("expired", e.Strs(redeemScript, keys, 9000, "s-1", "0", "19700101", keep, "*", "CODEAAAAAA"), []string{"expired"})
	e.Absent(visits)
	// Not issued under suspicion: refusing those changes nothing for it.
	out := e.Strs(redeemScript, keys, 5000, "s-1", "1", "19700101", keep, "*", "CODEAAAAAA")
	if len(out) == 0 || out[0] != "ok" || len(out)%2 != 1 {
		e.T.Fatalf("redeem answered %q", out)
	}
	fields := map[string]string{}
	for i := 1; i < len(out); i += 2 {
		fields[out[i]] = out[i+1]
	}
	want := map[string]string{"rule_id": "r-1", "store_id": "s-1", "expires_at": "9000", "only_store": "s-1",
		"rule_tags": "food,drink", "redeemed_at": "5000", "redeemed_store": "s-1"}
	e.Eq("record as redeemed", fields, want)
	e.Eq("record", e.HGetAll(rec), want)
	e.Eq("visits", e.HGetAll(visits), map[string]string{"redeemed": "1", "redeemed_last": "5000", "aff:food": "1", "aff:drink": "1"})
	e.Absent(fraud)
	e.Eq("journaled", luaFacts(e, journal), []map[string]any{{"t": "coupon.redeemed", "c": "CODEAAAAAA", "r": "r-1", "s": "s-1", "issued_store": "s-1", "at": "5000"}})
	e.Eq("twice", e.Strs(redeemScript, keys, 6000, "s-1", "0", "19700101", keep, "*", "CODEAAAAAA"), []string{"redeemed"})

	// Issued under suspicion: refused, changing nothing; then, not
	// refused, redeemed and counted in the fraud record.
	sus := couponRecordKey("c-1", "CODECCCCCC")
	keys[0] = sus
	e.Do("hset", sus, "rule_id", "r-1", "expires_at", "9000", "only_store", "", "rule_tags", "", "suspicion", "mocked")
	e.Eq("refused", e.Strs(redeemScript, keys, 5000, "s-1", "1", "19700101", keep, "*", "CODEAAAAAA"), []string{"suspicious", "mocked"})
	e.Eq("refused: the record unchanged", e.HGetAll(sus), map[string]string{"rule_id": "r-1", "expires_at": "9000", "only_store": "",
		"rule_tags": "", "suspicion": "mocked"})
	e.Eq("refused: visits unchanged", e.HGet(visits, "redeemed"), "1")
	e.Absent(fraud)
	if out := e.Strs(redeemScript, keys, 5000, "s-1", "0", "19700101", keep, "*", "CODEAAAAAA"); len(out) == 0 || out[0] != "ok" {
		e.T.Fatalf("redeem answered %q", out)
	}
	e.Eq("redeemed under suspicion", e.HGet(sus, "redeemed_at"), "5000")
	e.Eq("fraud record", e.HGetAll(fraud), map[string]string{"r:19700101": "1"})
	e.TTL(fraud, FraudRetention)

	// An archived coupon: its visits and fraud keys are the record, not written.
	arch := archivedCouponKey("CODEBBBBBB")
	e.Do("hset", arch, "rule_id", "r-1", "expires_at", "9000", "only_store", "", "rule_tags", "food")
	out = e.Strs(redeemScript, []string{arch, arch, arch, arch}, 5000, "s-2", "0", "19700101", keep, "*", "CODEAAAAAA")
	if len(out) == 0 || out[0] != "ok" {
		e.T.Fatalf("redeem answered %q", out)
	}
	e.Eq("journaled: the two redemptions of c-1's", len(luaFacts(e, journal)), 2)
	e.Eq("archived record", e.HGetAll(arch), map[string]string{"rule_id": "r-1", "expires_at": "9000", "only_store": "",
		"rule_tags": "food", "redeemed_at": "5000", "redeemed_store": "s-2"})
}

// commitCand is a candidate's arguments to commitScript.
type commitCand struct {
	rule, store               string
	expires                   int64
	push                      string
	perDay, perWeek, perTotal int
	side, holdout, tags, only string
	variant, segment          string
	scale                     string // a question's ("" a coupon)
}

// commitCall is a call of commitScript; its calendar fields are those of
// now in UTC, as newIssuance writes them for a customer in UTC.
type commitCall struct {
	customer, code string
	now            int64
	dry            string
	limit          int
	gap            int64
	deadline       int64
	suspicion      string
	wanted         string // the event types journaled
	fbGap          int64  // ms between two questions about a store
	fbMonthly      int    // questions a month
	cands          []commitCand
}

const commitRetention = 30 * 24 * time.Hour

func (c commitCall) keys() []string {
	return []string{customerKey(c.customer, partCaps), customerKey(c.customer, partCoupons),
		customerKey(c.customer, partVisits), couponRecordKey(c.customer, c.code), customerKey(c.customer, partProfile),
		customerKey(c.customer, partEvents)}
}

func commitFields(now int64) (day, week, oldDay, oldWeek, today string) {
	local := time.UnixMilli(now).UTC()
	year, wk := local.ISOWeek()
	oy, ow := local.AddDate(0, 0, -15).ISOWeek()
	return "d" + local.Format("20060102"), fmt.Sprintf("w%04d%02d", year, wk),
		"d" + local.AddDate(0, 0, -8).Format("20060102"), fmt.Sprintf("w%04d%02d", oy, ow), local.Format("20060102")
}

func (c commitCall) args() []any {
	day, week, oldDay, oldWeek, today := commitFields(c.now)
	dry := c.dry
	if dry == "" {
		dry = "0"
	}
	args := []any{len(c.cands), c.customer, "d-1", c.now, commitRetention.Milliseconds(), dry, day, week, oldDay, oldWeek,
		c.limit, c.gap, today, c.deadline, c.code, c.suspicion}
	for _, x := range c.cands {
		holdout := x.holdout
		if holdout == "" {
			holdout = "0"
		}
		args = append(args, x.rule, x.store, x.expires, x.push, x.perDay, x.perWeek, x.perTotal, x.side, holdout, x.tags, x.only, x.variant, x.segment, x.scale)
	}
	return append(args, c.wanted, c.fbGap, c.fbMonthly, "m202611")
}

func (c commitCall) run(e luaEnv) []string {
	e.T.Helper()
	return e.Strs(commitScript, c.keys(), c.args()...)
}

// commitScript: KEYS caps, coupons, visits, the coupon's record, profile;
// ARGV 15 shared, then 11 per candidate (see its comment).
func checkCommit(e luaEnv) {
	now := time.Now().UnixMilli() // the record's PEXPIREAT must be ahead of Redis's clock
	deadline := now + time.Minute.Milliseconds()
	expires := now + luaDay.Milliseconds()
	day, week, _, _, today := commitFields(now)
	cand := func(rule, store, side string) commitCand {
		return commitCand{rule: rule, store: store, expires: expires, push: `{"id":"push-` + rule + `"}`, side: side, tags: "food,drink"}
	}

	// No profile, then no push consent: every candidate is no_consent,
	// nothing written.
	for _, cust := range []string{"c-none", "c-noconsent"} {
		if cust == "c-noconsent" {
			e.Do("hset", customerKey(cust, partProfile), "doc", "{}", "push", "0", "loc", "1")
		}
		call := commitCall{customer: cust, code: "CODE0", now: now, deadline: deadline, cands: []commitCand{cand("r-a", "s-a", "r"), cand("r-b", "s-b", "")}}
		e.Eq(cust, call.run(e), []string{ReasonConsent, ReasonConsent})
		e.Absent(call.keys()[:4]...)
	}

	c1 := "c-1"
	e.Do("hset", customerKey(c1, partProfile), "doc", "{}", "push", "1", "loc", "1")
	caps := customerKey(c1, partCaps)
	// The rule r-a's total cap is reached; 65 fields of an old day and
	// one of an old week are pruned when an offer is counted.
	e.Do("hset", caps, "r-a|t", "1", "r-z|w202001", "1")
	for i := range 65 {
		e.Do("hset", caps, fmt.Sprintf("r-%d|d20200101", i), "1")
	}
	capped := cand("r-a", "s-a", "")
	capped.perTotal = 1
	base := commitCall{customer: c1, code: "CODE1", now: now, deadline: deadline}
	nothingWritten := func(what string, call commitCall) {
		e.T.Helper()
		e.Eq(what+": caps unchanged", len(e.HGetAll(caps)), 67)
		e.Absent(call.keys()[1:4]...)
	}

	// Handed back: a rule's capacity not reserved yet ("?"), a push not
	// rendered yet; candidates refused before are not answered.
	call := base
	call.cands = []commitCand{capped, cand("r-b", "s-b", "?"), cand("r-c", "s-c", "")}
	e.Eq("not reserved", call.run(e), []string{"need", "2"})
	nothingWritten("not reserved", call)
	unrendered := cand("r-b", "s-b", "r")
	unrendered.push = ""
	call.cands = []commitCand{unrendered}
	e.Eq("not rendered", call.run(e), []string{"need", "1"})
	nothingWritten("not rendered", call)

	// Past the deadline.
	call = base
	call.deadline = 1
	call.cands = []commitCand{capped, cand("r-b", "s-b", "r")}
	e.Eq("late", call.run(e), []string{"late"})
	nothingWritten("late", call)

	// A dry run only checks.
	call = base
	call.dry = "1"
	call.wanted = "*"
	call.cands = []commitCand{capped, cand("r-b", "s-b", "r"), cand("r-c", "s-c", "")}
	e.Eq("dry", call.run(e), []string{ReasonCap, ResultSent})
	nothingWritten("dry", call)

	// Issued: one result per candidate looked at, the last "sent" (r-c
	// after it is lower_priority, not answered).
	call.dry = "0"
	only := cand("r-b", "s-b", "r")
	only.only = "s-b"
	call.cands = []commitCand{capped, only, cand("r-c", "s-c", "")}
	e.Eq("issued", call.run(e), []string{ReasonCap, ResultSent})
	e.Eq("caps", e.HGetAll(caps), map[string]string{
		"r-a|t": "1", "*|" + day: "1", "*|t": "1", "r-b|" + day: "1", "r-b|" + week: "1", "r-b|t": "1", "*|last": fmt.Sprint(now)})
	e.TTL(caps, 400*luaDay)
	rec := couponRecordKey(c1, "CODE1")
	e.Eq("record", e.HGetAll(rec), map[string]string{
		"customer_id": c1, "device_id": "d-1", "rule_id": "r-b", "store_id": "s-b", "issued_at": fmt.Sprint(now),
		"expires_at": fmt.Sprint(expires), "rule_tags": "food,drink", "only_store": "s-b", "push": `{"id":"push-r-b"}`})
	keep := time.Duration(expires+commitRetention.Milliseconds()-now) * time.Millisecond
	e.TTL(rec, keep)
	coupons := customerKey(c1, partCoupons)
	e.Eq("coupons", e.RDB.SMembers(e.Ctx, coupons).Val(), []string{"CODE1"})
	e.TTL(coupons, keep)
	visits := customerKey(c1, partVisits)
	e.Eq("visit marked", e.HGetAll(visits), map[string]string{"offer:s-b": fmt.Sprintf("%d|r-b|t|%s", now, today)})
	e.Eq("offer journaled", luaFacts(e, customerKey(c1, partEvents)), []map[string]any{{"t": "offer.issued", "s": "s-b", "r": "r-b",
		"c": "CODE1", "d": "d-1", "at": fmt.Sprint(now), "expires_at": fmt.Sprint(expires)}})

	// The customer's own limits refuse every candidate.
	call = commitCall{customer: c1, code: "CODE2", now: now, deadline: deadline, gap: time.Minute.Milliseconds(),
		cands: []commitCand{cand("r-d", "s-d", ""), cand("r-e", "s-e", "")}}
	e.Eq("too soon", call.run(e), []string{ReasonRecent, ReasonRecent})
	call.gap, call.limit = 0, 1
	e.Eq("daily limit", call.run(e), []string{ReasonLimit, ReasonLimit})
	e.Absent(couponRecordKey(c1, "CODE2"))

	// A rule's capacity refused (the side carries the reason); the next
	// candidate wins.
	c2 := "c-2"
	e.Do("hset", customerKey(c2, partProfile), "doc", "{}", "push", "1")
	call = commitCall{customer: c2, code: "CODE3", now: now, deadline: deadline,
		cands: []commitCand{cand("r-a", "s-a", ReasonBudget), cand("r-b", "s-b", ReasonRenderError), cand("r-c", "s-c", "")}}
	e.Eq("refused by the rules' capacity", call.run(e), []string{ReasonBudget, ReasonRenderError, ResultSent})
	e.Eq("the third issued", e.HGet(couponRecordKey(c2, "CODE3"), "rule_id"), "r-c")
	e.Eq("not suspicious", e.RDB.HExists(e.Ctx, couponRecordKey(c2, "CODE3"), "suspicion").Val(), false)

	// Issued to a suspicious fix: the record keeps its signals.
	c5 := "c-suspect"
	e.Do("hset", customerKey(c5, partProfile), "doc", "{}", "push", "1")
	call = commitCall{customer: c5, code: "CODE5", now: now, deadline: deadline, suspicion: "mocked,impossible_travel",
		cands: []commitCand{cand("r-c", "s-c", "")}}
	e.Eq("issued under suspicion", call.run(e), []string{ResultSent})
	e.Eq("suspicion kept", e.HGet(couponRecordKey(c5, "CODE5"), "suspicion"), "mocked,impossible_travel")

	// A holdout: answered "holdout", the visit marked "h", no coupon, not
	// counted; it needs no push. The deadline is not checked for a holdout
	// (the doc comment says past the deadline it answers {"late"} and
	// writes nothing): the mark is written.
	for _, dl := range []int64{deadline, 1} {
		c3 := fmt.Sprintf("c-holdout-%d", dl)
		e.Do("hset", customerKey(c3, partProfile), "doc", "{}", "push", "1")
		h := cand("r-h", "s-h", "")
		h.push, h.holdout = "", "1"
		call = commitCall{customer: c3, code: "CODE4", now: now, deadline: dl, cands: []commitCand{h, cand("r-c", "s-c", "")}}
		e.Eq("holdout", call.run(e), []string{ReasonHoldout})
		e.Eq("holdout marked", e.HGetAll(customerKey(c3, partVisits)), map[string]string{"offer:s-h": fmt.Sprintf("%d|r-h|h|%s", now, today)})
		e.Absent(customerKey(c3, partCaps), customerKey(c3, partCoupons), couponRecordKey(c3, "CODE4"))
	}

	// Variants: the first given is kept in the caps, with the record; a
	// customer given another variant since is handed back the first,
	// nothing written; "!" writes the new one over a variant gone.
	c4 := "c-variants"
	e.Do("hset", customerKey(c4, partProfile), "doc", "{}", "push", "1")
	v := cand("r-v", "s-v", "")
	v.variant, v.segment = "b", "gold"
	call = commitCall{customer: c4, code: "CODE5", now: now, deadline: deadline, cands: []commitCand{v}}
	e.Eq("first variant", call.run(e), []string{ResultSent})
	e.Eq("variant kept", e.HGet(customerKey(c4, partCaps), "r-v|v"), "b")
	e.Eq("variant recorded", e.HGet(couponRecordKey(c4, "CODE5"), "variant")+" "+e.HGet(couponRecordKey(c4, "CODE5"), "segment"), "b gold")
	e.Eq("offer marked with it", e.HGet(customerKey(c4, partVisits), "offer:s-v"), fmt.Sprintf("%d|r-v|t|%s|b", now, today))
	e.Do("hdel", customerKey(c4, partCaps), "*|last", "*|"+day)
	v.variant = "a"
	call = commitCall{customer: c4, code: "CODE6", now: now, deadline: deadline, cands: []commitCand{v}}
	e.Eq("another variant: the first handed back", call.run(e), []string{"variant", "1", "b"})
	e.Absent(couponRecordKey(c4, "CODE6"))
	v.variant = "!a"
	call.cands = []commitCand{v}
	e.Eq("written over", call.run(e), []string{ResultSent})
	e.Eq("the new variant kept", e.HGet(customerKey(c4, partCaps), "r-v|v"), "a")

	// Questions (feedback): the customer's consent to be asked, at most
	// one per store per gap, so many a month; the record says what it is.
	c6 := "c-asked"
	e.Do("hset", customerKey(c6, partProfile), "doc", "{}", "push", "1", "fb", "0")
	q := cand("r-q", "s-q", "")
	q.scale = "nps:c"
	ask := func(code, store string) []string {
		q.store = store
		call := commitCall{customer: c6, code: code, now: now, deadline: deadline, fbGap: 30 * luaDay.Milliseconds(), fbMonthly: 2, cands: []commitCand{q}}
		e.Do("hdel", customerKey(c6, partCaps), "*|last", "*|"+day, "r-q|"+day, "r-q|"+week, "r-q|t")
		return call.run(e)
	}
	e.Eq("no consent to be asked", ask("CODEQ1", "s-q"), []string{ReasonConsent})
	e.Do("hset", customerKey(c6, partProfile), "fb", "1")
	e.Eq("asked", ask("CODEQ2", "s-q"), []string{ResultSent})
	e.Eq("a question's record", e.HGet(couponRecordKey(c6, "CODEQ2"), "kind")+" "+e.HGet(couponRecordKey(c6, "CODEQ2"), "scale")+" "+
		e.HGet(couponRecordKey(c6, "CODEQ2"), "comments"), "feedback nps 1")
	e.Eq("the same store within the gap", ask("CODEQ3", "s-q"), []string{"feedback_limit"})
	e.Eq("another store", ask("CODEQ4", "s-r"), []string{ResultSent})
	e.Eq("a third this month", ask("CODEQ5", "s-t"), []string{"feedback_limit"})
	e.Eq("limits kept", e.HGet(customerKey(c6, partCaps), "fb|m202611"), "2")
}

// obsStore is a store of an observeScript call.
type obsStore struct {
	id, kind   string
	thresholds []int
}

// obsCall is a call of observeScript.
type obsCall struct {
	customer   string
	ts         int64
	dry        string
	speed      float64
	lat, lng   string
	now        int64
	limC, limD int
	gen        int64
	device     string // "d-1" if empty, none if "-"
	signals    string // the server's signals, comma-separated
	accuracy   float64
	wanted     string // the event types journaled
	stores     []obsStore
}

const (
	obsTimeout  = 10 * time.Minute
	obsMaxSpeed = 10.0
)

func (c obsCall) keys() []string {
	id := c.customer
	return []string{customerKey(id, partPresence), customerKey(id, partProfile),
		customerKey(id, partVisits), customerKey(id, partCaps), customerKey(id, partRate), customerKey(id, partTokens), customerKey(id, partDevices),
		customerKey(id, partEvents)}
}

func (c obsCall) run(e luaEnv) []string {
	e.T.Helper()
	dry, lat, lng, now := c.dry, c.lat, c.lng, c.now
	if dry == "" {
		dry = "0"
	}
	if lat == "" {
		lat, lng = "48.85", "2.35"
	}
	if now == 0 {
		now = luaNowMs
	}
	device := c.device
	switch device {
	case "":
		device = "d-1"
	case "-": // none
		device = ""
	}
	args := []any{c.ts, obsTimeout.Milliseconds(), dry, device, c.speed, obsMaxSpeed, lat, lng, len(c.stores), now, c.limC, c.limD, c.gen, c.signals, c.accuracy, c.wanted}
	for _, s := range c.stores {
		args = append(args, s.id, s.kind, len(s.thresholds))
		for _, t := range s.thresholds {
			args = append(args, t)
		}
	}
	// A step that changed nothing but the last fix answers one line; the
	// test reads it as a list of one.
	reply := e.Reply(observeScript, c.keys(), args...)
	if line, ok := reply.(string); ok {
		return []string{line}
	}
	list, ok := reply.([]any)
	if !ok {
		e.T.Fatalf("reply %#v, want a line or a list", reply)
	}
	out := make([]string, len(list))
	for i, v := range list {
		if out[i], ok = v.(string); !ok {
			e.T.Fatalf("reply %#v, want strings", reply)
		}
	}
	return out
}

// observeScript: KEYS presence, profile, visits, caps, rate, tokens,
// devices, events; ARGV 16 shared, then per store id, kind, n, thresholds.
func checkObserve(e luaEnv) {
	id := "c-1"
	// The devices hash holds the devices' stamps (when each was last
	// seen): none registered yet, it must stay absent.
	presence, profile, seen := customerKey(id, partPresence), customerKey(id, partProfile), customerKey(id, partDevices)
	visits, caps, rate, tokens := customerKey(id, partVisits), customerKey(id, partCaps), customerKey(id, partRate), customerKey(id, partTokens)
	T := time.Now().UnixMilli()
	s1 := obsStore{"s-1", "s", []int{30, 60}}

	// A revoked token: refused before anything is counted.
	e.Do("set", tokens, "5")
	call := obsCall{customer: id, ts: T, speed: -1, limC: 2, gen: 3, stores: []obsStore{s1}}
	e.Eq("revoked", call.run(e), []string{"revoked"})
	e.Absent(rate)

	// Rate limits: every call counts, a customer without a profile too
	// (the doc comment's "Nothing is read or kept for a customer without
	// location consent (or without a profile)" leaves out the rate
	// counters, written before the consent is read); a call over a limit
	// changes nothing.
	call.gen = 5
	e.Eq("no profile", call.run(e), []string{ReasonConsent})
	minute := fmt.Sprint(luaNowMs / luaMinute)
	e.Eq("counted", e.HGetAll(rate), map[string]string{"m": minute, "c": "1", "d:d-1": "1"})
	e.TTL(rate, 2*time.Minute)
	call.gen = 0
	e.Eq("second call", call.run(e), []string{ReasonConsent})
	e.Eq("over the limit", call.run(e), []string{"rate_limited", "45000"})
	e.Eq("not counted", e.HGet(rate, "c"), "2")
	call.limC, call.limD = 0, 2
	e.Eq("over the device's limit", call.run(e), []string{"rate_limited", "45000"})
	e.Absent(presence, seen, visits)

	// No location consent: nothing kept.
	e.Do("hset", profile, "doc", `{"id":"c-1"}`, "loc", "0", "push", "1")
	call = obsCall{customer: id, ts: T, speed: -1, stores: []obsStore{s1}}
	e.Eq("no consent", call.run(e), []string{ReasonConsent})
	e.Absent(presence, seen, visits)

	// An enter, with the history the reply carries: a return after an
	// offer at the store a second ago.
	e.Do("hset", profile, "loc", "1")
	e.Do("hset", caps, "*|t", "4")
	e.Do("hset", visits, "n", "3", "first", "1000", "last", "5000", "prev", "4000", "redeemed", "2", "redeemed_last", "111",
		"aff:food", "2", "offer:s-1", fmt.Sprintf("%d|r-1|t|20261115|b", T-1000))
	call.stores = []obsStore{s1, {"s-2", "h", nil}}
	call.wanted = ",enter,exit,"
	journal := customerKey(id, partEvents)
	history := []string{"4", "2", "111", "1", "food", "2"} // offers received, redemptions, last, n_tags, (tag, n)
	// The device's platform, as registered; one visit open, its first
	// dwell threshold 30 s away.
	e.Do("hset", customerKey(id, partDevices), "d-1", luaDevice("d-1", "tok-1"))
	e.Eq("enter", call.run(e), slices.Concat(
		[]string{"ok", "android", "unverified", "", "30000", "1", "s-1", "1", "s-1", "0", "0", "0"},
		[]string{`{"id":"c-1"}`, "4", "5000", "1", "s-1", "1", "0"}, history,
		// Counted in all, at the store, for the variant (b), and for it at the store.
		[]string{"4", "r-1", "returned_treated", "20261115", "r-1", "returned_treated|s:s-1", "20261115",
			"r-1", "returned_treated|v:b", "20261115", "r-1", "returned_treated|v:b|s:s-1", "20261115"}))
	// The last call: the fix, the minute and the calls counted (no
	// limits here: 0), when the TTL was set, the platform and the device.
	// The key lives the visit timeout and up to a minute more: its TTL is
	// set at most once a minute of the server's clock.
	luaMin := luaNowMs / luaMinute
	e.Eq("presence", e.HGetAll(presence), map[string]string{
		"#fix": lastCall(T, "48.85", "2.35", luaMin, 0, luaNowMs, "android", "d-1"), "s-1": fmt.Sprintf("%d:%d:0", T, T)})
	e.TTL(presence, obsTimeout+time.Minute)
	// The registered device's stamp, beside it (no TTL: it goes with the
	// device); none in the key earlier releases kept them in.
	e.Eq("device seen", e.HGet(seen, "#seen:d-1"), fmt.Sprint(T))
	e.Absent(customerKey(id, partDeviceSeen))
	v := e.HGetAll(visits)
	e.Eq("visits", []string{v["n"], v["prev"], v["last"], v["first"], v["n:s-1"], v["prev:s-1"], v["last:s-1"], v["first:s-1"], v["offer:s-1"]},
		[]string{"4", "5000", fmt.Sprint(T), "1000", "1", "0", fmt.Sprint(T), fmt.Sprint(T), ""})
	e.TTL(visits, 400*luaDay)
	e.Eq("enter journaled", luaFacts(e, journal), []map[string]any{{"t": "enter", "s": "s-1", "d": "d-1", "at": fmt.Sprint(T)}})

	// A fix older than the last one seen.
	call.ts = T - 1
	e.Eq("stale", call.run(e), []string{"stale"})

	// Dwell thresholds passed; the speed derived from the last fix is 0.
	call.ts = T + 61000
	call.stores = []obsStore{s1}
	after := slices.Concat([]string{`{"id":"c-1"}`, "4", "5000", "1", "s-1", "1", "0"}, history, []string{"0"})
	e.Eq("dwell", call.run(e), slices.Concat([]string{"ok", "android", "unverified", "", "-1", "1", "s-1", "0", "0", "2", "s-1", "30", "s-1", "60", "0"}, after))
	e.Eq("presence", e.HGet(presence, "s-1"), fmt.Sprintf("%d:%d:60", T, T+61000))
	e.Eq("dwell not wanted: not journaled", len(luaFacts(e, journal)), 1)
	// A run of pings from one device writes when it was seen once; a
	// ping from another device writes it for that one, when it is
	// registered (a stamp goes with its device: none for one unknown).
	stamps := func() map[string]string {
		out := map[string]string{}
		for f, v := range e.HGetAll(seen) {
			if id, ok := strings.CutPrefix(f, "#seen:"); ok {
				out[id] = v
			}
		}
		return out
	}
	e.Eq("device seen, one device", stamps(), map[string]string{"d-1": fmt.Sprint(T)})
	other := call
	other.device, other.ts = "d-2", T+62000
	other.run(e)
	e.Eq("device seen, another device, not registered", stamps(), map[string]string{"d-1": fmt.Sprint(T)})
	e.Eq("last device", e.HGet(presence, "#fix"), lastCall(T+62000, "48.85", "2.35", luaMin, 0, luaNowMs, "", "d-2")) // not registered
	call.ts = T + 63000
	call.run(e)
	e.Eq("device seen, back to the first", stamps(), map[string]string{"d-1": fmt.Sprint(T + 63000)})
	e.Do("hset", seen, "d-2", luaDevice("d-2", "tok-2"))
	other.ts = T + 64000
	other.run(e)
	e.Eq("device seen, another device, registered", stamps(), map[string]string{"d-1": fmt.Sprint(T + 63000), "d-2": fmt.Sprint(T + 64000)})
	call.ts = T + 65000
	call.run(e)

	// An exit, with how long the visit lasted.
	call.ts = T + 70000
	call.stores = nil
	call.wanted = "*"
	e.Eq("exit", call.run(e), slices.Concat([]string{"ok", "android", "unverified", "", "-1", "0", "0", "1", "s-1", "70000", "0", "0"}, after))
	e.Eq("presence", e.HGet(presence, "s-1"), "")
	e.Eq("exit journaled", luaFacts(e, journal)[1:], []map[string]any{{"t": "exit", "s": "s-1", "d": "d-1", "at": fmt.Sprint(T + 70000), "visit_s": float64(70)}})

	// Too fast to enter, by the speed derived from the last fix: 0.01° of
	// latitude (1.1 km) in 20 s. Nothing happened: the short reply.
	call.ts, call.lat, call.lng = T+90000, "48.86", "2.35"
	call.stores = []obsStore{{"s-3", "s", nil}}
	e.Eq("too fast", call.run(e), []string{"ok", "android", "unverified", "fast_travel", "-1", "0", "0", "0", "0", "1", "s-3"})
	e.Eq("fix kept", e.HGet(presence, "#fix"), lastCall(T+90000, "48.86", "2.35", luaMin, 0, luaNowMs, "android", "d-1"))
	// Near no store: the one line (platform, trust, signals, ms to the
	// next dwell threshold, open visits).
	call.ts, call.stores = T+95000, nil
	e.Eq("near no store", call.run(e), []string{"android unverified  -1 "})
	e.Eq("fix moved", e.HGet(presence, "#fix"), lastCall(T+95000, "48.86", "2.35", luaMin, 0, luaNowMs, "android", "d-1"))
	// Without a device, the presence keeps the last one.
	nodev := call
	nodev.device, nodev.ts = "-", T+96000
	e.Eq("no device", nodev.run(e), []string{" unverified  -1 "})
	e.Eq("last device kept", e.HGet(presence, "#fix"), lastCall(T+96000, "48.86", "2.35", luaMin, 0, luaNowMs, "android", "d-1"))
	// Staying at a store: the line names the visit open, and the ms to
	// its next dwell threshold.
	call.ts, call.stores = T+100000, []obsStore{{"s-3", "s", []int{30}}}
	call.run(e)
	call.ts = T + 110000
	e.Eq("stays", call.run(e), []string{"android unverified  20000 s-3"})
	// The TTL is set again once a minute has passed on the server's
	// clock, and the fields an older version kept beside "#fix" go at
	// the next write.
	e.Do("hset", presence, "#ts", fmt.Sprint(T), "#dev", "d-1", "#os", "android")
	e.Do("pexpire", presence, 1000)
	call.ts, call.now = T+115000, luaNowMs+30000
	e.Eq("stays, in a minute", call.run(e), []string{"android unverified  15000 s-3"})
	e.TTL(presence, time.Second)
	call.ts, call.now, call.stores = T+120000, luaNowMs+60000, nil
	e.Eq("exit after a minute", call.run(e)[7:10], []string{"1", "s-3", "20000"})
	e.TTL(presence, obsTimeout+time.Minute)
	e.Eq("older fields gone, the TTL's time moved", e.HGetAll(presence), map[string]string{"#fix": lastCall(T+120000, "48.86", "2.35", luaMin+1, 0, luaNowMs+60000, "android", "d-1")})
	call.ts, call.now = T+121000, luaNowMs+61000
	e.Eq("quiet again", call.run(e), []string{"android unverified  -1 "})

	// Call counts. A customer's first call counts in the rate key, and
	// the presence it starts takes the counts over; from then on they are
	// read and written with the presence, and the rate key is left alone.
	// A call over a limit changes nothing; a stale fix and a dry run
	// count; a new minute drops the other devices' counts of the last.
	id2 := "c-2"
	p2, r2 := customerKey(id2, partPresence), customerKey(id2, partRate)
	e.Do("hset", customerKey(id2, partProfile), "doc", `{"id":"c-2"}`, "loc", "1", "push", "1")
	base := minute1(luaNowMs)
	bm := fmt.Sprint(base / luaMinute)
	c2 := obsCall{customer: id2, ts: T, speed: -1, now: base, limC: 3, limD: 2}
	counts := func() string { // the minute, the customer's calls, d-1's and d-2's
		h := e.HGetAll(p2)
		f := strings.Split(h["#fix"], ":")
		if len(f) < 10 {
			return "no last call: " + h["#fix"]
		}
		return strings.Join([]string{f[5], f[6], h["#d:d-1"], h["#d:d-2"]}, " ")
	}
	e.Eq("first call", c2.run(e), []string{" unverified  -1 "})
	e.Eq("counted in the rate key", e.HGetAll(r2), map[string]string{"m": bm, "c": "1", "d:d-1": "1"})
	e.Eq("taken over by the presence", counts(), bm+" 1 1 ")
	c2.ts = T + 1000
	e.Eq("second call", c2.run(e), []string{" unverified  -1 "})
	e.Eq("counted in the presence", counts(), bm+" 2 2 ")
	e.Eq("the rate key left alone", e.HGet(r2, "c"), "1")
	c2.ts = T + 2000
	e.Eq("over the device's limit", c2.run(e), []string{"rate_limited", "60000"})
	e.Eq("not counted", counts(), bm+" 2 2 ")
	e.Eq("the fix not moved", e.HGet(p2, "#fix"), lastCall(T+1000, "48.85", "2.35", base/luaMinute, 2, base, "", "d-1"))
	d2 := c2
	d2.device, d2.ts = "d-2", T+500
	e.Eq("a stale fix from another device", d2.run(e), []string{"stale"})
	e.Eq("counted", counts(), bm+" 3 2 1")
	e.Eq("over the customer's limit", d2.run(e), []string{"rate_limited", "60000"})
	c2.ts, c2.now, c2.dry = T+3000, base+luaMinute, "1"
	e.Eq("a dry run a minute later", c2.run(e), []string{" unverified  -1 "})
	e.Eq("counted afresh, d-2's count gone", counts(), fmt.Sprint(base/luaMinute+1)+" 1 1 ")
	e.Eq("the fix not moved by the dry run, nor its TTL", e.HGet(p2, "#fix"), lastCall(T+1000, "48.85", "2.35", base/luaMinute+1, 1, base, "", "d-1"))

	// A presence takes over the counts of the minute the rate key kept,
	// every device's: another device's calls before it still count.
	id3 := "c-3"
	p3 := customerKey(id3, partPresence)
	e.Do("hset", customerKey(id3, partProfile), "doc", `{"id":"c-3"}`, "loc", "1", "push", "1")
	admit3 := func(dev string) []string {
		return e.Strs(admitScript, []string{customerKey(id3, partTokens), customerKey(id3, partRate), p3}, 0, base, 10, 3, dev, rateWindow.Milliseconds())
	}
	for range 3 {
		e.Eq("a device's calls before any presence", admit3("d-a"), []string{"ok"})
	}
	c3 := obsCall{customer: id3, ts: T, speed: -1, now: base, limC: 10, limD: 3, device: "d:b@x"}
	c3.run(e)
	e.Eq("taken over, every device's", e.HGetAll(p3), map[string]string{
		"#fix": lastCall(T, "48.85", "2.35", base/luaMinute, 4, base, "", "d:b@x"), "#d:d:b@x": "1", "#d:d-a": "3"})
	e.Eq("the other device over its limit", admit3("d-a"), []string{"rate_limited", "60000"})
	c3.ts = T + 1000
	e.Eq("a device id with ':' is the last call's", c3.run(e), []string{" unverified  -1 "})
	e.Eq("counted", e.HGet(p3, "#d:d:b@x"), "2")

	// A presence an older version wrote ("#ts", a fix of five parts,
	// "#dev", "#os"): its fix and device are read; the rate key counts
	// until its next write, which folds the older fields into the last
	// call and takes the counts over. A stale fix and a dry run move
	// nothing, its TTL neither.
	id4 := "c-4"
	p4, r4 := customerKey(id4, partPresence), customerKey(id4, partRate)
	e.Do("hset", customerKey(id4, partProfile), "doc", `{"id":"c-4"}`, "loc", "1", "push", "1")
	old := map[string]string{"#ts": fmt.Sprint(T), "#fix": fmt.Sprintf("%d:48.85:2.35:0:0", T), "#dev": "d-1", "#os": "ios"}
	e.Do("hset", p4, "#ts", old["#ts"], "#fix", old["#fix"], "#dev", "d-1", "#os", "ios")
	e.Do("pexpire", p4, 5000)
	c4 := obsCall{customer: id4, ts: T - 1, speed: -1, now: base, limC: 5, limD: 5}
	e.Eq("stale, by the older fix", c4.run(e), []string{"stale"})
	c4.ts, c4.dry = T+1000, "1"
	e.Eq("a dry run", c4.run(e), []string{"ios unverified  -1 "})
	e.Eq("both counted in the rate key", e.HGet(r4, "c")+" "+e.HGet(r4, "d:d-1"), "2 2")
	e.Eq("the older presence untouched", e.HGetAll(p4), old)
	e.TTL(p4, 5*time.Second)
	c4.ts, c4.dry = T+2000, ""
	e.Eq("the same device: the short path", c4.run(e), []string{"ios unverified  -1 "})
	e.Eq("folded, counts taken over", e.HGetAll(p4), map[string]string{
		"#fix": lastCall(T+2000, "48.85", "2.35", base/luaMinute, 3, base, "ios", "d-1"), "#d:d-1": "3"})
	e.TTL(p4, obsTimeout+time.Minute)
	// The short path sets the TTL again once a minute; a dry run and a
	// stale fix do not.
	e.Do("pexpire", p4, 5000)
	c4.ts, c4.now, c4.dry = T+3000, base+30000, "1"
	c4.run(e)
	c4.ts, c4.dry = T+1500, ""
	e.Eq("stale", c4.run(e), []string{"stale"})
	e.TTL(p4, 5*time.Second)
	c4.ts, c4.now = T+4000, base+60000
	e.Eq("a minute on", c4.run(e), []string{"ios unverified  -1 "})
	e.TTL(p4, obsTimeout+time.Minute)

	// A dry run answers as if it had entered, and writes nothing.
	call = obsCall{customer: id, ts: T + 1_000_000, dry: "1", speed: -1, wanted: "*", stores: []obsStore{{"s-4", "s", nil}}}
	e.Eq("dry", call.run(e), slices.Concat(
		[]string{"ok", "android", "unverified", "", "-1", "1", "s-4", "1", "s-4", "0", "0", "0"},
		[]string{`{"id":"c-1"}`, "6", fmt.Sprint(T + 100000), "1", "s-4", "1", "0"}, history, []string{"0"}))
	e.Eq("dry: presence unchanged", e.HGet(presence, "#fix")+" "+e.HGet(presence, "s-4"), lastCall(T+121000, "48.86", "2.35", luaMin+1, 0, luaNowMs+60000, "android", "d-1")+" ")
	e.Eq("dry: visits unchanged", e.HGet(visits, "n"), "5")
	e.Eq("dry: nothing journaled", len(luaFacts(e, journal)), 4) // the enter and exit at s-3 before
}

// luaEnv is a subtest's Redis, with the checks the cases share.
type luaEnv struct{ luatest.Env }
