package engine_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/rules"
)

// A redemption stands when its rule's funnel cannot be counted: the till
// is told the coupon went through (and "redeemed already" after), not
// that it failed, which would send the cashier to try again; the lost
// count is logged. The same for an open.
func TestRedemptionStandsWhenItsCountFails(t *testing.T) {
	f := setup(t, srv.Client(t), capsRule(rules.Caps{}))
	addCustomer(t, f, "u1")
	ctx := context.Background()
	la, ln := north(alexLat, alexLng, 0)
	res, err := settled(f.eng).Evaluate(ctx, engine.Ping{CustomerID: "u1", Lat: la, Lng: ln, AccuracyM: 5, SpeedMps: new(float64), TS: f.clock.Now()}, engine.Options{})
	if err != nil || len(res.Offers) != 1 || res.Offers[0].RuleID != "capped" {
		t.Fatalf("enter: %+v %v", res, err)
	}
	code := res.Offers[0].CouponCode
	// Today's funnel of the rule is no hash: every count of it fails.
	funnel := "nc:{rule:capped}:funnel:" + f.clock.Now().UTC().Format("20060102")
	if err := f.rdb.Set(ctx, funnel, "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	var log lockedBuffer
	ledger := engine.NewLedger(f.rdb, engine.NewCodeSigner([]byte("test-secret")), slog.New(slog.NewTextHandler(&log, nil)), f.clock.Now)

	cp, err := ledger.Opened(ctx, code, "")
	if err != nil || cp.OpenedAt == nil {
		t.Fatalf("opened: %+v %v", cp, err)
	}
	cp, err = ledger.Redeem(ctx, code, "s-alex")
	if err != nil || cp.Status != "redeemed" || cp.RedeemedStore != "s-alex" || cp.RuleID != "capped" || cp.Code != code {
		t.Fatalf("redeem: %+v %v", cp, err)
	}
	if _, err := ledger.Redeem(ctx, code, "s-alex"); !errors.Is(err, engine.ErrRedeemed) {
		t.Fatalf("redeemed again: %v", err)
	}
	if got, err := ledger.Get(ctx, code); err != nil || got.Status != "redeemed" || got.RedeemedAt == nil || !got.RedeemedAt.Equal(*cp.RedeemedAt) {
		t.Fatalf("get: %+v %v, redeem answered %+v", got, err, cp)
	}
	for _, want := range []string{"coupon opened, its rule's funnel count not updated", "coupon redeemed, its rule's funnel count not updated"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, log.String())
		}
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }
