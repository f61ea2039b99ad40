package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/rules"
)

// Redis keys of the subscriptions, under one hash tag so that in Redis
// Cluster one script changes a document and the versions together.
const (
	keySubs        = "nc:{hooks}:subs"         // hash: subscription id → JSON of the current version
	keySubVersions = "nc:{hooks}:sub_versions" // hash: subscription id → latest version (kept past a delete, so versions go on)
	keyVersion     = "nc:{hooks}:version"      // counter, bumped by every change
	keyHistory     = "nc:{hooks}:history:"     // list per subscription id: its last MaxVersions versions, oldest first, without the secret

	// ChannelChanged carries the new version after every change of the
	// subscriptions; every replica's Live reloads on it.
	ChannelChanged = "nc:hooks:changed"
)

// deadKey is a subscription's dead letters: a list of DeadLetter JSON,
// newest first, at most Config.DeadMax long.
func deadKey(subID string) string { return "nc:{hookdead:" + subID + "}:list" }

// ErrConflict is returned by Put when the subscription's version is not
// the one the caller read.
var ErrConflict = rules.ErrConflict

// ErrNotFound is returned for a subscription that does not exist.
var ErrNotFound = rules.ErrNotFound

// MaxVersions is how many versions of a subscription Versions keeps: the
// latest, the oldest going first.
const MaxVersions = 50

// Store keeps the subscriptions and their dead letters in Redis.
type Store struct {
	rdb   redis.UniversalClient
	em    *Emitter
	now   func() time.Time
	allow []*net.IPNet
}

// NewStore returns a store on rdb.
func NewStore(rdb redis.UniversalClient) *Store {
	return &Store{rdb: rdb, em: NewEmitter(rdb, 0), now: time.Now}
}

// WithMaxLen makes the entries the store appends (replayed dead letters,
// test events) keep each shard's stream near maxLen entries, as the
// Emitter's do (0: DefaultMaxLen). Call it before the store is used.
func (st *Store) WithMaxLen(maxLen int64) *Store {
	st.em = NewEmitter(st.rdb, maxLen)
	return st
}

// WithAllowNets lets subscription URLs name IP addresses of these
// networks, however private (NormalizeAllowing): the operator's
// allow-list, the same the Deliverer's Config.AllowNets dials. Call it
// before the store is used.
func (st *Store) WithAllowNets(nets []*net.IPNet) *Store {
	st.allow = nets
	return st
}

// Check normalizes and validates a subscription as Put does, writing
// nothing.
func (st *Store) Check(s *Subscription) error { return s.NormalizeAllowing(st.allow) }

// putScript writes the next version of a subscription if its latest
// version is still the one read, and keeps it in the subscription's
// history. KEYS: subs, versions, version, history. ARGV: id, version
// read, document, channel, the document without its secret, versions
// kept. Answers -1 on a conflict, else whether it existed (1) or not (0).
var putScript = redis.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if cur ~= tonumber(ARGV[2]) then return -1 end
local existed = redis.call('HEXISTS', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], cur + 1)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('RPUSH', KEYS[4], ARGV[5])
redis.call('LTRIM', KEYS[4], -tonumber(ARGV[6]), -1)
local v = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[4], v)
return existed
`)

// deleteScript removes a subscription. KEYS: subs, version. ARGV: id,
// channel. Answers 0 when there was none.
var deleteScript = redis.NewScript(`
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
local v = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[2], v)
return v
`)

// Put validates and saves a subscription as its next version, which it
// sets on s with UpdatedAt, and answers whether it is new. ifVersion > 0
// makes it fail with ErrConflict unless the latest version is that one
// (If-Match). A new subscription receives the events emitted from now on.
// A subscription saved without a secret keeps the one it had; a new one
// gets a new secret (Normalize). Every version is kept, without its
// secret, for Versions (the last MaxVersions).
func (st *Store) Put(ctx context.Context, s *Subscription, ifVersion int64) (created bool, err error) {
	if s.Secret == "" && rules.ValidID("id", s.ID) == nil {
		cur, err := st.Get(ctx, s.ID)
		switch {
		case err == nil:
			s.Secret = cur.Secret
		case !errors.Is(err, ErrNotFound):
			return false, err
		}
	}
	if err := st.Check(s); err != nil {
		return false, err
	}
	for attempt := 0; ; attempt++ {
		prev, err := st.rdb.HGet(ctx, keySubVersions, s.ID).Int64()
		if err != nil && !errors.Is(err, redis.Nil) {
			return false, rules.RedisErr("read subscription version", err)
		}
		if ifVersion > 0 && prev != ifVersion {
			return false, ErrConflict
		}
		s.Version = prev + 1
		s.UpdatedAt = st.now().UTC().Truncate(time.Millisecond)
		doc, err := json.Marshal(s)
		if err != nil {
			return false, err
		}
		kept := *s
		kept.Secret = ""
		hist, err := json.Marshal(&kept)
		if err != nil {
			return false, err
		}
		res, err := putScript.Run(ctx, st.rdb, []string{keySubs, keySubVersions, keyVersion, keyHistory + s.ID},
			s.ID, prev, doc, ChannelChanged, hist, MaxVersions).Int64()
		if err != nil {
			return false, rules.RedisErr("save subscription", err)
		}
		if res >= 0 {
			created = res == 0
			break
		}
		if ifVersion > 0 || attempt >= 10 {
			return false, ErrConflict
		}
	}
	if created {
		// Its groups start at the end of each stream: the events from now
		// on, whatever groups a subscription of the same id deleted
		// before left (a deliverer that had not heard of the delete).
		for n := 0; n < Shards; n++ {
			if err := st.rdb.XGroupDestroy(ctx, StreamKey(n), groupOf(s.ID)).Err(); err != nil && !noSuchKey(err) && !strings.Contains(err.Error(), "NOGROUP") {
				return true, rules.RedisErr("reset consumer group", err)
			}
		}
		if err := ensureGroups(ctx, st.rdb, s.ID); err != nil {
			return true, err
		}
	}
	return created, nil
}

// ensureGroups creates a subscription's consumer group on every shard
// where it is missing, at the end of the stream.
func ensureGroups(ctx context.Context, rdb redis.UniversalClient, subID string) error {
	for n := 0; n < Shards; n++ {
		if err := ensureGroup(ctx, rdb, n, subID); err != nil {
			return err
		}
	}
	return nil
}

func ensureGroup(ctx context.Context, rdb redis.UniversalClient, shard int, subID string) error {
	err := rdb.XGroupCreateMkStream(ctx, StreamKey(shard), groupOf(subID), "$").Err()
	if err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
		return rules.RedisErr("create consumer group", err)
	}
	return nil
}

// Get reads a subscription.
func (st *Store) Get(ctx context.Context, id string) (*Subscription, error) {
	doc, err := st.rdb.HGet(ctx, keySubs, id).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, rules.RedisErr("read subscription", err)
	}
	var s Subscription
	if err := json.Unmarshal(doc, &s); err != nil {
		return nil, fmt.Errorf("decode subscription %s: %w", id, err)
	}
	return &s, nil
}

// Versions lists the versions of a subscription kept, oldest first: the
// last MaxVersions, each without its secret. A deleted subscription's
// versions stay, and one saved later under its id continues them.
func (st *Store) Versions(ctx context.Context, id string) ([]*Subscription, error) {
	docs, err := st.rdb.LRange(ctx, keyHistory+id, 0, -1).Result()
	if err != nil {
		return nil, rules.RedisErr("read subscription versions", err)
	}
	if len(docs) == 0 {
		return nil, ErrNotFound
	}
	out := make([]*Subscription, 0, len(docs))
	for _, doc := range docs {
		var s Subscription
		if err := json.Unmarshal([]byte(doc), &s); err != nil {
			return nil, fmt.Errorf("decode subscription %s history: %w", id, err)
		}
		out = append(out, &s)
	}
	return out, nil
}

// SendTest appends a test event (TypeTest) for the subscription alone to
// a shard's stream, and answers its id: the subscription's receiver gets
// it signed like any event, whatever events it asks for, and it shows in
// the delivery's health and, if the receiver does not take it in time,
// in the dead letters. A disabled subscription is refused (a
// precondition fault of enabled): its test event would wait until it
// is enabled.
func (st *Store) SendTest(ctx context.Context, subID string) (eventID string, err error) {
	s, err := st.Get(ctx, subID)
	if err != nil {
		return "", err
	}
	if !s.Enabled {
		return "", &rules.ValidationError{Faults: []rules.Fault{{Field: "enabled",
			Message: "the subscription is disabled: enable it to receive events, test events too", Precondition: true}}}
	}
	e := Event{ID: NewEventID(), Type: TypeTest, At: st.now().UTC().Truncate(time.Millisecond),
		Data: map[string]any{"subscription_id": subID, "message": "A test event from Nearcast: your endpoint receives and verifies its events."}}
	a, err := st.em.xadd(&e, subID)
	if err != nil {
		return "", err
	}
	// The group first: one created after the event would start past it.
	if err := ensureGroup(ctx, st.rdb, ShardOf(e.CustomerID), subID); err != nil {
		return "", err
	}
	if err := st.rdb.XAdd(ctx, a).Err(); err != nil {
		return "", rules.RedisErr("send test event", err)
	}
	return e.ID, nil
}

// List reads every subscription, by id. There are few (an operator
// makes each), so there is no paging.
func (st *Store) List(ctx context.Context) ([]*Subscription, error) {
	_, subs, err := st.load(ctx)
	return subs, err
}

// load reads the version and the subscriptions in one transaction.
func (st *Store) load(ctx context.Context) (int64, []*Subscription, error) {
	var vCmd *redis.StringCmd
	var sCmd *redis.MapStringStringCmd
	_, err := st.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		vCmd = p.Get(ctx, keyVersion)
		sCmd = p.HGetAll(ctx, keySubs)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, nil, rules.RedisErr("load subscriptions", err)
	}
	version, _ := strconv.ParseInt(vCmd.Val(), 10, 64)
	out := make([]*Subscription, 0, len(sCmd.Val()))
	for id, doc := range sCmd.Val() {
		var s Subscription
		if err := json.Unmarshal([]byte(doc), &s); err != nil {
			return 0, nil, fmt.Errorf("decode subscription %s: %w", id, err)
		}
		out = append(out, &s)
	}
	slices.SortFunc(out, func(a, b *Subscription) int { return strings.Compare(a.ID, b.ID) })
	return version, out, nil
}

// Delete removes a subscription, its consumer groups (its place in each
// stream) and its dead letters.
func (st *Store) Delete(ctx context.Context, id string) error {
	v, err := deleteScript.Run(ctx, st.rdb, []string{keySubs, keyVersion}, id, ChannelChanged).Int64()
	if err != nil {
		return rules.RedisErr("delete subscription", err)
	}
	if v == 0 {
		return ErrNotFound
	}
	for n := 0; n < Shards; n++ {
		err := st.rdb.XGroupDestroy(ctx, StreamKey(n), groupOf(id)).Err()
		if err != nil && !noSuchKey(err) {
			return rules.RedisErr("delete consumer group", err)
		}
	}
	return rules.RedisErr("delete dead letters", st.rdb.Del(ctx, deadKey(id)).Err())
}

// Version is the subscriptions' change counter.
func (st *Store) Version(ctx context.Context) (int64, error) {
	v, err := st.rdb.Get(ctx, keyVersion).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return v, rules.RedisErr("read subscriptions version", err)
}

// DeadLetter is an event a subscription's receiver did not take within
// Config.MaxAge.
type DeadLetter struct {
	Event      Event     `json:"event"`
	Entry      string    `json:"entry"` // its stream entry's id
	Attempts   int       `json:"attempts"`
	LastStatus int       `json:"last_status,omitempty"` // the last HTTP status; 0: no answer
	LastError  string    `json:"last_error"`
	DeadAt     time.Time `json:"dead_at"`
}

// DeadLetters answers a page of a subscription's dead letters, newest
// first, and how many there are.
func (st *Store) DeadLetters(ctx context.Context, subID string, offset, limit int) ([]DeadLetter, int64, error) {
	if limit <= 0 || offset < 0 {
		return nil, 0, rules.Invalid("limit", "limit must be 1 or more, offset 0 or more")
	}
	var lr *redis.StringSliceCmd
	var ll *redis.IntCmd
	_, err := st.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		lr = p.LRange(ctx, deadKey(subID), int64(offset), int64(offset+limit-1))
		ll = p.LLen(ctx, deadKey(subID))
		return nil
	})
	if err != nil {
		return nil, 0, rules.RedisErr("read dead letters", err)
	}
	out := make([]DeadLetter, 0, len(lr.Val()))
	for _, doc := range lr.Val() {
		var d DeadLetter
		if err := json.Unmarshal([]byte(doc), &d); err == nil {
			out = append(out, d)
		}
	}
	return out, ll.Val(), nil
}

// DropDead removes dead letters by event id (none given: all of them),
// answering how many went.
func (st *Store) DropDead(ctx context.Context, subID string, eventIDs ...string) (int, error) {
	if len(eventIDs) == 0 {
		// Counted and dropped in one transaction: a letter that comes in
		// between is not dropped uncounted.
		var n *redis.IntCmd
		_, err := st.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			n = p.LLen(ctx, deadKey(subID))
			p.Del(ctx, deadKey(subID))
			return nil
		})
		return int(n.Val()), rules.RedisErr("drop dead letters", err)
	}
	return removeDead(ctx, st.rdb, subID, func(d *DeadLetter) bool { return slices.Contains(eventIDs, d.Event.ID) })
}

// ReplayDead sends dead letters again (none given: all of them), oldest
// first, to this subscription only: each is appended anew to its
// customer's stream, after the events written since, and leaves the
// dead letters. It answers how many it replayed.
func (st *Store) ReplayDead(ctx context.Context, subID string, eventIDs ...string) (int, error) {
	docs, err := st.rdb.LRange(ctx, deadKey(subID), 0, -1).Result()
	if err != nil {
		return 0, rules.RedisErr("read dead letters", err)
	}
	n := 0
	for i := len(docs) - 1; i >= 0; i-- {
		var d DeadLetter
		if err := json.Unmarshal([]byte(docs[i]), &d); err != nil {
			continue
		}
		if len(eventIDs) > 0 && !slices.Contains(eventIDs, d.Event.ID) {
			continue
		}
		a, err := st.em.xadd(&d.Event, subID)
		if err != nil {
			return n, err
		}
		// The event first, then the letter: a stop between sends it twice, never not at all.
		if err := st.rdb.XAdd(ctx, a).Err(); err != nil {
			return n, rules.RedisErr("replay dead letter", err)
		}
		if err := st.rdb.LRem(ctx, deadKey(subID), 1, docs[i]).Err(); err != nil {
			return n, rules.RedisErr("remove dead letter", err)
		}
		n++
	}
	return n, nil
}

// removeDead removes the dead letters of a subscription that match.
func removeDead(ctx context.Context, rdb redis.UniversalClient, subID string, match func(*DeadLetter) bool) (int, error) {
	docs, err := rdb.LRange(ctx, deadKey(subID), 0, -1).Result()
	if err != nil {
		return 0, rules.RedisErr("read dead letters", err)
	}
	n := 0
	for _, doc := range docs {
		var d DeadLetter
		if json.Unmarshal([]byte(doc), &d) != nil || !match(&d) {
			continue
		}
		k, err := rdb.LRem(ctx, deadKey(subID), 1, doc).Result()
		if err != nil {
			return n, rules.RedisErr("remove dead letter", err)
		}
		n += int(k)
	}
	return n, nil
}

// Live keeps the subscriptions in force on a replica and reloads them
// when they change: at once on a notice on ChannelChanged, and by a
// version check every PollEvery should a notice be lost (rules.Live's
// way).
type Live struct {
	store     *Store
	rdb       redis.UniversalClient
	log       *slog.Logger
	PollEvery time.Duration

	cur atomic.Pointer[Snapshot]
	mu  sync.Mutex
}

// Snapshot is the subscriptions at one version, by id.
type Snapshot struct {
	Version int64
	Subs    map[string]*Subscription
}

// NewLive returns a Live over the store; call Refresh before use.
func NewLive(st *Store, log *slog.Logger) *Live {
	return &Live{store: st, rdb: st.rdb, log: log, PollEvery: time.Second}
}

// Store is the repository the subscriptions are read from.
func (l *Live) Store() *Store { return l.store }

// Current is the snapshot in force; nil before the first Refresh.
func (l *Live) Current() *Snapshot { return l.cur.Load() }

// Refresh reloads the subscriptions if their version moved.
func (l *Live) Refresh(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, err := l.store.Version(ctx)
	if err != nil {
		return err
	}
	if cur := l.cur.Load(); cur != nil && cur.Version == v {
		return nil
	}
	version, subs, err := l.store.load(ctx)
	if err != nil {
		return err
	}
	snap := &Snapshot{Version: version, Subs: make(map[string]*Subscription, len(subs))}
	for _, s := range subs {
		snap.Subs[s.ID] = s
	}
	l.cur.Store(snap)
	l.log.Info("webhook subscriptions loaded", "version", version, "subscriptions", len(subs))
	return nil
}

// Run follows changes until ctx ends (rules.Follow).
func (l *Live) Run(ctx context.Context) error {
	if err := l.Refresh(ctx); err != nil && ctx.Err() == nil {
		l.log.Warn("webhook subscriptions refresh failed", "err", err)
	}
	rules.Follow(ctx, l.rdb, ChannelChanged, l.PollEvery, l.Refresh, l.log, "webhook subscriptions refresh failed")
	return nil
}
