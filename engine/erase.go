package engine

import (
	"context"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/rules"
)

// settleInFlight makes an erasure win against the customer's offers in
// flight. It runs after the erasure's script: from then on no step can
// issue the customer an offer (the commit refuses a customer without a
// profile), and every code already issued is marked erased in the index,
// which no later index write overwrites (the engine and a dispatcher
// write the index through indexCodeScript, which leaves the mark). What is left is
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
		// Its code's index, which the engine writes with the intent or
		// with the customer's step, names them: marked erased, as their
		// issued codes' are (eraseKeys).
		if err := cs.rdb.Set(ctx, codeIndexKey(code), "", erasedCodeTTL).Err(); err != nil {
			return rules.RedisErr("erase customer: mark an offer in flight", err)
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
