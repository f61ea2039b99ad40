package engine

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/rules"
)

// erasedCodeTTL is how long an erased customer's coupon codes stay marked
// erased in the codes' index: far longer than any offer takes to settle,
// so that a settling step that read the customer's record before the
// erasure cannot index the code again after it. The mark holds nothing
// of the customer.
const erasedCodeTTL = time.Hour

// indexCodeScript indexes a code for its customer unless an erasure has
// marked it erased (an empty value): it answers 0 then, and the caller
// drops what it was settling.
var indexCodeScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == '' then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`)

// indexCode runs indexCodeScript; false means the customer was erased.
func indexCode(ctx context.Context, rdb redis.Scripter, code, customerID string, ttl time.Duration) (bool, error) {
	n, err := indexCodeScript.Run(ctx, rdb, []string{codeIndexKey(code)}, customerID, max(ttl, time.Millisecond).Milliseconds()).Int()
	return n == 1, err
}

// settleInFlight makes an erasure win against the customer's offers in
// flight. It runs after the erasure's script: from then on no step can
// issue the customer an offer (the commit refuses a customer without a
// profile), and every code already issued is marked erased in the index,
// which no later index write overwrites (the engine writes a fresh code's
// index with NX, a dispatcher through indexCodeScript). What is left is
// the announcement: an offer committed before the erasure but not yet
// settled would put its push in the outbox after the erasure cleared it.
// Its intent is dropped here, so its settling announces nothing, and the
// capacity it reserved is given back.
func (cs *Customers) settleInFlight(ctx context.Context, customerID string) error {
	all, err := cs.rdb.ZRange(ctx, keyIntents, 0, -1).Result()
	if err != nil {
		return rules.RedisErr("erase customer: read offers in flight", err)
	}
	for _, member := range all {
		code, who, ok := parseIntent(member)
		if !ok || who != customerID {
			continue
		}
		x := settleCmd(ctx, member, false, code, customerID)
		v, err := x.run(ctx, cs.rdb).Text()
		if err == redis.Nil {
			continue // settled meanwhile
		}
		if err != nil {
			return rules.RedisErr("erase customer: drop an offer in flight", err)
		}
		for _, g := range giveBackCmds(ctx, parseReservations(v)) {
			if err := g.run(ctx, cs.rdb).Err(); err != nil && err != redis.Nil {
				return rules.RedisErr("erase customer: give back an offer's capacity", err)
			}
		}
	}
	return nil
}
