package webhook

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/rules"
)

// SubHealth is a subscription's delivery as Redis holds it, over every
// shard: what each replica answers alike, whichever holds the shards.
// (Deliverer.Health has the counters of one process: deliveries,
// failures, the last error.)
type SubHealth struct {
	// Lag is the entries of the streams the subscription's groups have
	// not read yet. Some may turn out not to be for it (another
	// subscription's replay or test, an event its filters leave out):
	// they are skipped when read.
	Lag int64 `json:"lag"`
	// LagAtLeast says Lag is a lower bound: Redis could not tell the lag
	// (entries deleted ahead of the group, or the embedded Redis) and
	// counting stopped at LagCountMax entries of a shard.
	LagAtLeast bool `json:"lag_at_least,omitempty"`
	// Pending is the entries read and not acknowledged: being delivered,
	// waiting for a retry.
	Pending int64 `json:"pending"`
	// Oldest is when the oldest event not delivered yet (pending, or not
	// read yet) was written; zero when there is none.
	Oldest time.Time `json:"oldest_at,omitzero"`
	// DeadLetters is how many dead letters the subscription has.
	DeadLetters int64 `json:"dead_letters"`
}

// OldestAge is the age of the oldest event not delivered yet at now (0:
// none).
func (h SubHealth) OldestAge(now time.Time) time.Duration {
	if h.Oldest.IsZero() {
		return 0
	}
	return max(now.Sub(h.Oldest), 0)
}

// LagCountMax bounds the entries of a shard Health reads to count a lag
// Redis cannot tell.
const LagCountMax = 1000

// Health answers a subscription's delivery health from Redis: zeros for
// one that has no events yet (or no subscription at all).
func (st *Store) Health(ctx context.Context, subID string) (SubHealth, error) {
	m, err := st.HealthOf(ctx, subID)
	return m[subID], err
}

// HealthOf answers the health of several subscriptions by id, in two or
// three pipelined round trips whatever their number: each shard's groups
// (XINFO GROUPS), first and last entry and length; each subscription's
// dead letters (LLEN); then, where a group has some, its oldest pending
// entry (XPENDING) or its first entry not read (XRANGE after the
// group's last-delivered-id).
func (st *Store) HealthOf(ctx context.Context, subIDs ...string) (map[string]SubHealth, error) {
	if len(subIDs) == 0 {
		return map[string]SubHealth{}, nil
	}
	shards, out, err := st.readShards(ctx, subIDs)
	if err != nil {
		return nil, err
	}
	p := st.rdb.Pipeline()
	var needs []healthNeed
	for n, sh := range shards {
		more, err := sh.plan(ctx, p, StreamKey(n), subIDs, out)
		if err != nil {
			return nil, err
		}
		needs = append(needs, more...)
	}
	if len(needs) == 0 {
		return out, nil
	}
	_, _ = p.Exec(ctx) // each command's error is looked at below
	for _, nd := range needs {
		if err := nd.settle(out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// shardRead is what the first round trip reads of one shard.
type shardRead struct {
	groups      *redis.XInfoGroupsCmd
	first, last *redis.XMessageSliceCmd
	length      *redis.IntCmd
}

// readShards is the first round trip: every shard's groups, ends and
// length, and each subscription's dead letters, which it answers.
func (st *Store) readShards(ctx context.Context, subIDs []string) ([]shardRead, map[string]SubHealth, error) {
	shards := make([]shardRead, Shards)
	dead := make([]*redis.IntCmd, len(subIDs))
	p := st.rdb.Pipeline()
	for n := range shards {
		key := StreamKey(n)
		shards[n] = shardRead{groups: p.XInfoGroups(ctx, key), first: p.XRangeN(ctx, key, "-", "+", 1),
			last: p.XRevRangeN(ctx, key, "+", "-", 1), length: p.XLen(ctx, key)}
	}
	for i, id := range subIDs {
		dead[i] = p.LLen(ctx, deadKey(id))
	}
	_, _ = p.Exec(ctx) // each command's error is looked at below
	out := make(map[string]SubHealth, len(subIDs))
	for i, id := range subIDs {
		n, err := dead[i].Result()
		if err != nil {
			return nil, nil, rules.RedisErr("read dead letters", err)
		}
		out[id] = SubHealth{DeadLetters: n}
	}
	return shards, out, nil
}

// healthNeed is what the second round trip reads for one subscription
// on one shard.
type healthNeed struct {
	id      string
	pending *redis.XPendingCmd
	unread  *redis.XMessageSliceCmd
	count   bool // unread counts the lag, up to LagCountMax
}

// plan adds to out what the first round trip tells of the shard's
// groups, and queues on p what is left to read.
func (sh shardRead) plan(ctx context.Context, p redis.Pipeliner, key string, subIDs []string, out map[string]SubHealth) ([]healthNeed, error) {
	groups, err := sh.groups.Result()
	if err != nil && !noSuchKey(err) {
		return nil, rules.RedisErr("read consumer groups", err)
	}
	if len(groups) == 0 {
		return nil, nil // no events on this shard yet
	}
	if err := firstErr(sh.first.Err(), sh.last.Err(), sh.length.Err()); err != nil {
		return nil, rules.RedisErr("read stream", err)
	}
	first, last := entryID(sh.first.Val()), entryID(sh.last.Val())
	length := sh.length.Val()
	byName := make(map[string]redis.XInfoGroup, len(groups))
	for _, g := range groups {
		byName[g.Name] = g
	}
	var needs []healthNeed
	for _, id := range subIDs {
		g, ok := byName[groupOf(id)]
		if !ok {
			continue
		}
		h := out[id]
		h.Pending += g.Pending
		nd := healthNeed{id: id}
		if g.Pending > 0 {
			nd.pending = p.XPending(ctx, key, g.Name)
		}
		if last != "" && compareIDs(last, g.LastDeliveredID) > 0 {
			// Entries after the group's position: Redis's lag, unless
			// it cannot tell (nil: entries deleted ahead of the group)
			// or tells what cannot be (the embedded miniredis answers
			// the stream's length, though the group read some of it).
			trusted := g.Lag >= 0 && !(g.Lag >= length && first != "" && compareIDs(g.LastDeliveredID, first) >= 0)
			switch {
			case trusted:
				h.Lag += min(g.Lag, length) // no more than the stream holds
				if g.Pending == 0 {
					nd.unread = p.XRangeN(ctx, key, "("+g.LastDeliveredID, "+", 1)
				}
			default:
				nd.unread = p.XRangeN(ctx, key, "("+g.LastDeliveredID, "+", LagCountMax+1)
				nd.count = true
			}
		}
		out[id] = h
		if nd.pending != nil || nd.unread != nil {
			needs = append(needs, nd)
		}
	}
	return needs, nil
}

// settle adds what the second round trip read to out.
func (nd healthNeed) settle(out map[string]SubHealth) error {
	h := out[nd.id]
	oldest := ""
	if nd.pending != nil {
		pe, err := nd.pending.Result()
		if err != nil && err != redis.Nil {
			return rules.RedisErr("read pending events", err)
		}
		if pe != nil && pe.Count > 0 {
			oldest = pe.Lower
		}
	}
	if nd.unread != nil {
		msgs, err := nd.unread.Result()
		if err != nil {
			return rules.RedisErr("read unread events", err)
		}
		if nd.count {
			if len(msgs) > LagCountMax {
				msgs = msgs[:LagCountMax]
				h.LagAtLeast = true
			}
			h.Lag += int64(len(msgs))
		}
		if oldest == "" && len(msgs) > 0 {
			oldest = msgs[0].ID
		}
	}
	if oldest != "" {
		if t := entryTime(oldest); !t.IsZero() && (h.Oldest.IsZero() || t.Before(h.Oldest)) {
			h.Oldest = t.UTC()
		}
	}
	out[nd.id] = h
	return nil
}

// noSuchKey tells the error of XINFO GROUPS or XGROUP DESTROY on a
// stream not written yet.
func noSuchKey(err error) bool {
	if err == nil {
		return false
	}
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "no such key") || strings.Contains(msg, "requires the key to exist")
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil && err != redis.Nil {
			return err
		}
	}
	return nil
}

// entryID is the id of the one entry of an XRANGE COUNT 1 ("" none).
func entryID(msgs []redis.XMessage) string {
	if len(msgs) == 0 {
		return ""
	}
	return msgs[0].ID
}

// compareIDs orders two stream entry ids ("<ms>-<seq>"): -1, 0 or 1.
func compareIDs(a, b string) int {
	am, as := splitID(a)
	bm, bs := splitID(b)
	switch {
	case am < bm:
		return -1
	case am > bm:
		return 1
	case as < bs:
		return -1
	case as > bs:
		return 1
	}
	return 0
}

func splitID(id string) (ms, seq uint64) {
	a, b, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseUint(a, 10, 64)
	seq, _ = strconv.ParseUint(b, 10, 64)
	return ms, seq
}
