package engine

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/rules"
)

// What a suspicious fix leaves behind (docs/architecture.md, "Coupons
// under suspicion, and the fraud report"): the customer's fraud record (partFraud) counts their
// suspicious fixes per day, the signals and the devices behind them, and
// the coupons issued and redeemed under suspicion; the index
// (keyFraudIndex) finds the customers for GET /v1/fraud. Neither keeps a
// coordinate, and both go with the customer's erasure. A trusted or
// unverified fix costs nothing here; a suspicious one, one pipelined round
// trip after its decision.

// FraudRetention is how long a fraud record lives past its last write,
// and how far back the index and the report reach.
const FraudRetention = 90 * 24 * time.Hour

// MaxFraudDays bounds the days of one report (as many as are kept).
const MaxFraudDays = int(FraudRetention / (24 * time.Hour))

// MaxFraudCustomers bounds the customers one report lists.
const MaxFraudCustomers = 100

// fraudScan bounds the customers a report reads: the most recently
// suspicious of the index. fraudMaxFields bounds a fraud record's
// fields, beyond which no new device is counted.
const (
	fraudScan      = 500
	fraudMaxFields = 1000
)

// SignalRecentRisk names a fix suspicious for what came before it (the
// customer's risk, lua/lib/trust.lua) and no signal of its own, where the
// fraud record and a coupon's record list signals.
const SignalRecentRisk = "recent_risk"

// suspicion is what a coupon's record and the fraud record say of a
// suspicious fix: its signals, comma-separated, or SignalRecentRisk.
func suspicion(signals []string) string {
	if len(signals) == 0 {
		return SignalRecentRisk
	}
	return strings.Join(signals, ",")
}

// suspicion is what the coupon a fix is issued keeps of it: "" unless
// the fix is suspicious.
func (o observation) suspicion() string {
	if o.trust != TrustSuspicious {
		return ""
	}
	return suspicion(o.signals)
}

// suspectScript counts a suspicious fix in the customer's fraud record,
// when they have a profile; it prunes the days older than the record
// keeps once a day.
// KEYS: the fraud record, the profile.
// ARGV: now_ms, today (yyyymmdd, UTC), the oldest day kept, device id
// ("": none), the fix's suspicion (signals, comma-separated), coupons it
// was issued (0 or 1), ms the record lives, the most fields a record
// may reach with a new device.
// Returns 1, or 0 when there is no profile (nothing written).
var suspectScript = script("suspect")

// suspected records a suspicious fix after its decision (evaluate defers
// it; any other fix, and a dry run, it leaves at once): the customer's
// fraud record, with the coupon it was issued, and the index, in one
// pipelined round trip; a failure is logged, never the answer's. An
// erasure that came meanwhile: the index entry goes again
// (unindexErased).
func (e *Engine) suspected(ctx context.Context, p Ping, now time.Time, obs observation, opt Options, res *Result) {
	if obs.trust != TrustSuspicious || opt.DryRun || ctx.Err() != nil {
		return
	}
	oldest := now.Add(-FraudRetention)
	x := newScripted(ctx, suspectScript, customerKeys(p.CustomerID, partFraud, partProfile),
		now.UnixMilli(), now.UTC().Format("20060102"), oldest.UTC().Format("20060102"), p.DeviceID,
		suspicion(obs.signals), len(res.Offers), FraudRetention.Milliseconds(), fraudMaxFields)
	cmds := append([]redis.Cmder{x.cmd}, indexSuspectCmds(ctx, p.CustomerID, now)...)
	e.batch.do(ctx, cmds...)
	_, err := x.result(ctx, e.rdb).Int() // 0: no profile, nothing recorded
	for _, c := range cmds[1:] {
		err = cmp.Or(err, c.Err())
	}
	if err != nil {
		e.log.Warn("a suspicious fix not recorded", "err", err)
	}
	if cmds[1].Err() == nil { // the entry went in: looked at again, whatever else failed or ends
		if err := unindexErased(context.WithoutCancel(ctx), e.rdb, p.CustomerID); err != nil {
			e.log.Warn("an erased customer left in the fraud index", "err", err)
		}
	}
}

// unindexErased takes a customer out of the fraud index unless their
// profile is there, once their entry was written. The entry goes in
// beside the customer's record, on another node of a cluster, so an
// erasure between the two (its keys, then its index entry) would leave
// it naming an erased customer: looked at again after it is written, it
// is either seen erased here or taken out by the erasure after.
func unindexErased(ctx context.Context, rdb redis.UniversalClient, customerID string) error {
	n, err := rdb.Exists(ctx, customerKey(customerID, partProfile)).Result()
	if err != nil || n == 1 {
		return err
	}
	return rdb.ZRem(ctx, keyFraudIndex, customerID).Err()
}

// indexSuspectCmds put the customer in the fraud index at now, and trim
// it of those older than the record keeps.
func indexSuspectCmds(ctx context.Context, customerID string, now time.Time) []redis.Cmder {
	return []redis.Cmder{
		redis.NewIntCmd(ctx, "zadd", keyFraudIndex, now.UnixMilli(), customerID),
		redis.NewIntCmd(ctx, "zremrangebyscore", keyFraudIndex, "-inf", "("+strconv.FormatInt(now.Add(-FraudRetention).UnixMilli(), 10)),
		redis.NewBoolCmd(ctx, "pexpire", keyFraudIndex, FraudRetention.Milliseconds()),
	}
}

// SuspiciousCouponError is a redemption refused because the coupon was
// issued to a location fix under suspicion and the operator refuses those
// (Ledger.RefuseSuspicious, NEARCAST_REFUSE_SUSPICIOUS_REDEMPTIONS); it
// changed nothing.
type SuspiciousCouponError struct {
	Signals []string
}

func (e *SuspiciousCouponError) Error() string {
	return fmt.Sprintf("this coupon was issued to a location under suspicion (%s); this server does not redeem such coupons",
		strings.Join(e.Signals, ", "))
}

// FraudReport is GET /v1/fraud: the customers whose fixes were suspicious
// in the UTC days From..To, riskiest first.
type FraudReport struct {
	From      string          `json:"from"`
	To        string          `json:"to"`
	Customers []FraudCustomer `json:"customers"`
	// Totals are of every customer the report read, listed or not.
	Totals FraudTotals `json:"totals"`
	// Truncated: more customers than the report lists (its limit), or
	// than it reads (the fraudScan most recently suspicious).
	Truncated bool `json:"truncated"`
}

// FraudTotals sums a report's customers.
type FraudTotals struct {
	Customers       int `json:"customers"`
	SuspiciousFixes int `json:"suspicious_fixes"`
	CouponsIssued   int `json:"coupons_issued"`
	CouponsRedeemed int `json:"coupons_redeemed"`
}

// FraudCustomer is one customer of a report: their suspicious fixes in
// its days, the signals and the devices behind them, and their coupons
// issued and redeemed under suspicion.
type FraudCustomer struct {
	CustomerID      string         `json:"customer_id"`
	SuspiciousFixes int            `json:"suspicious_fixes"`
	LastSuspicious  *time.Time     `json:"last_suspicious_at,omitempty"`
	Signals         map[string]int `json:"signals"`
	Devices         []FraudDevice  `json:"devices"`
	CouponsIssued   int            `json:"coupons_issued"`
	CouponsRedeemed int            `json:"coupons_redeemed"`
}

// FraudDevice is a device of a customer with suspicious fixes.
type FraudDevice struct {
	DeviceID        string `json:"device_id"`
	SuspiciousFixes int    `json:"suspicious_fixes"`
}

// maxFraudDevices bounds the devices listed for one customer.
const maxFraudDevices = 20

// Fraud reads the report for the UTC days from..to, inclusive: the
// customers of the index with a suspicious fix or a redemption under
// suspicion since from (at most fraudScan, the most recent), ordered by
// their suspicious fixes in the days, then the last one, at most limit
// (MaxFraudCustomers when 0). Two round trips, whatever the range.
func Fraud(ctx context.Context, rdb redis.UniversalClient, from, to time.Time, limit int) (*FraudReport, error) {
	from, to = from.UTC().Truncate(24*time.Hour), to.UTC().Truncate(24*time.Hour)
	if limit <= 0 || limit > MaxFraudCustomers {
		limit = MaxFraudCustomers
	}
	rep := &FraudReport{From: from.Format(time.DateOnly), To: to.Format(time.DateOnly), Customers: []FraudCustomer{}}
	ids, err := rdb.ZRevRangeByScore(ctx, keyFraudIndex, &redis.ZRangeBy{
		Min: strconv.FormatInt(from.UnixMilli(), 10), Max: "+inf", Count: fraudScan + 1}).Result()
	if err != nil {
		return nil, rules.RedisErr("fraud report", err)
	}
	if len(ids) > fraudScan {
		ids, rep.Truncated = ids[:fraudScan], true
	}
	recs := make([]*redis.MapStringStringCmd, len(ids))
	if len(ids) > 0 {
		if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range ids {
				recs[i] = p.HGetAll(ctx, customerKey(id, partFraud))
			}
			return nil
		}); err != nil {
			return nil, rules.RedisErr("fraud report", err)
		}
	}
	first, last := from.Format("20060102"), to.Format("20060102")
	for i, id := range ids {
		c, ok := fraudOf(id, recs[i].Val(), first, last)
		if !ok {
			continue // nothing in the days, or a record gone (expired, erased)
		}
		rep.Totals.Customers++
		rep.Totals.SuspiciousFixes += c.SuspiciousFixes
		rep.Totals.CouponsIssued += c.CouponsIssued
		rep.Totals.CouponsRedeemed += c.CouponsRedeemed
		rep.Customers = append(rep.Customers, c)
	}
	slices.SortFunc(rep.Customers, func(a, b FraudCustomer) int {
		if a.SuspiciousFixes != b.SuspiciousFixes {
			return cmp.Compare(b.SuspiciousFixes, a.SuspiciousFixes)
		}
		var at, bt int64
		if a.LastSuspicious != nil {
			at = a.LastSuspicious.UnixMilli()
		}
		if b.LastSuspicious != nil {
			bt = b.LastSuspicious.UnixMilli()
		}
		if at != bt {
			return cmp.Compare(bt, at)
		}
		if a.CouponsRedeemed != b.CouponsRedeemed {
			return cmp.Compare(b.CouponsRedeemed, a.CouponsRedeemed)
		}
		return strings.Compare(a.CustomerID, b.CustomerID)
	})
	if len(rep.Customers) > limit {
		rep.Customers, rep.Truncated = rep.Customers[:limit], true
	}
	return rep, nil
}

// fraudOf reads a customer's fraud record for the days first..last
// (yyyymmdd); false when it holds nothing of them.
func fraudOf(id string, rec map[string]string, first, last string) (FraudCustomer, bool) {
	c := FraudCustomer{CustomerID: id, Signals: map[string]int{}, Devices: []FraudDevice{}}
	devices := map[string]int{}
	for f, v := range rec {
		if len(f) < 10 || f[1] != ':' {
			continue
		}
		day := f[2:10]
		if day < first || day > last {
			continue
		}
		n, _ := strconv.Atoi(v)
		name := ""
		if len(f) > 11 && f[10] == ':' {
			name = f[11:]
		}
		switch {
		case f[0] == 'f' && len(f) == 10:
			c.SuspiciousFixes += n
		case f[0] == 'i' && len(f) == 10:
			c.CouponsIssued += n
		case f[0] == 'r' && len(f) == 10:
			c.CouponsRedeemed += n
		case f[0] == 's' && name != "":
			c.Signals[name] += n
		case f[0] == 'v' && name != "":
			devices[name] += n
		}
	}
	if c.SuspiciousFixes == 0 && c.CouponsIssued == 0 && c.CouponsRedeemed == 0 {
		return c, false
	}
	if ms, err := strconv.ParseInt(rec["last"], 10, 64); err == nil {
		t := time.UnixMilli(ms).UTC()
		c.LastSuspicious = &t
	}
	for d, n := range devices {
		c.Devices = append(c.Devices, FraudDevice{DeviceID: d, SuspiciousFixes: n})
	}
	slices.SortFunc(c.Devices, func(a, b FraudDevice) int {
		return cmp.Or(cmp.Compare(b.SuspiciousFixes, a.SuspiciousFixes), strings.Compare(a.DeviceID, b.DeviceID))
	})
	if len(c.Devices) > maxFraudDevices {
		c.Devices = c.Devices[:maxFraudDevices]
	}
	return c, true
}
