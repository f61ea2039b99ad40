package engine

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// giveBackScript returns a reserved unit that no coupon used.
// KEYS: store-day counter, budget counter.
var giveBackScript = script("give_back")

// settleScript ends an intent, once: with "a" it moves it to the outbox's
// stream (the offer was issued), with "d" it drops it. Whoever settles it
// takes the rule reservations recorded with it, to give back those no
// coupon used; a second settler gets nil and gives back nothing.
// KEYS: intents, stream, reservations. ARGV: the intent, "a" or "d", the
// push reference (JSON). Returns the reservations recorded ("" for none),
// or nil when the intent was settled already.
var settleScript = script("settle")

// reservation is a unit of a rule's capacity taken for a candidate, as
// recorded with its intent: "rule\tstore\tstore-day key\tbudget key".
type reservation struct{ rule, store, storeDay, budget string }

func (r reservation) String() string {
	return r.rule + "\t" + r.store + "\t" + r.storeDay + "\t" + r.budget
}

// parseReservations reads the reservations recorded with an intent.
func parseReservations(v string) []reservation {
	var out []reservation
	for _, line := range strings.Split(v, "\n") {
		if f := strings.Split(line, "\t"); len(f) == 4 {
			out = append(out, reservation{f[0], f[1], f[2], f[3]})
		}
	}
	return out
}

// recordScript records the units of rule capacity an intent holds, while
// the intent is pending: an intent settled already (dropped by an erasure,
// or by a dispatcher past its deadline) gets no record, which only its
// settling would remove.
// KEYS: the outbox's intents, its reserved records. ARGV: the intent, the
// units ("rule\tstore\tstore-day key\tbudget key" a line).
// Returns 1 when recorded, 0 when the intent is settled.
var recordScript = script("record")

// settleCmd is the command that settles an intent.
func settleCmd(ctx context.Context, intent string, issued bool, code, customerID string) *scripted {
	mode := "d"
	if issued {
		mode = "a"
	}
	return newScripted(ctx, settleScript, []string{keyIntents, keyOutbox, keyReserved}, intent, mode, pushRef(code, customerID))
}

// giveBackCmds return reserved units that no coupon used.
func giveBackCmds(ctx context.Context, rs []reservation) []*scripted {
	out := make([]*scripted, len(rs))
	for i, r := range rs {
		out[i] = newScripted(ctx, giveBackScript, []string{r.storeDay, r.budget})
	}
	return out
}

// intentOf names an issue in the outbox's intents: the code (of fixed
// length) and the customer.
func intentOf(code, customerID string) string { return code + customerID }

// parseIntent splits an intent.
func parseIntent(s string) (code, customerID string, ok bool) {
	if len(s) <= CouponCodeLen {
		return "", "", false
	}
	return s[:CouponCodeLen], s[CouponCodeLen:], true
}

// pushRef is what the outbox's stream holds of a push: its record, in the
// customer's keys, holds the rest.
func pushRef(code, customerID string) string {
	b, _ := json.Marshal(Push{ID: code, CustomerID: customerID})
	return string(b)
}

// erasedCodeTTL is how long an erased customer's coupon codes stay marked
// erased in the codes' index: far longer than any offer takes to settle,
// so that a settling step that read the customer's record before the
// erasure cannot index the code again after it. The mark holds nothing
// of the customer.
const erasedCodeTTL = time.Hour

// indexCodeScript indexes a code for its customer unless an erasure has
// marked it erased (an empty value): it answers 0 then, and the caller
// drops what it was settling.
var indexCodeScript = script("index_code")

// indexCodeCmd is indexCodeScript for a batch.
func indexCodeCmd(ctx context.Context, code, customerID string, ttl time.Duration) *scripted {
	return newScripted(ctx, indexCodeScript, []string{codeIndexKey(code)}, customerID, max(ttl, time.Millisecond).Milliseconds())
}

// indexCode runs indexCodeScript; false means the customer was erased.
func indexCode(ctx context.Context, rdb redis.Scripter, code, customerID string, ttl time.Duration) (bool, error) {
	n, err := indexCodeCmd(ctx, code, customerID, ttl).run(ctx, rdb).Int()
	return n == 1, err
}
