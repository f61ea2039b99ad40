package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

const outboxGroup = "senders"

// Dispatcher reads the outbox through a Redis consumer group and delivers
// each push through a Sender. A push is acknowledged (and removed from the
// stream) only once its fate is known: sent, or dropped for a recorded
// reason. A push left pending by a crashed worker or a transient failure
// is reclaimed after ClaimIdle and tried again until it expires.
type Dispatcher struct {
	rdb       redis.UniversalClient
	customers *Customers
	sender    Sender
	cfg       DispatchConfig
	limiter   *rate.Limiter
	log       *slog.Logger
	now       func() time.Time
}

// NewDispatcher returns a dispatcher; now may be nil for the wall clock.
func NewDispatcher(rdb redis.UniversalClient, sender Sender, cfg DispatchConfig, log *slog.Logger, now func() time.Time) *Dispatcher {
	if now == nil {
		now = time.Now
	}
	if cfg.Workers < 1 {
		cfg.Workers = 1
	}
	if cfg.Block <= 0 {
		cfg.Block = time.Second
	}
	limit := rate.Inf
	if cfg.Rate > 0 {
		limit = rate.Limit(cfg.Rate)
	}
	return &Dispatcher{rdb: rdb, customers: NewCustomers(rdb), sender: sender, cfg: cfg, log: log, now: now,
		limiter: rate.NewLimiter(limit, max(1, int(cfg.Rate/10)))}
}

// Run sends pushes until ctx ends, then waits for the pushes in flight.
func (d *Dispatcher) Run(ctx context.Context) error {
	for {
		err := d.rdb.XGroupCreateMkStream(ctx, keyOutbox, outboxGroup, "0").Err()
		if err == nil || strings.Contains(err.Error(), "BUSYGROUP") {
			break
		}
		d.log.Warn("outbox: cannot create consumer group, retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	var wg sync.WaitGroup
	for w := 0; w < d.cfg.Workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			d.work(ctx, fmt.Sprintf("%s-%d", d.cfg.Consumer, w))
		}(w)
	}
	wg.Wait()
	return nil
}

// Unsent is how many pushes wait in the outbox for a dispatcher: each
// leaves it once sent or given up (those delayed for a retry wait
// elsewhere).
func Unsent(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
	return rdb.XLen(ctx, keyOutbox).Result()
}

func (d *Dispatcher) work(ctx context.Context, consumer string) {
	claimEvery := d.cfg.ClaimIdle / 3
	if claimEvery <= 0 {
		claimEvery = time.Second
	}
	nextClaim, nextSweep := time.Now(), time.Now()
	for ctx.Err() == nil {
		d.release(ctx)
		if time.Now().After(nextSweep) {
			// Offers their engine left behind: rare, so looked for once
			// a second, not on every read.
			nextSweep = time.Now().Add(time.Second)
			d.recoverIntents(ctx)
		}
		if time.Now().After(nextClaim) {
			nextClaim = time.Now().Add(claimEvery)
			msgs, _, err := d.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
				Stream: keyOutbox, Group: outboxGroup, Consumer: consumer,
				MinIdle: d.cfg.ClaimIdle, Start: "0-0", Count: 16,
			}).Result()
			if err != nil && ctx.Err() == nil && !errors.Is(err, redis.Nil) {
				d.log.Warn("outbox: reclaim failed", "err", err)
			}
			for _, m := range msgs {
				d.handle(ctx, m)
			}
		}
		streams, err := d.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: outboxGroup, Consumer: consumer, Streams: []string{keyOutbox, ">"},
			Count: 16, Block: d.cfg.Block,
		}).Result()
		if err != nil {
			if errors.Is(err, redis.Nil) || ctx.Err() != nil {
				continue
			}
			d.log.Warn("outbox: read failed", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		for _, s := range streams {
			for _, m := range s.Messages {
				d.handle(ctx, m)
			}
		}
	}
}

// handle delivers one outbox entry. It runs to the end even when ctx is
// cancelled, so that a shutdown finishes the sends in flight.
func (d *Dispatcher) handle(ctx context.Context, m redis.XMessage) {
	ctx = context.WithoutCancel(ctx)
	p, to, ok := d.pushOf(ctx, m)
	if !ok {
		return
	}
	if !d.now().Before(p.ExpiresAt) {
		d.finish(ctx, m.ID, &p, "expired", nil)
		return
	}
	if err := to.err(); err != nil {
		d.log.Warn("outbox: cannot resolve device, will retry", "push", p.ID, "err", err)
		return
	}
	target := to.target(p.DeviceID)
	if !target.consent {
		d.finish(ctx, m.ID, &p, "no_consent", nil)
		return
	}
	if target.device == nil {
		d.finish(ctx, m.ID, &p, "no_device", nil)
		return
	}
	p.DeviceID, p.Token, p.Platform = target.device.ID, target.device.FCMToken, target.device.Platform
	_ = d.limiter.Wait(ctx) // its turn; ctx has no deadline, and a shutdown still finishes the sends in flight
	sendCtx, cancel := context.WithTimeout(ctx, d.cfg.SendTimeout)
	err := d.sender.Send(sendCtx, p)
	cancel()
	d.settleSend(ctx, m.ID, p, err)
}

// pushOf reads the push an entry refers to, and with it, in the same
// round trip, what picks the device it goes to. The entry is a reference; the
// push is in the coupon's record, with its customer's keys. A push whose
// coupon is marked sent was delivered by a worker that stopped before
// acknowledging it: it is not sent twice. A record gone means the
// customer was erased. ok is false when the entry is settled (or left
// for a retry) here.
func (d *Dispatcher) pushOf(ctx context.Context, m redis.XMessage) (p Push, to targetRead, ok bool) {
	raw, _ := m.Values["push"].(string)
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		d.finish(ctx, m.ID, nil, "malformed", err)
		return p, to, false
	}
	recKey := couponRecordKey(p.CustomerID, p.ID)
	var recCmd *redis.SliceCmd
	var ttlCmd *redis.DurationCmd
	var indexCmd *redis.StringCmd
	_, _ = d.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		recCmd, ttlCmd = pl.HMGet(ctx, recKey, "push", "sent_at"), pl.PTTL(ctx, recKey)
		indexCmd = pl.Get(ctx, codeIndexKey(p.ID))
		to = readTarget(ctx, pl, p.CustomerID)
		return nil
	}) // each command carries its own error; a missing index is written below
	rec, err := recCmd.Result()
	if err == nil {
		err = ttlCmd.Err()
	}
	if err != nil || len(rec) != 2 {
		d.log.Warn("outbox: cannot read a push's record, will retry", "push", p.ID, "err", err)
		return p, to, false
	}
	doc, _ := rec[0].(string)
	if sent, _ := rec[1].(string); sent != "" || doc == "" {
		d.finish(ctx, m.ID, nil, "", nil) // sent already, or erased with its customer
		return p, to, false
	}
	attempts := p.Attempts
	p = Push{}
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		d.finish(ctx, m.ID, nil, "malformed", err)
		return p, to, false
	}
	p.Attempts = attempts
	// The code's index, should the engine have failed to write it: a push
	// never goes out with a code the till cannot look up. (Read with the
	// record: most pushes find it written, and cost no write.)
	switch index, err := indexCmd.Result(); {
	case err != nil && !errors.Is(err, redis.Nil):
		d.log.Warn("outbox: cannot read a push's code index, will retry", "push", p.ID, "err", err)
		return p, to, false
	case err == nil && index == p.CustomerID:
	case err == nil && index == "":
		d.finish(ctx, m.ID, nil, "", nil) // erased with its customer
		return p, to, false
	default:
		if !d.indexed(ctx, m, p, ttlCmd.Val()) {
			return p, to, false
		}
	}
	return p, to, true
}

// indexed writes a push's code index that was missing, answering whether
// the push may go on (false: left for a retry, or settled here because
// its customer was erased meanwhile).
func (d *Dispatcher) indexed(ctx context.Context, m redis.XMessage, p Push, ttl time.Duration) bool {
	if ttl > 0 {
		indexed, err := indexCode(ctx, d.rdb, p.ID, p.CustomerID, ttl)
		if err != nil {
			d.log.Warn("outbox: cannot index a push's coupon, will retry", "push", p.ID, "err", err)
			return false
		}
		if !indexed {
			d.finish(ctx, m.ID, nil, "", nil) // erased with its customer since the record was read
			return false
		}
	}
	return true
}

// settleSend records what became of a push FCM was asked to send: sent,
// dropped for good (an unregistered token is removed too), or tried again
// later.
func (d *Dispatcher) settleSend(ctx context.Context, entry string, p Push, err error) {
	var perm *PermanentError
	switch {
	case err == nil:
		d.sent(ctx, entry, p)
		d.log.Debug("push sent", "push", p.ID, "customer_id", p.CustomerID, "device_id", p.DeviceID)
	case errors.Is(err, ErrUnregistered):
		if err := d.customers.dropToken(ctx, p.CustomerID, p.DeviceID, p.Token); err != nil {
			d.log.Warn("outbox: cannot drop unregistered token", "err", err)
		}
		d.finish(ctx, entry, &p, "unregistered", err)
	case errors.As(err, &perm):
		d.finish(ctx, entry, &p, perm.Reason, err)
	default:
		d.retryLater(ctx, entry, p, err)
	}
}

// Backoff of a push that failed for a passing reason: doubling from
// retryBase up to retryMax, each delay drawn from its upper half (jitter,
// so that a burst of failures does not return as a burst), and never
// sooner than the push service's Retry-After.
const (
	retryBase = time.Second
	retryMax  = 2 * time.Minute
)

func retryDelay(attempts int, err error) time.Duration {
	d := retryBase << min(attempts, 10)
	if d > retryMax {
		d = retryMax
	}
	d = d/2 + rand.N(d/2+1)
	var ra *RetryError
	if errors.As(err, &ra) && ra.After > d {
		d = ra.After
	}
	return d
}

// deferScript moves a push from the stream to the delayed set in one step.
// KEYS: outbox, delayed. ARGV: group, entry id, due ms, push JSON.
var deferScript = script("defer")

// releaseScript moves delayed pushes that are due back to the stream.
// KEYS: delayed, outbox. ARGV: now ms, how many at most.
var releaseScript = script("release")

// retryLater sets a push aside until its next try, or drops it when that
// try would come after the push expires.
func (d *Dispatcher) retryLater(ctx context.Context, entry string, p Push, cause error) {
	delay := retryDelay(p.Attempts, cause)
	due := d.now().Add(delay)
	if !due.Before(p.ExpiresAt) {
		d.finish(ctx, entry, &p, "expired", cause)
		return
	}
	p.Attempts++
	payload, err := json.Marshal(p)
	if err == nil {
		err = deferScript.Run(ctx, d.rdb, []string{keyOutbox, keyDelayed}, outboxGroup, entry, due.UnixMilli(), payload).Err()
	}
	if err != nil {
		// Still pending in the stream: reclaimed after ClaimIdle instead.
		d.log.Warn("outbox: cannot defer a push, it will be reclaimed", "push", p.ID, "err", err)
		return
	}
	d.cfg.Metrics.pushed("retry")
	d.log.Warn("push failed, will retry", "push", p.ID, "attempt", p.Attempts, "in", delay.Round(time.Millisecond), "err", cause)
}

// release moves due retries back into the stream.
func (d *Dispatcher) release(ctx context.Context) {
	if err := releaseScript.Run(ctx, d.rdb, []string{keyDelayed, keyOutbox}, d.now().UnixMilli(), 64).Err(); err != nil && ctx.Err() == nil {
		d.log.Warn("outbox: cannot release delayed pushes", "err", err)
	}
}

// sent marks the coupon sent and acknowledges the entry in one
// transaction. Only a crash between FCM's answer and this step can send a
// push twice; the push's collapse key (its rule) then makes the phone
// show it once.
func (d *Dispatcher) sent(ctx context.Context, entry string, p Push) {
	d.cfg.Metrics.pushed("sent")
	// The mark first: should the process stop before the acknowledgement,
	// the entry comes back and is not sent again.
	rec := couponRecordKey(p.CustomerID, p.ID)
	err := markSentScript.Run(ctx, d.rdb, []string{rec, customerKey(p.CustomerID, partEvents)}, d.now().UnixMilli(),
		d.cfg.Events.Wanted(), p.ID, p.DeviceID).Err()
	if err != nil {
		d.log.Warn("outbox: cannot mark a push sent", "entry", entry, "err", err)
		return
	}
	if d.cfg.Events.wants("push.sent") {
		d.cfg.Events.Kick(p.CustomerID)
	}
	_, err = d.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		countIn(ctx, pl, d.now(), p.Data["rule_id"], "sent", p.Data["variant"], p.Data["store_id"])
		pl.XAck(ctx, keyOutbox, outboxGroup, entry)
		pl.XDel(ctx, keyOutbox, entry)
		return nil
	})
	if err != nil {
		d.log.Warn("outbox: cannot acknowledge a sent push", "entry", entry, "err", err)
	}
}

// markSentScript marks a coupon's push sent, unless the coupon was erased
// meanwhile, and lets go of the push's text, which the record keeps only
// until then; the first mark journals push.sent.
// KEYS: the coupon's record, the customer's journal of events out.
// ARGV: now ms, the event types journaled, the code, the device sent to.
var markSentScript = script("mark_sent", "journal")

// dropPushScript lets go of a push's text once it is dropped for a
// reason, and journals push.failed the first time.
// KEYS: the coupon's record, the customer's journal of events out.
// ARGV: now ms, the event types journaled, the code, the reason.
var dropPushScript = script("drop_push", "journal")

// finish acknowledges an entry and removes it from the stream; a push that
// was not sent is recorded in the dead-letter stream and the rule's funnel
// with its reason, before the acknowledgement.
func (d *Dispatcher) finish(ctx context.Context, id string, p *Push, reason string, cause error) {
	if reason != "" {
		d.cfg.Metrics.pushed(reason)
	}
	_, err := d.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		if reason != "" {
			values := map[string]any{"reason": reason, "entry": id}
			if p != nil {
				values["push_id"] = p.ID
				values["rule_id"] = p.Data["rule_id"]
			}
			if cause != nil {
				values["error"] = cause.Error()
			}
			pl.XAdd(ctx, &redis.XAddArgs{Stream: keyDead, MaxLen: 100000, Approx: true, Values: values})
			if p != nil {
				// The push's text is kept only until its fate is known.
				_ = dropPushScript.Run(ctx, pl, []string{couponRecordKey(p.CustomerID, p.ID), customerKey(p.CustomerID, partEvents)},
					d.now().UnixMilli(), d.cfg.Events.Wanted(), p.ID, reason)
			}
			if p != nil && p.Data["rule_id"] != "" {
				field := "failed:" + reason
				if reason == "expired" {
					field = "expired"
				}
				countIn(ctx, pl, d.now(), p.Data["rule_id"], field, "", "")
			}
		}
		pl.XAck(ctx, keyOutbox, outboxGroup, id)
		pl.XDel(ctx, keyOutbox, id)
		return nil
	})
	if redis.HasErrorPrefix(err, "NOSCRIPT") && p != nil {
		// A pipeline does not load scripts: the drop alone, which does.
		err = dropPushScript.Run(ctx, d.rdb, []string{couponRecordKey(p.CustomerID, p.ID), customerKey(p.CustomerID, partEvents)},
			d.now().UnixMilli(), d.cfg.Events.Wanted(), p.ID, reason).Err()
	}
	if err != nil {
		d.log.Warn("outbox: cannot acknowledge, the push may be tried again", "entry", id, "err", err)
	}
	if reason != "" && p != nil && d.cfg.Events.wants("push.failed") {
		d.cfg.Events.Kick(p.CustomerID)
	}
	if reason != "" {
		d.log.Info("push dropped", "reason", reason, "entry", id)
	}
}

// intentGrace is how long past its deadline an intent waits before the
// dispatcher settles it: past the deadline no commit issues (the customer's
// step looks at its own Redis's clock), and the grace covers clocks that
// disagree by less.
const intentGrace = 5 * time.Second

// recoverIntents settles the offers whose engine stopped between issuing
// and announcing: an offer issued (its record is there) is announced; an
// intent with no record is dropped, since its commit can no longer land.
func (d *Dispatcher) recoverIntents(ctx context.Context) {
	cutoff := time.Now().Add(-intentGrace).UnixMilli() // the wall clock, as the deadlines
	due, err := d.rdb.ZRangeByScore(ctx, keyIntents, &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(cutoff, 10), Count: 16}).Result()
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("outbox: cannot read offer intents", "err", err)
		}
		return
	}
	for _, it := range due {
		code, customer, ok := parseIntent(it)
		if !ok {
			d.rdb.ZRem(ctx, keyIntents, it)
			continue
		}
		// Issued, the record says by which rule at which store.
		rec := couponRecordKey(customer, code)
		var ttlCmd *redis.DurationCmd
		var whoCmd *redis.SliceCmd
		if _, err := d.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			ttlCmd, whoCmd = p.PTTL(ctx, rec), p.HMGet(ctx, rec, "rule_id", "store_id")
			return nil
		}); err != nil {
			d.log.Warn("outbox: cannot read an offer's record", "err", err)
			return
		}
		ttl, who := ttlCmd.Val(), whoCmd.Val()
		issued := ttl > 0 // the coupon used its own unit of capacity
		announce := issued
		if issued {
			indexed, err := indexCode(ctx, d.rdb, code, customer, ttl)
			if err != nil {
				d.log.Warn("outbox: cannot index a recovered offer", "err", err)
				return
			}
			announce = indexed // else erased with its customer since the record was read
		}
		if !issued {
			// Its engine wrote the code's index with the intent (or
			// beside the customer's step): it names
			// the customer, for a code never issued. Taken back first, so
			// that a failure leaves the intent for the next look.
			if err := d.rdb.Del(ctx, codeIndexKey(code)).Err(); err != nil {
				d.log.Warn("outbox: cannot take back the index of an offer not issued", "err", err)
				return
			}
		}
		v, err := settleCmd(ctx, it, announce, code, customer).run(ctx, d.rdb).Text()
		if errors.Is(err, redis.Nil) {
			continue // settled meanwhile, by its engine
		}
		if err != nil {
			d.log.Warn("outbox: cannot settle an offer's intent", "err", err)
			return
		}
		var unused []reservation
		for _, r := range parseReservations(v) {
			if issued && r.rule == who[0] && r.store == who[1] {
				continue // the coupon's own
			}
			unused = append(unused, r)
		}
		for _, x := range giveBackCmds(ctx, unused) {
			if err := x.run(ctx, d.rdb).Err(); err != nil {
				d.log.Warn("outbox: a rule's reserved unit not given back", "err", err)
			}
		}
		if announce {
			d.log.Info("outbox: announced an offer its engine left behind", "push", code)
		}
	}
}
