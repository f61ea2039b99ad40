package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/rules"
)

// Coupon is an issued coupon as the till sees it.
type Coupon struct {
	Code          string     `json:"code"`
	RuleID        string     `json:"rule_id"`
	StoreID       string     `json:"store_id"`
	IssuedAt      time.Time  `json:"issued_at"`
	ExpiresAt     time.Time  `json:"expires_at"`
	RedeemedAt    *time.Time `json:"redeemed_at,omitempty"`
	RedeemedStore string     `json:"redeemed_store_id,omitempty"`
	OpenedAt      *time.Time `json:"opened_at,omitempty"`
	// OnlyStore is the store the coupon is good at, when it is good at one only.
	OnlyStore string `json:"only_store_id,omitempty"`
	// Variant is the variant of the rule's offer it was, for a rule
	// whose offer has variants.
	Variant string `json:"variant,omitempty"`
	// Kind is "feedback" for a question after a visit, with its Scale
	// and, once answered, the Score and when (AnsweredAt).
	Kind       string     `json:"kind,omitempty"`
	Scale      string     `json:"scale,omitempty"`
	Score      *int       `json:"score,omitempty"`
	AnsweredAt *time.Time `json:"answered_at,omitempty"`
	// Status is active, redeemed or expired.
	Status string `json:"status"`
	// IssuedUnderSuspicion: the coupon was issued to a location fix the
	// engine found suspicious (a rule whose offer.min_trust is any), for
	// SuspicionSignals. The admin key's answers only: the app is not told.
	IssuedUnderSuspicion bool     `json:"issued_under_suspicion,omitempty"`
	SuspicionSignals     []string `json:"suspicion_signals,omitempty"`
}

// Ledger looks up and redeems coupons.
type Ledger struct {
	rdb     redis.UniversalClient
	coupons *CodeSigner
	log     *slog.Logger
	now     func() time.Time
	// refuseSuspicious: see RefuseSuspicious.
	refuseSuspicious bool
	// events carries coupon.opened and coupon.redeemed out (nil: not).
	events *Events
}

// NewLedger returns the coupon ledger. log is told of a funnel count
// lost after a redemption or an open (nil: nobody is); now may be nil
// for the wall clock.
func NewLedger(rdb redis.UniversalClient, coupons *CodeSigner, log *slog.Logger, now func() time.Time) *Ledger {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Ledger{rdb: rdb, coupons: coupons, log: log, now: now}
}

// RefuseSuspicious makes Redeem refuse a coupon issued to a suspicious
// fix (NEARCAST_REFUSE_SUSPICIOUS_REDEMPTIONS=1) with a
// SuspiciousCouponError, changing nothing; without it such a coupon is
// redeemed, said so in the answer and counted in the customer's fraud
// record. Set it before the ledger is used. It answers the ledger.
func (l *Ledger) RefuseSuspicious(refuse bool) *Ledger {
	l.refuseSuspicious = refuse
	return l
}

// WithEvents has the ledger journal coupon.opened and coupon.redeemed
// for the events out.
func (l *Ledger) WithEvents(ev *Events) *Ledger {
	l.events = ev
	return l
}

// customerOfRecord is the customer whose keys hold a record ("" for an
// archived coupon's, whose customer was erased).
func customerOfRecord(key string) string {
	rest, ok := strings.CutPrefix(key, custKeyOpen)
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, custKeyClose)
	return id
}

// Get reads a coupon. A forged code is not found without asking Redis.
func (l *Ledger) Get(ctx context.Context, code string) (*Coupon, error) {
	code = NormalizeCode(code)
	if !l.coupons.Valid(code) {
		return nil, rules.ErrNotFound
	}
	key, err := l.recordKey(ctx, code)
	if err != nil {
		return nil, err
	}
	m, err := l.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, rules.RedisErr("read coupon", err)
	}
	if len(m) == 0 {
		return nil, rules.ErrNotFound
	}
	return l.coupon(code, m), nil
}

// recordKey finds a coupon's record: among its customer's keys, through
// the code's index, or in the archive (a coupon of a customer since
// erased).
func (l *Ledger) recordKey(ctx context.Context, code string) (string, error) {
	customer, err := l.rdb.Get(ctx, codeIndexKey(code)).Result()
	switch {
	case errors.Is(err, redis.Nil), err == nil && customer == "": // none, or erased
		return archivedCouponKey(code), nil
	case err != nil:
		return "", rules.RedisErr("read coupon", err)
	}
	return couponRecordKey(customer, code), nil
}

func (l *Ledger) coupon(code string, m map[string]string) *Coupon {
	ms := func(f string) time.Time {
		v, _ := strconv.ParseInt(m[f], 10, 64)
		return time.UnixMilli(v).UTC()
	}
	c := &Coupon{Code: code, RuleID: m["rule_id"], StoreID: m["store_id"], IssuedAt: ms("issued_at"), ExpiresAt: ms("expires_at"),
		OnlyStore: m["only_store"], Variant: m["variant"], Status: "active"}
	if m["opened_at"] != "" {
		t := ms("opened_at")
		c.OpenedAt = &t
	}
	if m["kind"] == rules.KindFeedback {
		c.Kind, c.Scale = m["kind"], m["scale"]
		if m["answered_at"] != "" {
			t := ms("answered_at")
			score, _ := strconv.Atoi(m["score"])
			c.AnsweredAt, c.Score = &t, &score
		}
	}
	if s, ok := m["suspicion"]; ok {
		c.IssuedUnderSuspicion, c.SuspicionSignals = true, strings.Split(s, ",")
	}
	if m["redeemed_at"] != "" {
		t := ms("redeemed_at")
		c.RedeemedAt, c.RedeemedStore, c.Status = &t, m["redeemed_store"], "redeemed"
	} else if !l.now().Before(c.ExpiresAt) {
		c.Status = "expired"
	}
	return c
}

// redeemScript marks a coupon redeemed once: the check and the mark are
// one step, so of any number of tills only one succeeds.
// The customer's redemptions go into their visit history in the same
// step: how many, the last one's time, and one per tag of the rule.
// A coupon issued under suspicion (its record's "suspicion") is refused
// with refuse, else its redemption is counted in the customer's fraud
// record.
// KEYS: coupon record, the customer's visits, their fraud record, their
// journal of events out (the four share the customer's hash tag; an
// archived coupon has no customer, and its other keys are the record
// itself, not written). ARGV: now_ms, store id, refuse ("1": refuse a
// coupon issued under suspicion), today (yyyymmdd, UTC), ms the fraud
// record lives, the event types journaled (Events.Wanted), the code.
// Returns {"missing"}, {"redeemed"}, {"expired"}, {"store:<id>"},
// {"suspicious", its signals} (nothing changed), or {"ok", the record's
// fields and values as redeemed}.
var redeemScript = script("redeem", "journal")

// Redeem marks a coupon used at a store.
func (l *Ledger) Redeem(ctx context.Context, code, storeID string) (*Coupon, error) {
	code = NormalizeCode(code)
	if !l.coupons.Valid(code) {
		return nil, rules.ErrNotFound
	}
	customer, err := l.rdb.Get(ctx, codeIndexKey(code)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, rules.RedisErr("redeem", err)
	}
	keys := []string{archivedCouponKey(code), archivedCouponKey(code), archivedCouponKey(code), archivedCouponKey(code)}
	if customer != "" {
		keys = customerKeys(customer, partCoupon+code, partVisits, partFraud, partEvents)
	}
	now := l.now()
	out, err := redeemScript.Run(ctx, l.rdb, keys, now.UnixMilli(), storeID, luaBool(l.refuseSuspicious),
		now.UTC().Format("20060102"), FraudRetention.Milliseconds(), l.events.Wanted(), code).StringSlice()
	if err != nil {
		return nil, rules.RedisErr("redeem", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("redeem: no answer from the script")
	}
	switch out[0] {
	case "missing":
		return nil, rules.ErrNotFound
	case "redeemed":
		return nil, ErrRedeemed
	case "feedback":
		return nil, ErrNotACoupon
	case "expired":
		return nil, ErrExpired
	case "suspicious":
		if len(out) > 1 {
			return nil, &SuspiciousCouponError{Signals: strings.Split(out[1], ",")}
		}
		return nil, &SuspiciousCouponError{}
	}
	if store, ok := strings.CutPrefix(out[0], "store:"); ok {
		return nil, &WrongStoreError{Store: store}
	}
	// Redeemed: the answer is the record the step read as it marked it,
	// and nothing after can turn it into a failure (a till told "failed"
	// would try again and be told "redeemed already").
	m := make(map[string]string, (len(out)-1)/2)
	for i := 1; i+1 < len(out); i += 2 {
		m[out[i]] = out[i+1]
	}
	cp := l.coupon(code, m)
	if customer != "" && l.events.wants("coupon.redeemed") {
		l.events.Kick(customer)
	}
	if _, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		countIn(ctx, p, l.now(), cp.RuleID, "redeemed", cp.Variant, cp.StoreID)
		if cp.Variant != "" && cp.RuleID != "" {
			// What a bandit learns from (variants.go), in the segment the
			// offer was made in.
			p.HIncrBy(ctx, banditKey(cp.RuleID), m["segment"]+"|"+cp.Variant+"|r", 1)
		}
		return nil
	}); err != nil {
		l.log.Warn("coupon redeemed, its rule's funnel count not updated", "rule_id", cp.RuleID, "err", err)
	}
	if cp.IssuedUnderSuspicion && customer != "" {
		// The report finds the customer by the index, from this day too.
		if _, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, c := range indexSuspectCmds(ctx, customer, now) {
				_ = p.Process(ctx, c)
			}
			return nil
		}); err != nil {
			l.log.Warn("a redemption under suspicion not in the fraud index", "err", err)
		}
		if err := unindexErased(context.WithoutCancel(ctx), l.rdb, customer); err != nil {
			l.log.Warn("an erased customer left in the fraud index", "err", err)
		}
	}
	return cp, nil
}

// Opened records that the customer opened the coupon in the app (the
// first time counts), answering the coupon. With a customer id, only
// that customer's coupon is found: another's is not found, exactly like a
// code that does not exist.
func (l *Ledger) Opened(ctx context.Context, code, customerID string) (*Coupon, error) {
	code = NormalizeCode(code)
	if !l.coupons.Valid(code) {
		return nil, rules.ErrNotFound
	}
	key, err := l.recordKey(ctx, code)
	if err != nil {
		return nil, err
	}
	if customerID != "" && key != couponRecordKey(customerID, code) {
		return nil, rules.ErrNotFound
	}
	journal, owner := key, customerOfRecord(key)
	if owner != "" {
		journal = customerKey(owner, partEvents)
	}
	n, err := openedScript.Run(ctx, l.rdb, []string{key, journal}, l.now().UnixMilli(), l.events.Wanted(), code).Int()
	if err != nil {
		return nil, rules.RedisErr("opened", err)
	}
	if n == 1 && owner != "" && l.events.wants("coupon.opened") {
		l.events.Kick(owner)
	}
	if n < 0 {
		return nil, rules.ErrNotFound
	}
	cp, err := l.Get(ctx, code)
	if err != nil {
		return nil, err // the open is recorded; asked again, it answers the coupon
	}
	if n == 1 {
		if err := countOne(ctx, l.rdb, l.now(), cp.RuleID, "opened", cp.Variant, cp.StoreID); err != nil {
			l.log.Warn("coupon opened, its rule's funnel count not updated", "rule_id", cp.RuleID, "err", err)
		}
	}
	return cp, nil
}

// openedScript records a coupon's first opening, journaling
// coupon.opened then. KEYS: the coupon's record, the customer's journal
// of events out (the record again for an archived coupon). ARGV: now ms,
// the event types journaled, the code. Answers 1 the first time, 0
// after, -1 for no record.
var openedScript = script("opened", "journal")
