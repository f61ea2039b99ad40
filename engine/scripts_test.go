package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/internal/luascript"
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
				c.check(luaEnv{t: t, ctx: t.Context(), rdb: srv.Client(t)})
			})
			t.Run("miniredis", func(t *testing.T) {
				if c.noMini != "" {
					t.Skip(c.noMini)
				}
				rdb, _ := redistest.Mini(t)
				c.check(luaEnv{t: t, ctx: t.Context(), rdb: rdb})
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
		{name: "admit", libs: []string{"rate"}, script: admitScript, check: checkAdmit},
		{name: "commit", script: commitScript, check: checkCommit},
		{name: "defer", script: deferScript, check: checkDefer},
		{name: "delete_device", script: deleteDeviceScript, check: checkDeleteDevice},
		{name: "drop_device", script: dropDeviceScript, check: checkDropDevice},
		{name: "erase", script: eraseScript, check: checkErase},
		{name: "give_back", script: giveBackScript, check: checkGiveBack},
		{name: "index_code", script: indexCodeScript, check: checkIndexCode},
		{name: "key_rate", script: keyRateScript, check: checkKeyRate},
		{name: "mark_sent", script: markSentScript, check: checkMarkSent},
		{name: "observe", libs: []string{"rate"}, script: observeScript, check: checkObserve},
		{name: "opened", script: openedScript, check: checkOpened},
		{name: "put_device", script: putDeviceScript, check: checkPutDevice},
		{name: "redeem", script: redeemScript, check: checkRedeem},
		{name: "release", script: releaseScript, check: checkRelease},
		{name: "release_token", script: releaseTokenScript, check: checkReleaseToken},
		{name: "reserve", script: reserveScript, check: checkReserve},
		{name: "revoke_tokens", script: revokeTokensScript, check: checkRevokeTokens},
		{name: "settle", script: settleScript, check: checkSettle},
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
	e.eq("generation never raised", e.num(tokenGenerationScript, []string{tokens}, time.Hour.Milliseconds()), int64(1))
	e.absent(tokens) // nothing to keep
	e.do("set", tokens, "3", "px", 1000)
	e.eq("generation raised", e.num(tokenGenerationScript, []string{tokens}, time.Hour.Milliseconds()), int64(3))
	e.ttl(tokens, time.Hour)
	e.eq("generation kept", e.get(tokens), "3")
	// A TTL already longer is not shortened.
	e.eq("generation", e.num(tokenGenerationScript, []string{tokens}, time.Minute.Milliseconds()), int64(3))
	e.ttl(tokens, time.Hour)
}

// revokeTokensScript: KEYS the tokens key, ARGV[1] ms to keep it; raises
// the generation (from 1 when missing) and answers the new one.
func checkRevokeTokens(e luaEnv) {
	tokens := customerKey("c-1", partTokens)
	e.eq("first revocation", e.num(revokeTokensScript, []string{tokens}, MaxTokenTTL.Milliseconds()), int64(2))
	e.eq("generation stored", e.get(tokens), "2")
	e.ttl(tokens, MaxTokenTTL)
	e.eq("second revocation", e.num(revokeTokensScript, []string{tokens}, MaxTokenTTL.Milliseconds()), int64(3))
	e.eq("generation stored", e.get(tokens), "3")
}

// admitScript: KEYS tokens, rate; ARGV generation, now, limit per
// customer, per device, device id, ms the counters live. Answers {"ok"},
// {"revoked"} or {"rate_limited", ms}.
func checkAdmit(e luaEnv) {
	tokens, rate := customerKey("c-1", partTokens), customerKey("c-1", partRate)
	keys := []string{tokens, rate}
	ttl := rateWindow.Milliseconds()
	e.do("set", tokens, "3")
	e.eq("older token", e.strs(admitScript, keys, 2, luaNowMs, 2, 0, "d-1", ttl), []string{"revoked"})
	e.absent(rate) // refused before it is counted
	e.eq("current token", e.strs(admitScript, keys, 3, luaNowMs, 2, 0, "d-1", ttl), []string{"ok"})
	e.eq("no token", e.strs(admitScript, keys, 0, luaNowMs, 2, 0, "d-1", ttl), []string{"ok"})
	minute := fmt.Sprint(luaNowMs / luaMinute)
	e.eq("counters", e.hgetall(rate), map[string]string{"c": minute + ":2", "d:d-1": minute + ":2"})
	e.ttl(rate, rateWindow)
	e.eq("over the customer's limit", e.strs(admitScript, keys, 0, luaNowMs, 2, 0, "d-1", ttl), []string{"rate_limited", "45000"})
	e.eq("a call over the limit is not counted", e.hget(rate, "c"), minute+":2")
	// The next minute starts again.
	next := minute1(luaNowMs)
	e.eq("next minute", e.strs(admitScript, keys, 0, next, 2, 0, "d-1", ttl), []string{"ok"})
	e.eq("counter of the next minute", e.hget(rate, "c"), fmt.Sprint(next/luaMinute)+":1")
	// A device's own limit; no device id, no device counter.
	e.eq("device within its limit", e.strs(admitScript, keys, 0, next, 0, 1, "d-2", ttl), []string{"ok"})
	e.eq("over the device's limit", e.strs(admitScript, keys, 0, next, 0, 1, "d-2", ttl), []string{"rate_limited", "60000"})
	e.eq("no device", e.strs(admitScript, keys, 0, next, 0, 1, "", ttl), []string{"ok"})
	e.eq("device fields", len(e.hgetall(rate)), 3) // c, d:d-1, d:d-2
}

func minute1(ms int64) int64 { return (ms/luaMinute + 1) * luaMinute }

// keyRateScript: KEYS the credential's counter; ARGV limit, now. Answers 0,
// or the ms until the next minute.
func checkKeyRate(e luaEnv) {
	key := credentialRateKey("secret")
	e.eq("first call", e.num(keyRateScript, []string{key}, 2, luaNowMs), int64(0))
	e.eq("second call", e.num(keyRateScript, []string{key}, 2, luaNowMs), int64(0))
	e.eq("counter", e.get(key), fmt.Sprintf("%d:2", luaNowMs/luaMinute))
	e.ttl(key, 2*time.Minute)
	e.eq("over the limit", e.num(keyRateScript, []string{key}, 2, luaNowMs), int64(45000))
	e.eq("not counted", e.get(key), fmt.Sprintf("%d:2", luaNowMs/luaMinute))
	e.eq("next minute", e.num(keyRateScript, []string{key}, 2, minute1(luaNowMs)), int64(0))
	// The script has no "0: no limit": a limit of 0 refuses every call
	// (CredentialRate.Allow never calls it with 0).
	e.eq("limit 0", e.num(keyRateScript, []string{credentialRateKey("other")}, 0, luaNowMs), int64(45000))
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
	}
	doc1, doc2 := luaDevice("d-1", "tok-1"), luaDevice("d-2", "tok-2")
	e.do("hset", keys[0], "doc", `{"id":"c-1"}`, "loc", "1", "push", "1")
	e.do("hset", keys[1], "d-1", doc1, "d-2", doc2)
	e.do("hset", keys[2], "d-1", "1000")
	e.do("hset", keys[3], "s-1", "1:1:0")
	e.do("hset", keys[4], "*|t", "1")
	e.do("sadd", keys[5], "CODEA", "CODEB")
	e.do("hset", keys[6], "n", "1")
	e.do("hset", keys[7], "c", "1:1")
	redeemed, open := couponRecordKey(id, "CODEA"), couponRecordKey(id, "CODEB")
	e.do("hset", redeemed, "customer_id", id, "rule_id", "r-1", "store_id", "s-1", "issued_at", "1000", "expires_at", "2000",
		"redeemed_at", "1500", "redeemed_store", "s-1", "only_store", "", "rule_tags", "food")
	e.do("pexpire", redeemed, time.Hour.Milliseconds())
	e.do("hset", open, "customer_id", id, "rule_id", "r-2", "store_id", "s-2", "issued_at", "1000", "expires_at", "2000", "push", "{}")

	out := e.strs(eraseScript, keys, couponRecordKey(id, ""), MaxTokenTTL.Milliseconds())
	// {existed, device docs…, "", (code, 7 fields, ms to live)…, "", codes…}
	if len(out) != 1+2+1+9+1+1 {
		e.t.Fatalf("erase answered %q", out)
	}
	e.eq("existed", out[0], "1")
	devs := slices.Clone(out[1:3])
	slices.Sort(devs)
	e.eq("device docs", devs, []string{doc1, doc2})
	e.eq("end of the devices", out[3], "")
	e.eq("redeemed coupon", out[4:12], []string{"CODEA", "r-1", "s-1", "1000", "2000", "1500", "s-1", ""})
	e.ttlString("redeemed coupon's ms to live", out[12], time.Hour)
	e.eq("end of the redeemed", out[13], "")
	e.eq("codes not redeemed", out[14:], []string{"CODEB"})
	e.absent(append(keys[:8:8], redeemed, open)...)
	e.eq("token generation raised", e.get(keys[8]), "2")
	e.ttl(keys[8], MaxTokenTTL)

	// Again: nothing left but the generation, raised once more.
	e.eq("erased again", e.strs(eraseScript, keys, couponRecordKey(id, ""), MaxTokenTTL.Milliseconds()), []string{"0", "", ""})
	e.eq("token generation raised", e.get(keys[8]), "3")
}

func luaDevice(id, token string) string {
	b, _ := json.Marshal(rules.Device{ID: id, FCMToken: token, Platform: "android"})
	return string(b)
}

// putDeviceScript: KEYS profile, devices; ARGV device id, doc. Answers
// {stored, new to the customer, the doc replaced or ""}.
func checkPutDevice(e luaEnv) {
	keys := []string{customerKey("c-1", partProfile), customerKey("c-1", partDevices)}
	doc1, doc2 := luaDevice("d-1", "tok-1"), luaDevice("d-1", "tok-2")
	// No profile: not stored, though the device is new to the customer.
	e.eq("no profile", e.slice(putDeviceScript, keys, "d-1", doc1), []any{int64(0), int64(1), ""})
	e.absent(keys[1])
	e.do("hset", keys[0], "doc", "{}", "push", "1")
	e.eq("new device", e.slice(putDeviceScript, keys, "d-1", doc1), []any{int64(1), int64(1), ""})
	e.eq("stored", e.hget(keys[1], "d-1"), doc1)
	e.eq("replaced", e.slice(putDeviceScript, keys, "d-1", doc2), []any{int64(1), int64(0), doc1})
	e.eq("stored", e.hget(keys[1], "d-1"), doc2)
}

// dropDeviceScript: KEYS devices, device_seen; ARGV device id, token.
// Answers 1 when it removed the device, else 0.
func checkDropDevice(e luaEnv) {
	keys := []string{customerKey("c-1", partDevices), customerKey("c-1", partDeviceSeen)}
	e.eq("no device", e.num(dropDeviceScript, keys, "d-1", "tok-1"), int64(0))
	e.do("hset", keys[0], "d-1", luaDevice("d-1", "tok-2"), "d-2", "not json")
	e.do("hset", keys[1], "d-1", "1000")
	e.eq("the device has another token", e.num(dropDeviceScript, keys, "d-1", "tok-1"), int64(0))
	e.eq("kept", e.hget(keys[0], "d-1"), luaDevice("d-1", "tok-2"))
	e.eq("a doc that is not JSON", e.num(dropDeviceScript, keys, "d-2", "tok-1"), int64(0))
	e.eq("the device holds the token", e.num(dropDeviceScript, keys, "d-1", "tok-2"), int64(1))
	e.eq("devices left", e.hgetall(keys[0]), map[string]string{"d-2": "not json"})
	e.absent(keys[1])
}

// releaseTokenScript: KEYS the owner key; ARGV the holder. Answers 1 when
// it deleted the key, else 0.
func checkReleaseToken(e luaEnv) {
	key := tokenOwnerKey("tok-1")
	e.eq("no owner", e.num(releaseTokenScript, []string{key}, tokenHolder("c-1", "d-1")), int64(0))
	e.do("set", key, tokenHolder("c-1", "d-1"))
	e.eq("another holder", e.num(releaseTokenScript, []string{key}, tokenHolder("c-2", "d-1")), int64(0))
	e.eq("kept", e.get(key), tokenHolder("c-1", "d-1"))
	e.eq("its holder", e.num(releaseTokenScript, []string{key}, tokenHolder("c-1", "d-1")), int64(1))
	e.absent(key)
}

// deleteDeviceScript: KEYS devices, device_seen; ARGV device id. Answers
// the device's doc, or nil when it had none.
func checkDeleteDevice(e luaEnv) {
	keys := []string{customerKey("c-1", partDevices), customerKey("c-1", partDeviceSeen)}
	e.nilReply("no device", deleteDeviceScript, keys, "d-1")
	doc := luaDevice("d-1", "tok-1")
	e.do("hset", keys[0], "d-1", doc, "d-2", luaDevice("d-2", "tok-2"))
	e.do("hset", keys[1], "d-1", "1000", "d-2", "2000")
	e.eq("deleted", e.str(deleteDeviceScript, keys, "d-1"), doc)
	e.eq("devices left", len(e.hgetall(keys[0])), 1)
	e.eq("seen left", e.hgetall(keys[1]), map[string]string{"d-2": "2000"})
}

// giveBackScript: KEYS store-day counter, budget counter. Lowers each that
// is above 0, answers 1.
func checkGiveBack(e luaEnv) {
	storeDay, budget := storeDayKey("r-1", "s-1", "20261115"), budgetKey("r-1")
	e.do("set", storeDay, "2", "px", luaDay.Milliseconds())
	e.eq("given back", e.num(giveBackScript, []string{storeDay, budget}), int64(1))
	e.eq("store-day counter", e.get(storeDay), "1")
	e.ttl(storeDay, luaDay) // the counter keeps its TTL
	e.absent(budget)        // never below 0, nor created
	e.do("set", budget, "0")
	e.eq("given back", e.num(giveBackScript, []string{storeDay, budget}), int64(1))
	e.eq("store-day counter", e.get(storeDay), "0")
	e.eq("budget counter", e.get(budget), "0")
}

// settleScript: KEYS intents, stream, reservations; ARGV intent, "a" or
// "d", push reference. Answers the reservations ("" for none), or nil once
// settled.
func checkSettle(e luaEnv) {
	keys := []string{keyIntents, keyOutbox, keyReserved}
	issued, dropped := intentOf("CODEAAAAAA", "c-1"), intentOf("CODEBBBBBB", "c-1")
	res := reservation{"r-1", "s-1", storeDayKey("r-1", "s-1", "20261115"), budgetKey("r-1")}.String()
	e.do("zadd", keyIntents, 1000, issued, 2000, dropped)
	e.do("hset", keyReserved, issued, res)
	ref := pushRef("CODEAAAAAA", "c-1")
	e.eq("announced", e.str(settleScript, keys, issued, "a", ref), res)
	msgs := e.rdb.XRange(e.ctx, keyOutbox, "-", "+").Val()
	if len(msgs) != 1 || msgs[0].Values["push"] != ref {
		e.t.Fatalf("the stream holds %v, want one push %s", msgs, ref)
	}
	e.eq("reservations taken", e.hgetall(keyReserved), map[string]string{})
	e.eq("intents left", e.rdb.ZRange(e.ctx, keyIntents, 0, -1).Val(), []string{dropped})
	e.nilReply("settled already", settleScript, keys, issued, "a", ref)
	e.eq("dropped, no reservation", e.str(settleScript, keys, dropped, "d", pushRef("CODEBBBBBB", "c-1")), "")
	e.absent(keyIntents)
	e.eq("stream", e.rdb.XLen(e.ctx, keyOutbox).Val(), int64(1)) // a dropped intent is not announced
}

// indexCodeScript: KEYS the code's index; ARGV customer id, ms it lives.
// Answers 1, or 0 when an erasure marked the code erased ("").
func checkIndexCode(e luaEnv) {
	key := codeIndexKey("CODEAAAAAA")
	e.eq("indexed", e.num(indexCodeScript, []string{key}, "c-1", time.Hour.Milliseconds()), int64(1))
	e.eq("index", e.get(key), "c-1")
	e.ttl(key, time.Hour)
	erased := codeIndexKey("CODEBBBBBB")
	e.do("set", erased, "", "px", erasedCodeTTL.Milliseconds())
	e.eq("erased", e.num(indexCodeScript, []string{erased}, "c-1", luaDay.Milliseconds()), int64(0))
	e.eq("still marked erased", e.get(erased), "")
	e.ttl(erased, erasedCodeTTL)
}

// reserveScript: KEYS store-day counter, budget counter; ARGV caps per
// store and day, total (0: none), dry. Answers "r", "store_cap", "budget".
func checkReserve(e luaEnv) {
	keys := []string{storeDayKey("r-1", "s-1", "20261115"), budgetKey("r-1")}
	e.eq("dry", e.str(reserveScript, keys, 2, 0, "1"), "r")
	e.absent(keys...)
	e.eq("first", e.str(reserveScript, keys, 2, 0, "0"), "r")
	e.eq("second", e.str(reserveScript, keys, 2, 0, "0"), "r")
	e.eq("store-day counter", e.get(keys[0]), "2")
	e.eq("budget counter", e.get(keys[1]), "2")
	e.ttl(keys[0], 2*luaDay)
	e.noTTL(keys[1])
	e.eq("store full", e.str(reserveScript, keys, 2, 0, "0"), ReasonStoreCap)
	e.eq("budget spent", e.str(reserveScript, keys, 0, 2, "0"), ReasonBudget)
	e.eq("nothing taken", e.get(keys[0])+" "+e.get(keys[1]), "2 2")
	e.eq("no caps", e.str(reserveScript, keys, 0, 0, "0"), "r")
	e.eq("counted", e.get(keys[1]), "3")
}

// deferScript: KEYS outbox, delayed; ARGV group, entry id, due ms, push.
func checkDefer(e luaEnv) {
	e.do("xgroup", "create", keyOutbox, outboxGroup, "$", "mkstream")
	id := e.rdb.XAdd(e.ctx, &redis.XAddArgs{Stream: keyOutbox, Values: []string{"push", pushRef("CODEAAAAAA", "c-1")}}).Val()
	got := e.rdb.XReadGroup(e.ctx, &redis.XReadGroupArgs{Group: outboxGroup, Consumer: "w-1", Streams: []string{keyOutbox, ">"}, Count: 1}).Val()
	if len(got) != 1 || len(got[0].Messages) != 1 {
		e.t.Fatalf("read %v", got)
	}
	payload := `{"id":"CODEAAAAAA","attempts":1}`
	e.eq("deferred", e.num(deferScript, []string{keyOutbox, keyDelayed}, outboxGroup, id, 5000, payload), int64(1))
	e.eq("due", e.rdb.ZScore(e.ctx, keyDelayed, payload).Val(), float64(5000))
	e.eq("stream", e.rdb.XLen(e.ctx, keyOutbox).Val(), int64(0))
	e.eq("pending", e.rdb.XPending(e.ctx, keyOutbox, outboxGroup).Val().Count, int64(0))
}

// releaseScript: KEYS delayed, outbox; ARGV now ms, how many at most.
// Answers how many it moved.
func checkRelease(e luaEnv) {
	keys := []string{keyDelayed, keyOutbox}
	e.do("zadd", keyDelayed, 100, "p-1", 200, "p-2", 5000, "p-3")
	e.eq("at most one", e.num(releaseScript, keys, 1000, 1), int64(1))
	e.eq("the rest", e.num(releaseScript, keys, 1000, 64), int64(1))
	e.eq("none due", e.num(releaseScript, keys, 1000, 64), int64(0))
	var pushes []string
	for _, m := range e.rdb.XRange(e.ctx, keyOutbox, "-", "+").Val() {
		pushes = append(pushes, fmt.Sprint(m.Values["push"]))
	}
	e.eq("stream", pushes, []string{"p-1", "p-2"})
	e.eq("still delayed", e.rdb.ZRange(e.ctx, keyDelayed, 0, -1).Val(), []string{"p-3"})
}

// markSentScript: KEYS the coupon's record; ARGV now ms. Answers 1.
func checkMarkSent(e luaEnv) {
	rec := couponRecordKey("c-1", "CODEAAAAAA")
	e.eq("erased coupon", e.num(markSentScript, []string{rec}, 5000), int64(1))
	e.absent(rec) // not created again
	e.do("hset", rec, "rule_id", "r-1", "push", "{}")
	e.eq("marked", e.num(markSentScript, []string{rec}, 5000), int64(1))
	e.eq("record", e.hgetall(rec), map[string]string{"rule_id": "r-1", "sent_at": "5000"})
}

// openedScript: KEYS the coupon's record; ARGV now ms. Answers -1 (no
// record), 1 (first open, recorded) or 0.
func checkOpened(e luaEnv) {
	rec := couponRecordKey("c-1", "CODEAAAAAA")
	e.eq("no record", e.num(openedScript, []string{rec}, 5000), int64(-1))
	e.absent(rec)
	e.do("hset", rec, "rule_id", "r-1")
	e.eq("first open", e.num(openedScript, []string{rec}, 5000), int64(1))
	e.eq("again", e.num(openedScript, []string{rec}, 6000), int64(0))
	e.eq("opened_at", e.hget(rec, "opened_at"), "5000")
}

// redeemScript: KEYS coupon record, visits (the record itself for an
// archived coupon); ARGV now ms, store id.
func checkRedeem(e luaEnv) {
	rec, visits := couponRecordKey("c-1", "CODEAAAAAA"), customerKey("c-1", partVisits)
	keys := []string{rec, visits}
	e.eq("missing", e.strs(redeemScript, keys, 5000, "s-1"), []string{"missing"})
	e.do("hset", rec, "rule_id", "r-1", "store_id", "s-1", "expires_at", "9000", "only_store", "s-1", "rule_tags", "food,drink")
	e.eq("another store", e.strs(redeemScript, keys, 5000, "s-2"), []string{"store:s-1"})
	e.eq("expired", e.strs(redeemScript, keys, 9000, "s-1"), []string{"expired"})
	e.absent(visits)
	out := e.strs(redeemScript, keys, 5000, "s-1")
	if len(out) == 0 || out[0] != "ok" || len(out)%2 != 1 {
		e.t.Fatalf("redeem answered %q", out)
	}
	fields := map[string]string{}
	for i := 1; i < len(out); i += 2 {
		fields[out[i]] = out[i+1]
	}
	want := map[string]string{"rule_id": "r-1", "store_id": "s-1", "expires_at": "9000", "only_store": "s-1",
		"rule_tags": "food,drink", "redeemed_at": "5000", "redeemed_store": "s-1"}
	e.eq("record as redeemed", fields, want)
	e.eq("record", e.hgetall(rec), want)
	e.eq("visits", e.hgetall(visits), map[string]string{"redeemed": "1", "redeemed_last": "5000", "aff:food": "1", "aff:drink": "1"})
	e.eq("twice", e.strs(redeemScript, keys, 6000, "s-1"), []string{"redeemed"})

	// An archived coupon: its visits key is the record, not written.
	arch := archivedCouponKey("CODEBBBBBB")
	e.do("hset", arch, "rule_id", "r-1", "expires_at", "9000", "only_store", "", "rule_tags", "food")
	out = e.strs(redeemScript, []string{arch, arch}, 5000, "s-2")
	if len(out) == 0 || out[0] != "ok" {
		e.t.Fatalf("redeem answered %q", out)
	}
	e.eq("archived record", e.hgetall(arch), map[string]string{"rule_id": "r-1", "expires_at": "9000", "only_store": "",
		"rule_tags": "food", "redeemed_at": "5000", "redeemed_store": "s-2"})
}

// commitCand is a candidate's arguments to commitScript.
type commitCand struct {
	rule, store               string
	expires                   int64
	push                      string
	perDay, perWeek, perTotal int
	side, holdout, tags, only string
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
	cands          []commitCand
}

const commitRetention = 30 * 24 * time.Hour

func (c commitCall) keys() []string {
	return []string{customerKey(c.customer, partCaps), customerKey(c.customer, partCoupons),
		customerKey(c.customer, partVisits), couponRecordKey(c.customer, c.code), customerKey(c.customer, partProfile)}
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
		c.limit, c.gap, today, c.deadline, c.code}
	for _, x := range c.cands {
		holdout := x.holdout
		if holdout == "" {
			holdout = "0"
		}
		args = append(args, x.rule, x.store, x.expires, x.push, x.perDay, x.perWeek, x.perTotal, x.side, holdout, x.tags, x.only)
	}
	return args
}

func (c commitCall) run(e luaEnv) []string {
	e.t.Helper()
	return e.strs(commitScript, c.keys(), c.args()...)
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
			e.do("hset", customerKey(cust, partProfile), "doc", "{}", "push", "0", "loc", "1")
		}
		call := commitCall{customer: cust, code: "CODE0", now: now, deadline: deadline, cands: []commitCand{cand("r-a", "s-a", "r"), cand("r-b", "s-b", "")}}
		e.eq(cust, call.run(e), []string{ReasonConsent, ReasonConsent})
		e.absent(call.keys()[:4]...)
	}

	c1 := "c-1"
	e.do("hset", customerKey(c1, partProfile), "doc", "{}", "push", "1", "loc", "1")
	caps := customerKey(c1, partCaps)
	// The rule r-a's total cap is reached; 65 fields of an old day and
	// one of an old week are pruned when an offer is counted.
	e.do("hset", caps, "r-a|t", "1", "r-z|w202001", "1")
	for i := range 65 {
		e.do("hset", caps, fmt.Sprintf("r-%d|d20200101", i), "1")
	}
	capped := cand("r-a", "s-a", "")
	capped.perTotal = 1
	base := commitCall{customer: c1, code: "CODE1", now: now, deadline: deadline}
	nothingWritten := func(what string, call commitCall) {
		e.t.Helper()
		e.eq(what+": caps unchanged", len(e.hgetall(caps)), 67)
		e.absent(call.keys()[1:4]...)
	}

	// Handed back: a rule's capacity not reserved yet ("?"), a push not
	// rendered yet; candidates refused before are not answered.
	call := base
	call.cands = []commitCand{capped, cand("r-b", "s-b", "?"), cand("r-c", "s-c", "")}
	e.eq("not reserved", call.run(e), []string{"need", "2"})
	nothingWritten("not reserved", call)
	unrendered := cand("r-b", "s-b", "r")
	unrendered.push = ""
	call.cands = []commitCand{unrendered}
	e.eq("not rendered", call.run(e), []string{"need", "1"})
	nothingWritten("not rendered", call)

	// Past the deadline.
	call = base
	call.deadline = 1
	call.cands = []commitCand{capped, cand("r-b", "s-b", "r")}
	e.eq("late", call.run(e), []string{"late"})
	nothingWritten("late", call)

	// A dry run only checks.
	call = base
	call.dry = "1"
	call.cands = []commitCand{capped, cand("r-b", "s-b", "r"), cand("r-c", "s-c", "")}
	e.eq("dry", call.run(e), []string{ReasonCap, ResultSent})
	nothingWritten("dry", call)

	// Issued: one result per candidate looked at, the last "sent" (r-c
	// after it is lower_priority, not answered).
	call.dry = "0"
	only := cand("r-b", "s-b", "r")
	only.only = "s-b"
	call.cands = []commitCand{capped, only, cand("r-c", "s-c", "")}
	e.eq("issued", call.run(e), []string{ReasonCap, ResultSent})
	e.eq("caps", e.hgetall(caps), map[string]string{
		"r-a|t": "1", "*|" + day: "1", "*|t": "1", "r-b|" + day: "1", "r-b|" + week: "1", "r-b|t": "1", "*|last": fmt.Sprint(now)})
	e.ttl(caps, 400*luaDay)
	rec := couponRecordKey(c1, "CODE1")
	e.eq("record", e.hgetall(rec), map[string]string{
		"customer_id": c1, "device_id": "d-1", "rule_id": "r-b", "store_id": "s-b", "issued_at": fmt.Sprint(now),
		"expires_at": fmt.Sprint(expires), "rule_tags": "food,drink", "only_store": "s-b", "push": `{"id":"push-r-b"}`})
	keep := time.Duration(expires+commitRetention.Milliseconds()-now) * time.Millisecond
	e.ttl(rec, keep)
	coupons := customerKey(c1, partCoupons)
	e.eq("coupons", e.rdb.SMembers(e.ctx, coupons).Val(), []string{"CODE1"})
	e.ttl(coupons, keep)
	visits := customerKey(c1, partVisits)
	e.eq("visit marked", e.hgetall(visits), map[string]string{"offer:s-b": fmt.Sprintf("%d|r-b|t|%s", now, today)})

	// The customer's own limits refuse every candidate.
	call = commitCall{customer: c1, code: "CODE2", now: now, deadline: deadline, gap: time.Minute.Milliseconds(),
		cands: []commitCand{cand("r-d", "s-d", ""), cand("r-e", "s-e", "")}}
	e.eq("too soon", call.run(e), []string{ReasonRecent, ReasonRecent})
	call.gap, call.limit = 0, 1
	e.eq("daily limit", call.run(e), []string{ReasonLimit, ReasonLimit})
	e.absent(couponRecordKey(c1, "CODE2"))

	// A rule's capacity refused (the side carries the reason); the next
	// candidate wins.
	c2 := "c-2"
	e.do("hset", customerKey(c2, partProfile), "doc", "{}", "push", "1")
	call = commitCall{customer: c2, code: "CODE3", now: now, deadline: deadline,
		cands: []commitCand{cand("r-a", "s-a", ReasonBudget), cand("r-b", "s-b", ReasonRenderError), cand("r-c", "s-c", "")}}
	e.eq("refused by the rules' capacity", call.run(e), []string{ReasonBudget, ReasonRenderError, ResultSent})
	e.eq("the third issued", e.hget(couponRecordKey(c2, "CODE3"), "rule_id"), "r-c")

	// A holdout: answered "holdout", the visit marked "h", no coupon, not
	// counted; it needs no push. The deadline is not checked for a holdout
	// (the doc comment says past the deadline it answers {"late"} and
	// writes nothing): the mark is written.
	for _, dl := range []int64{deadline, 1} {
		c3 := fmt.Sprintf("c-holdout-%d", dl)
		e.do("hset", customerKey(c3, partProfile), "doc", "{}", "push", "1")
		h := cand("r-h", "s-h", "")
		h.push, h.holdout = "", "1"
		call = commitCall{customer: c3, code: "CODE4", now: now, deadline: dl, cands: []commitCand{h, cand("r-c", "s-c", "")}}
		e.eq("holdout", call.run(e), []string{ReasonHoldout})
		e.eq("holdout marked", e.hgetall(customerKey(c3, partVisits)), map[string]string{"offer:s-h": fmt.Sprintf("%d|r-h|h|%s", now, today)})
		e.absent(customerKey(c3, partCaps), customerKey(c3, partCoupons), couponRecordKey(c3, "CODE4"))
	}
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
	stores     []obsStore
}

const (
	obsTimeout  = 10 * time.Minute
	obsMaxSpeed = 10.0
)

func (c obsCall) keys() []string {
	id := c.customer
	return []string{customerKey(id, partPresence), customerKey(id, partProfile), customerKey(id, partDeviceSeen),
		customerKey(id, partVisits), customerKey(id, partCaps), customerKey(id, partRate), customerKey(id, partTokens)}
}

func (c obsCall) run(e luaEnv) []string {
	e.t.Helper()
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
	args := []any{c.ts, obsTimeout.Milliseconds(), dry, "d-1", c.speed, obsMaxSpeed, lat, lng, len(c.stores), now, c.limC, c.limD, c.gen}
	for _, s := range c.stores {
		args = append(args, s.id, s.kind, len(s.thresholds))
		for _, t := range s.thresholds {
			args = append(args, t)
		}
	}
	return e.strs(observeScript, c.keys(), args...)
}

// observeScript: KEYS presence, profile, device_seen, visits, caps, rate,
// tokens; ARGV 13 shared, then per store id, kind, n, thresholds.
func checkObserve(e luaEnv) {
	id := "c-1"
	presence, profile, seen := customerKey(id, partPresence), customerKey(id, partProfile), customerKey(id, partDeviceSeen)
	visits, caps, rate, tokens := customerKey(id, partVisits), customerKey(id, partCaps), customerKey(id, partRate), customerKey(id, partTokens)
	T := time.Now().UnixMilli()
	s1 := obsStore{"s-1", "s", []int{30, 60}}

	// A revoked token: refused before anything is counted.
	e.do("set", tokens, "5")
	call := obsCall{customer: id, ts: T, speed: -1, limC: 2, gen: 3, stores: []obsStore{s1}}
	e.eq("revoked", call.run(e), []string{"revoked"})
	e.absent(rate)

	// Rate limits: every call counts, a customer without a profile too
	// (the doc comment's "Nothing is read or kept for a customer without
	// location consent (or without a profile)" leaves out the rate
	// counters, written before the consent is read); a call over a limit
	// changes nothing.
	call.gen = 5
	e.eq("no profile", call.run(e), []string{ReasonConsent})
	minute := fmt.Sprint(luaNowMs / luaMinute)
	e.eq("counted", e.hgetall(rate), map[string]string{"c": minute + ":1", "d:d-1": minute + ":1"})
	e.ttl(rate, 2*time.Minute)
	call.gen = 0
	e.eq("second call", call.run(e), []string{ReasonConsent})
	e.eq("over the limit", call.run(e), []string{"rate_limited", "45000"})
	e.eq("not counted", e.hget(rate, "c"), minute+":2")
	call.limC, call.limD = 0, 2
	e.eq("over the device's limit", call.run(e), []string{"rate_limited", "45000"})
	e.absent(presence, seen, visits)

	// No location consent: nothing kept.
	e.do("hset", profile, "doc", `{"id":"c-1"}`, "loc", "0", "push", "1")
	call = obsCall{customer: id, ts: T, speed: -1, stores: []obsStore{s1}}
	e.eq("no consent", call.run(e), []string{ReasonConsent})
	e.absent(presence, seen, visits)

	// An enter, with the history the reply carries: a return after an
	// offer at the store a second ago.
	e.do("hset", profile, "loc", "1")
	e.do("hset", caps, "*|t", "4")
	e.do("hset", visits, "n", "3", "first", "1000", "last", "5000", "prev", "4000", "redeemed", "2", "redeemed_last", "111",
		"aff:food", "2", "offer:s-1", fmt.Sprintf("%d|r-1|t|20261115", T-1000))
	call.stores = []obsStore{s1, {"s-2", "h", nil}}
	history := []string{"4", "2", "111", "1", "food", "2"} // offers received, redemptions, last, n_tags, (tag, n)
	e.eq("enter", call.run(e), slices.Concat(
		[]string{"ok", "1", "s-1", "0", "0", "0"},
		[]string{`{"id":"c-1"}`, "4", "5000", "1", "s-1", "1", "0"}, history,
		[]string{"1", "r-1", "returned_treated", "20261115"}))
	e.eq("presence", e.hgetall(presence), map[string]string{
		"#ts": fmt.Sprint(T), "#fix": fmt.Sprintf("%d:48.85:2.35", T), "s-1": fmt.Sprintf("%d:%d:0", T, T)})
	e.ttl(presence, obsTimeout)
	e.eq("device seen", e.hgetall(seen), map[string]string{"d-1": fmt.Sprint(T)})
	e.ttl(seen, 400*luaDay)
	v := e.hgetall(visits)
	e.eq("visits", []string{v["n"], v["prev"], v["last"], v["first"], v["n:s-1"], v["prev:s-1"], v["last:s-1"], v["first:s-1"], v["offer:s-1"]},
		[]string{"4", "5000", fmt.Sprint(T), "1000", "1", "0", fmt.Sprint(T), fmt.Sprint(T), ""})
	e.ttl(visits, 400*luaDay)

	// A fix older than the last one seen.
	call.ts = T - 1
	e.eq("stale", call.run(e), []string{"stale"})

	// Dwell thresholds passed; the speed derived from the last fix is 0.
	call.ts = T + 61000
	call.stores = []obsStore{s1}
	after := slices.Concat([]string{`{"id":"c-1"}`, "4", "5000", "1", "s-1", "1", "0"}, history, []string{"0"})
	e.eq("dwell", call.run(e), slices.Concat([]string{"ok", "0", "0", "2", "s-1", "30", "s-1", "60", "0"}, after))
	e.eq("presence", e.hget(presence, "s-1"), fmt.Sprintf("%d:%d:60", T, T+61000))

	// An exit, with how long the visit lasted.
	call.ts = T + 70000
	call.stores = nil
	e.eq("exit", call.run(e), slices.Concat([]string{"ok", "0", "1", "s-1", "70000", "0", "0"}, after))
	e.eq("presence", e.hget(presence, "s-1"), "")

	// Too fast to enter, by the speed derived from the last fix: 0.01° of
	// latitude (1.1 km) in 20 s. Nothing happened: the short reply.
	call.ts, call.lat, call.lng = T+90000, "48.86", "2.35"
	call.stores = []obsStore{{"s-3", "s", nil}}
	e.eq("too fast", call.run(e), []string{"ok", "0", "0", "0", "1", "s-3"})
	e.eq("fix kept", e.hget(presence, "#ts"), fmt.Sprint(T+90000))

	// A dry run answers as if it had entered, and writes nothing.
	call = obsCall{customer: id, ts: T + 1_000_000, dry: "1", speed: -1, stores: []obsStore{{"s-4", "s", nil}}}
	e.eq("dry", call.run(e), slices.Concat(
		[]string{"ok", "1", "s-4", "0", "0", "0"},
		[]string{`{"id":"c-1"}`, "5", fmt.Sprint(T), "1", "s-4", "1", "0"}, history, []string{"0"}))
	e.eq("dry: presence unchanged", e.hget(presence, "#ts")+" "+e.hget(presence, "s-4"), fmt.Sprint(T+90000)+" ")
	e.eq("dry: visits unchanged", e.hget(visits, "n"), "4")
}

// luaEnv is a subtest's Redis, with the checks the cases share.
type luaEnv struct {
	t   *testing.T
	ctx context.Context
	rdb redis.UniversalClient
}

// do runs a command that sets up a case.
func (e luaEnv) do(args ...any) {
	e.t.Helper()
	if err := e.rdb.Do(e.ctx, args...).Err(); err != nil {
		e.t.Fatalf("%v: %v", args, err)
	}
}

// reply runs a script, failing on an error.
func (e luaEnv) reply(s *redis.Script, keys []string, args ...any) any {
	e.t.Helper()
	v, err := s.Run(e.ctx, e.rdb, keys, args...).Result()
	if err != nil {
		e.t.Fatalf("script %v %v: %v", keys, args, err)
	}
	return v
}

// strs runs a script whose reply is an array of strings.
func (e luaEnv) strs(s *redis.Script, keys []string, args ...any) []string {
	e.t.Helper()
	v := e.reply(s, keys, args...)
	arr, ok := v.([]any)
	if !ok {
		e.t.Fatalf("reply %#v, want an array", v)
	}
	out := make([]string, len(arr))
	for i, x := range arr {
		if out[i], ok = x.(string); !ok {
			e.t.Fatalf("reply %#v: element %d is %T, want a string", arr, i, x)
		}
	}
	return out
}

// slice runs a script whose reply is an array.
func (e luaEnv) slice(s *redis.Script, keys []string, args ...any) []any {
	e.t.Helper()
	v := e.reply(s, keys, args...)
	arr, ok := v.([]any)
	if !ok {
		e.t.Fatalf("reply %#v, want an array", v)
	}
	return arr
}

// int runs a script whose reply is an integer.
func (e luaEnv) num(s *redis.Script, keys []string, args ...any) int64 {
	e.t.Helper()
	v := e.reply(s, keys, args...)
	n, ok := v.(int64)
	if !ok {
		e.t.Fatalf("reply %#v, want an integer", v)
	}
	return n
}

// str runs a script whose reply is a string.
func (e luaEnv) str(s *redis.Script, keys []string, args ...any) string {
	e.t.Helper()
	v := e.reply(s, keys, args...)
	str, ok := v.(string)
	if !ok {
		e.t.Fatalf("reply %#v, want a string", v)
	}
	return str
}

// nilReply runs a script whose reply must be nil.
func (e luaEnv) nilReply(what string, s *redis.Script, keys []string, args ...any) {
	e.t.Helper()
	v, err := s.Run(e.ctx, e.rdb, keys, args...).Result()
	if err != redis.Nil {
		e.t.Errorf("%s: reply %#v (%v), want nil", what, v, err)
	}
}

func (e luaEnv) eq(what string, got, want any) {
	e.t.Helper()
	if !reflect.DeepEqual(got, want) {
		e.t.Errorf("%s:\n got %#v\nwant %#v", what, got, want)
	}
}

func (e luaEnv) get(key string) string { return e.rdb.Get(e.ctx, key).Val() }

func (e luaEnv) hget(key, field string) string { return e.rdb.HGet(e.ctx, key, field).Val() }

func (e luaEnv) hgetall(key string) map[string]string {
	e.t.Helper()
	m, err := e.rdb.HGetAll(e.ctx, key).Result()
	if err != nil {
		e.t.Fatalf("hgetall %s: %v", key, err)
	}
	return m
}

// absent checks that keys do not exist.
func (e luaEnv) absent(keys ...string) {
	e.t.Helper()
	for _, k := range keys {
		if n := e.rdb.Exists(e.ctx, k).Val(); n != 0 {
			e.t.Errorf("key %s exists, want none", k)
		}
	}
}

// ttl checks that a key lives at most want, and not a minute less (the
// time the test takes, and a clock read separately).
func (e luaEnv) ttl(key string, want time.Duration) {
	e.t.Helper()
	ms, err := e.rdb.Do(e.ctx, "pttl", key).Int64()
	if err != nil {
		e.t.Fatalf("pttl %s: %v", key, err)
	}
	e.ttlMs(key, ms, want)
}

func (e luaEnv) ttlString(what, ms string, want time.Duration) {
	e.t.Helper()
	var n int64
	if _, err := fmt.Sscan(ms, &n); err != nil {
		e.t.Errorf("%s: %q is not a number of ms", what, ms)
		return
	}
	e.ttlMs(what, n, want)
}

func (e luaEnv) ttlMs(what string, ms int64, want time.Duration) {
	e.t.Helper()
	if got := time.Duration(ms) * time.Millisecond; got <= 0 || got > want || got < want-time.Minute {
		e.t.Errorf("%s lives %v (pttl %d), want %v", what, got, ms, want)
	}
}

// noTTL checks that a key exists and does not expire.
func (e luaEnv) noTTL(key string) {
	e.t.Helper()
	if ms := e.rdb.Do(e.ctx, "pttl", key).Val(); ms != int64(-1) {
		e.t.Errorf("key %s: pttl %v, want -1 (no TTL)", key, ms)
	}
}
