package engine

import (
	"context"

	"github.com/nearcast/nearcast/geo"
	"github.com/redis/go-redis/v9"
)

// What the tests in engine_test reach of the package's insides.

// Batcher is the batcher, for its own tests.
type Batcher struct{ b *batcher }

func NewBatcher(rdb redis.UniversalClient, lanes int) Batcher { return Batcher{newBatcher(rdb, lanes)} }
func (b Batcher) Do(ctx context.Context, cmds ...redis.Cmder) { b.b.do(ctx, cmds...) }
func (b Batcher) RunScript(ctx context.Context, s *redis.Script, keys []string, args ...any) *redis.Cmd {
	return b.b.runScript(ctx, s, keys, args...)
}

// CouponRecordKey is where a coupon's record lives.
var CouponRecordKey = couponRecordKey

// Hits are the fences the snapshot in force has near p.
func (e *Engine) Hits(p Ping) []geo.Hit { return e.snaps.Current().Index.Near(p.Lat, p.Lng, nil) }

// ObserveArgs are the observe step's arguments for p near hits, as a
// ping's step builds them (in a pooled call, given back after read).
func (e *Engine) ObserveArgs(p Ping, hits []geo.Hit, read func(args []any)) {
	oc := observeCalls.Get().(*observeCall)
	defer oc.release()
	read(e.observeArgs(oc, e.snaps.Current(), p, p.TS, p.TS, hits, Options{}, 0))
}

// HoldTallyArm has f run after a ping arms the funnel tally's write,
// before the write's goroutine starts; set it before the engine answers
// its first ping.
func (e *Engine) HoldTallyArm(f func()) { e.tally.armed = f }

// HoldBehind has the work behind each answer wait for gate before it
// starts; set it before the engine answers its first ping.
func (e *Engine) HoldBehind(gate func()) { e.behind.gate = gate }

// KeyIntents is the outbox's intents.
const KeyIntents = keyIntents

// TokenOwnerOf is the hash and the field that name an FCM token's owner.
func TokenOwnerOf(token string) (key, field string) {
	o := tokenOwnerOf(token)
	return o.key, o.field
}

// FoldTokenOwners is the second half of MigrateTokenOwners, on legacy
// owner keys read as holders says.
func (cs *Customers) FoldTokenOwners(ctx context.Context, keys, holders []string) (int, error) {
	return cs.foldTokenOwners(ctx, keys, holders)
}
