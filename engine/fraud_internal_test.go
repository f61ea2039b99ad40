package engine

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/internal/redistest"
)

// suspectScript (a case of TestScripts): KEYS the fraud record, the
// profile; ARGV now_ms, today, the oldest day kept, device id, signals,
// coupons issued, ms to live, most fields. Counts the fix, its signals,
// its device and its coupon per day; prunes days past the oldest once a
// day; writes nothing without a profile.
func checkSuspect(e luaEnv) {
	fraud, profile := customerKey("c-1", partFraud), customerKey("c-1", partProfile)
	keys := []string{fraud, profile}
	keep := FraudRetention.Milliseconds()
	run := func(now int64, day, device, signals string, issued int) int64 {
		e.T.Helper()
		return e.Num(suspectScript, keys, now, day, "20260824", device, signals, issued, keep, 10)
	}
	e.Eq("no profile", run(1000, "20261122", "d-1", "mocked", 0), int64(0))
	e.Absent(fraud)

	e.Do("hset", profile, "doc", "{}")
	e.Do("hset", fraud, "f:20260101", "3", "s:20260101:mocked", "3", "v:20260101:d-9", "3", "i:20260101", "1", "f:20260824", "1")
	e.Eq("a suspicious fix", run(1000, "20261122", "d-1", "mocked,impossible_travel", 0), int64(1))
	e.Eq("another, with a coupon", run(2000, "20261122", "d-1", "mocked", 1), int64(1))
	e.Eq("another device, no signal of its own", run(3000, "20261122", "d-2", SignalRecentRisk, 0), int64(1))
	e.Eq("no device", run(4000, "20261122", "", "mocked", 0), int64(1))
	e.Eq("the record", e.HGetAll(fraud), map[string]string{
		"f:20260824": "1", // the oldest day kept stays
		"f:20261122": "4", "s:20261122:mocked": "3", "s:20261122:impossible_travel": "1", "s:20261122:" + SignalRecentRisk: "1",
		"v:20261122:d-1": "2", "v:20261122:d-2": "1", "i:20261122": "1", "last": "4000", "pruned": "20261122"})
	e.TTL(fraud, FraudRetention)

	// The fields' bound: a device not yet counted is not, beyond it; one
	// counted still is.
	for i := range 3 {
		run(5000, "20261122", fmt.Sprintf("d-x%d", i), "", 0)
	}
	e.Eq("fields past the bound", len(e.HGetAll(fraud)), 10)
	e.Eq("fixes still counted", e.HGet(fraud, "f:20261122"), "7")
	run(6000, "20261122", "d-1", "", 0)
	e.Eq("a device counted before", e.HGet(fraud, "v:20261122:d-1"), "3")
}

// The report reads only the days asked, skips a record with nothing in
// them, and orders customers by their suspicious fixes, then the last.
func TestFraudOf(t *testing.T) {
	rec := map[string]string{"f:20261120": "2", "f:20261122": "1", "f:20261001": "9", "s:20261122:mocked": "1",
		"s:20261001:mocked": "9", "v:20261122:d:1": "1", "i:20261120": "1", "r:20261122": "1", "last": "1795000000000", "pruned": "20261122"}
	c, ok := fraudOf("c-1", rec, "20261120", "20261126")
	if !ok || c.SuspiciousFixes != 3 || c.Signals["mocked"] != 1 || len(c.Devices) != 1 || c.Devices[0].DeviceID != "d:1" ||
		c.CouponsIssued != 1 || c.CouponsRedeemed != 1 || c.LastSuspicious == nil || !c.LastSuspicious.Equal(time.UnixMilli(1795000000000)) {
		t.Fatalf("fraudOf = %+v, %v", c, ok)
	}
	if _, ok := fraudOf("c-1", rec, "20261101", "20261110"); ok {
		t.Fatal("a record with nothing in the days is reported")
	}
}

// An index entry written after the customer's erasure went (the erasure
// ran between a suspicious fix's record and its entry, on another node
// of a cluster) is taken out when looked at again; a customer with a
// profile keeps theirs.
func TestUnindexErased(t *testing.T) {
	rdb, _ := redistest.Mini(t)
	ctx := context.Background()
	rdb.HSet(ctx, customerKey("c-here", partProfile), "doc", "{}")
	rdb.ZAdd(ctx, keyFraudIndex, redis.Z{Score: 1, Member: "c-here"}, redis.Z{Score: 2, Member: "c-erased"})
	for _, id := range []string{"c-here", "c-erased"} {
		if err := unindexErased(ctx, rdb, id); err != nil {
			t.Fatal(err)
		}
	}
	if got := rdb.ZRange(ctx, keyFraudIndex, 0, -1).Val(); len(got) != 1 || got[0] != "c-here" {
		t.Fatalf("the fraud index holds %v, want [c-here]", got)
	}
}
