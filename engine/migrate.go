package engine

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// keyMigrated records the migrations of keys done in this Redis, one
// field each, so that a server's start does not look again.
const keyMigrated = "nc:{catalog}:migrated"

// migratedTokenOwners is keyMigrated's field for MigrateTokenOwners.
const migratedTokenOwners = "token_owners"

// MigrateTokenOwners moves the token owners earlier releases kept in
// keys of their own (legacyTokenOwnerKey) into the hashes the owners
// share now (tokenOwnerOf), on every master of a cluster, answering how
// many it moved. It looks once per Redis: a finished pass is recorded,
// and later calls answer 0 at once. Until it has run, registering and
// releasing a token read and release the old keys too, so nothing waits
// on it.
//
// Each owner moves in three steps, since the key and the hash live in
// different slots of a cluster: read the key, add its holder to the hash
// where the token has none, and delete the key while it still names that
// holder. Where that last step finds the key gone or changed (the token
// was released, by an erasure say, or claimed meanwhile), the holder
// added is taken back out of the hash, so that a pass beside
// registrations and erasures leaves no owner that names an erased
// customer or a device without the token. A pass cut short moves the
// rest the next time.
func (cs *Customers) MigrateTokenOwners(ctx context.Context) (int, error) {
	done, err := cs.rdb.HExists(ctx, keyMigrated, migratedTokenOwners).Result()
	if err != nil {
		return 0, err
	}
	if done {
		return 0, nil
	}
	var moved atomic.Int64
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.ScanType(ctx, 0, legacyTokenOwnerPrefix+"*", 1000, "string").Iterator()
		var keys []string
		for iter.Next(ctx) {
			if keys = append(keys, iter.Val()); len(keys) == 1000 {
				n, err := cs.moveTokenOwners(ctx, keys)
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
		n, err := cs.moveTokenOwners(ctx, keys)
		moved.Add(int64(n))
		return err
	}
	switch c := cs.rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, scan)
	case *redis.Client:
		err = scan(ctx, c)
	default:
		err = fmt.Errorf("migrate token owners: a Redis client of type %T", cs.rdb)
	}
	if err != nil {
		return int(moved.Load()), fmt.Errorf("migrate token owners: %w", err)
	}
	return int(moved.Load()), cs.rdb.HSet(ctx, keyMigrated, migratedTokenOwners, cs.now().UTC().Format("2006-01-02T15:04:05Z")).Err()
}

// moveTokenOwners moves the owners in the legacy keys given, as
// MigrateTokenOwners says, in four pipelines for them all.
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
// holder, or else takes the holder back out of the hash.
func (cs *Customers) foldTokenOwners(ctx context.Context, keys, holders []string) (int, error) {
	owners := make([]tokenOwner, len(keys))
	var moving []int
	for i, k := range keys {
		sum, err := hex.DecodeString(strings.TrimPrefix(k, legacyTokenOwnerPrefix))
		if err != nil || len(sum) != 32 || holders[i] == "" {
			continue // not an owner key, or released since the scan
		}
		owners[i] = tokenOwnerOfSum(sum)
		moving = append(moving, i)
	}
	if err := cs.pipeline(ctx, func(p redis.Pipeliner) []redis.Cmder {
		cmds := make([]redis.Cmder, len(moving))
		for j, i := range moving {
			cmds[j] = p.HSetNX(ctx, owners[i].key, owners[i].field, holders[i])
		}
		return cmds
	}); err != nil {
		return 0, err
	}
	drops := make([]*scripted, len(moving))
	for j, i := range moving {
		drops[j] = newScripted(ctx, releaseTokenScript, []string{keys[i]}, holders[i])
	}
	if err := cs.runScripts(ctx, drops); err != nil {
		return 0, err
	}
	var back []*scripted
	for j, i := range moving {
		if n, _ := drops[j].cmd.Int(); n == 0 {
			back = append(back, newScripted(ctx, releaseTokenScript, []string{owners[i].key}, holders[i], owners[i].field))
		}
	}
	return len(moving) - len(back), cs.runScripts(ctx, back)
}
