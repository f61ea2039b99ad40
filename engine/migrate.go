package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// keyMigrated records the migrations of keys done in this Redis, one
// field each, so that a server's start does not look again.
const keyMigrated = "nc:{catalog}:migrated"

// migratedTokenOwners is keyMigrated's field for MigrateTokenOwners.
const migratedTokenOwners = "token_owners"

// keyMigrating is the lease of the replica that migrates keys, at most
// migrationLease.
const (
	keyMigrating   = "nc:{catalog}:migrating"
	migrationLease = 30 * time.Minute
)

// MigrateTokenOwners moves the token owners earlier releases kept in
// keys of their own (legacyTokenOwnerKey) into the hashes the owners
// share now (tokenOwnerOf), on every master of a cluster, answering how
// many it moved. It looks once per Redis: a finished pass is recorded,
// and later calls answer 0 at once. Until it has run, registering and
// releasing a token read and release the old keys too, so nothing waits
// on it.
//
// Each owner moves in steps, since the key and the hash live in
// different slots of a cluster (foldTokenOwners): read the key, add its
// holder to the hash where the token has none, and delete the key while
// it still names that holder. One replica makes the pass (a lease in
// nc:{catalog}:migrating); a batch, once begun, is finished even when the
// server stops; a pass cut short moves the rest at the next start.
func (cs *Customers) MigrateTokenOwners(ctx context.Context) (int, error) {
	done, err := cs.rdb.HExists(ctx, keyMigrated, migratedTokenOwners).Result()
	if err != nil {
		return 0, err
	}
	if done {
		return 0, nil
	}
	// One pass at a time, whichever replica starts first (a pass beside
	// another is safe, but twice the work); the others read the old keys
	// meanwhile, and look again at their next start if this one stops.
	lease := rand.Text()
	ok, err := cs.rdb.SetNX(ctx, keyMigrating, lease, migrationLease).Result()
	if err != nil || !ok {
		return 0, err
	}
	defer releaseTokenScript.Run(context.WithoutCancel(ctx), cs.rdb, []string{keyMigrating}, lease)
	if done, err := cs.rdb.HExists(ctx, keyMigrated, migratedTokenOwners).Result(); err != nil || done {
		return 0, err // another replica's pass ended just before
	}
	var moved atomic.Int64
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.ScanType(ctx, 0, legacyTokenOwnerPrefix+"*", 1000, "string").Iterator()
		var keys []string
		for iter.Next(ctx) {
			if keys = append(keys, iter.Val()); len(keys) == 1000 {
				n, err := cs.moveTokenOwners(context.WithoutCancel(ctx), keys) // a batch is not cut midway
				moved.Add(int64(n))
				if err != nil {
					return err
				}
				keys = keys[:0]
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		n, err := cs.moveTokenOwners(context.WithoutCancel(ctx), keys)
		moved.Add(int64(n))
		return err
	}
	if err := eachMaster(ctx, cs.rdb, scan); err != nil {
		return int(moved.Load()), fmt.Errorf("migrate token owners: %w", err)
	}
	return int(moved.Load()), cs.rdb.HSet(ctx, keyMigrated, migratedTokenOwners, cs.now().UTC().Format("2006-01-02T15:04:05Z")).Err()
}

// moveTokenOwners moves the owners in the legacy keys given, as
// MigrateTokenOwners says, in a few pipelines for them all.
func (cs *Customers) moveTokenOwners(ctx context.Context, keys []string) (int, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	reads := make([]*redis.StringCmd, len(keys))
	if err := cs.pipeline(ctx, func(p redis.Pipeliner) []redis.Cmder {
		cmds := make([]redis.Cmder, len(keys))
		for i, k := range keys {
			reads[i] = p.Get(ctx, k)
			cmds[i] = reads[i]
		}
		return cmds
	}); err != nil {
		return 0, err
	}
	holders := make([]string, len(keys))
	for i, r := range reads {
		holders[i] = r.Val()
	}
	return cs.foldTokenOwners(ctx, keys, holders)
}

// foldTokenOwners adds each legacy key's holder, as read, to the owners'
// hash where the token has none, then deletes the key while it names that
// holder. Where the hash names another, the key stays (claims read both).
// Where the key changed or went meanwhile, a holder this pass added is
// taken back out of the hash, unless the key went and the holder's device
// still holds the token (a re-registration claimed it again): so that a
// pass beside registrations,
// releases, erasures and another pass leaves no owner naming an erased
// customer or a device without the token, and takes none from a device
// that has it.
func (cs *Customers) foldTokenOwners(ctx context.Context, keys, holders []string) (int, error) {
	owners := make([]tokenOwner, len(keys))
	sums := make([][]byte, len(keys))
	var moving []int
	for i, k := range keys {
		sum, err := hex.DecodeString(strings.TrimPrefix(k, legacyTokenOwnerPrefix))
		if err != nil || len(sum) != 32 || holders[i] == "" {
			continue // not an owner key, or released since the scan
		}
		owners[i], sums[i] = tokenOwnerOfSum(sum), sum
		moving = append(moving, i)
	}
	added := make([]*redis.BoolCmd, len(keys))
	now := make([]*redis.StringCmd, len(keys))
	if err := cs.pipeline(ctx, func(p redis.Pipeliner) []redis.Cmder {
		var cmds []redis.Cmder
		for _, i := range moving {
			added[i] = p.HSetNX(ctx, owners[i].key, owners[i].field, holders[i])
			now[i] = p.HGet(ctx, owners[i].key, owners[i].field)
			cmds = append(cmds, added[i], now[i])
		}
		return cmds
	}); err != nil {
		return 0, err
	}
	var drops []*scripted
	var dropped, others []int
	for _, i := range moving {
		if now[i].Val() == holders[i] { // added, or there already
			drops = append(drops, newScripted(ctx, releaseTokenScript, []string{keys[i]}, holders[i]))
			dropped = append(dropped, i)
		} else {
			others = append(others, i)
		}
	}
	// Where the hash names another, the key stays while its holder's
	// device holds the token (claims drop both), and goes once it does
	// not (a registration cut before its last step left it).
	holding, err := cs.holdingToken(ctx, others, sums, holders)
	if err != nil {
		return 0, err
	}
	for _, i := range others {
		if !holding[i] {
			drops = append(drops, newScripted(ctx, releaseTokenScript, []string{keys[i]}, holders[i]))
		}
	}
	if err := cs.runScripts(ctx, drops); err != nil {
		return 0, err
	}
	moved := 0
	var gone []int              // added by this pass, its key changed or gone since the read
	for j, i := range dropped { // drops[len(dropped):] are others', not moved
		if n, _ := drops[j].cmd.Int(); n == 1 {
			moved++
		} else if added[i].Val() {
			gone = append(gone, i)
		}
	}
	return moved, cs.takeBack(ctx, keys, gone, owners, sums, holders)
}

// takeBack releases the owners this pass added whose key names another
// now (an older server claimed the token), or whose device no longer
// holds the token (its doc gone, or naming another).
func (cs *Customers) takeBack(ctx context.Context, keys []string, gone []int, owners []tokenOwner, sums [][]byte, holders []string) error {
	now := make(map[int]*redis.StringCmd, len(gone))
	if err := cs.pipeline(ctx, func(p redis.Pipeliner) []redis.Cmder {
		var cmds []redis.Cmder
		for _, i := range gone {
			now[i] = p.Get(ctx, keys[i])
			cmds = append(cmds, now[i])
		}
		return cmds
	}); err != nil {
		return err
	}
	holding, err := cs.holdingToken(ctx, gone, sums, holders)
	if err != nil {
		return err
	}
	var back []*scripted
	for _, i := range gone {
		if now[i].Val() == "" && holding[i] {
			continue // the device holds the token: a claim of it again
		}
		back = append(back, newScripted(ctx, releaseTokenScript, []string{owners[i].key}, holders[i], owners[i].field))
	}
	return cs.runScripts(ctx, back)
}

// holdingToken tells, for each of idxs, whether the device holders[i]
// names holds the token whose SHA-256 is sums[i], by its doc.
func (cs *Customers) holdingToken(ctx context.Context, idxs []int, sums [][]byte, holders []string) (map[int]bool, error) {
	docs := make(map[int]*redis.StringCmd, len(idxs))
	if err := cs.pipeline(ctx, func(p redis.Pipeliner) []redis.Cmder {
		var cmds []redis.Cmder
		for _, i := range idxs {
			if cust, dev, ok := strings.Cut(holders[i], "\n"); ok {
				docs[i] = p.HGet(ctx, customerKey(cust, partDevices), dev)
				cmds = append(cmds, docs[i])
			}
		}
		return cmds
	}); err != nil {
		return nil, err
	}
	out := make(map[int]bool, len(idxs))
	for i, doc := range docs {
		sum := sha256.Sum256([]byte(docToken(doc.Val())))
		out[i] = doc.Val() != "" && bytes.Equal(sum[:], sums[i])
	}
	return out, nil
}
