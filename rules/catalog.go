package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis keys of the catalog. They share the {catalog} hash tag so that in
// Redis Cluster one script can change a document and the version together.
const (
	keyStores       = "nc:{catalog}:stores"        // hash: store id → JSON
	keyRules        = "nc:{catalog}:rules"         // hash: rule id → JSON of the current version
	keyRuleVersions = "nc:{catalog}:rule_versions" // hash: rule id → latest version number
	keyRuleHistory  = "nc:{catalog}:history:"      // list per rule id: every saved version, oldest first
	keyVersion      = "nc:{catalog}:version"       // counter, bumped by every change

	// ChannelChanged carries the new catalog version after every change.
	ChannelChanged = "nc:catalog:changed"
)

// ErrConflict is returned when a rule changed between reading its version
// and writing the next one.
var ErrConflict = errors.New("conflict")

// Catalog is the Redis repository of stores and rules: the source of
// truth every replica builds its Snapshot from.
type Catalog struct {
	rdb redis.UniversalClient
	now func() time.Time
	// storeRefs checks the stores a rule names against the stores known;
	// Live sets it to its snapshot's check.
	storeRefs func(context.Context, *Rule) []Fault
	// knownAttrs answers the attribute names an audience may name
	// (CheckAttributes); nil: none are checked.
	knownAttrs KnownAttributes
}

// NewCatalog returns a catalog on rdb.
func NewCatalog(rdb redis.UniversalClient) *Catalog {
	return &Catalog{rdb: rdb, now: time.Now}
}

var putStoreScript = script("put_store")

var deleteScript = script("delete")

// PutStore validates and saves a store, answering whether it is new.
func (c *Catalog) PutStore(ctx context.Context, s *Store) (created bool, err error) {
	if err := s.Normalize(); err != nil {
		return false, err
	}
	s.UpdatedAt = c.now().UTC().Truncate(time.Millisecond)
	doc, err := json.Marshal(s)
	if err != nil {
		return false, err
	}
	res, err := putStoreScript.Run(ctx, c.rdb, []string{keyStores, keyVersion}, s.ID, doc, ChannelChanged).Int64Slice()
	if err != nil {
		return false, RedisErr("save store", err)
	}
	return res[0] == 1, nil
}

// bulkBatch is how many stores one Redis transaction writes.
const bulkBatch = 1000

// BatchTimeout bounds each batch of a bulk write (1,000 stores or
// profiles, one round trip of a few milliseconds on a healthy Redis), as
// the request's Redis budget bounds any other call: a Redis that hangs
// fails a bulk upload as promptly as a ping. A batch of large documents
// gets more: BatchTimeoutFor.
const BatchTimeout = 500 * time.Millisecond

// batchBytesPerSecond is the slowest rate at which a batch's documents
// are expected to reach Redis: a slow link, not a hung Redis.
const batchBytesPerSecond = 8 << 20

// BatchTimeoutFor bounds a batch that carries n bytes of documents:
// BatchTimeout, and the time they take to send at a slow link's rate.
func BatchTimeoutFor(n int) time.Duration {
	return BatchTimeout + time.Duration(n)*time.Second/batchBytesPerSecond
}

// PutStores saves stores already validated (Normalize) in batches, and
// announces one catalog change at the end. It answers how many it wrote;
// on an error, the batches before it are written.
func (c *Catalog) PutStores(ctx context.Context, stores []*Store) (int, error) {
	written, version := 0, int64(0)
	now := c.now().UTC().Truncate(time.Millisecond)
	for start := 0; start < len(stores); start += bulkBatch {
		batch := stores[start:min(start+bulkBatch, len(stores))]
		args := make([]any, 0, 2*len(batch))
		size := 0
		for _, s := range batch {
			s.UpdatedAt = now
			doc, err := json.Marshal(s)
			if err != nil {
				return written, err
			}
			args = append(args, s.ID, doc)
			size += len(doc)
		}
		// The version moves with each batch, so a replica's version check
		// sees every batch that landed even if the notice below is lost.
		var v *redis.IntCmd
		bctx, cancel := context.WithTimeout(ctx, BatchTimeoutFor(size))
		_, err := c.rdb.TxPipelined(bctx, func(p redis.Pipeliner) error {
			p.HSet(bctx, keyStores, args...)
			v = p.Incr(bctx, keyVersion)
			return nil
		})
		cancel()
		if err != nil {
			return written, RedisErr("save stores", err)
		}
		written += len(batch)
		version = v.Val()
	}
	if written > 0 {
		c.rdb.Publish(ctx, ChannelChanged, version)
	}
	return written, nil
}

// GetStore reads one store.
func (c *Catalog) GetStore(ctx context.Context, id string) (*Store, error) {
	return getDoc[Store](ctx, c.rdb, keyStores, id)
}

// getDoc reads one JSON document from a hash of documents.
func getDoc[T any](ctx context.Context, rdb redis.UniversalClient, key, id string) (*T, error) {
	doc, err := rdb.HGet(ctx, key, id).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, RedisErr("read "+id, err)
	}
	var v T
	if err := json.Unmarshal(doc, &v); err != nil {
		return nil, fmt.Errorf("decode %s: %w", id, err)
	}
	return &v, nil
}

// DeleteStore removes a store.
func (c *Catalog) DeleteStore(ctx context.Context, id string) error {
	return c.delete(ctx, keyStores, id)
}

func (c *Catalog) delete(ctx context.Context, key, id string) error {
	v, err := deleteScript.Run(ctx, c.rdb, []string{key, keyVersion}, id, ChannelChanged).Int64()
	if err != nil {
		return RedisErr("delete "+id, err)
	}
	if v == 0 {
		return ErrNotFound
	}
	return nil
}

// ListStores answers a page of stores and the cursor of the next page
// ("" after the last one).
func (c *Catalog) ListStores(ctx context.Context, cursor string, limit int) ([]*Store, string, error) {
	var out []*Store
	next, err := c.page(ctx, keyStores, cursor, limit, func(doc []byte) error {
		var s Store
		if err := json.Unmarshal(doc, &s); err != nil {
			return err
		}
		out = append(out, &s)
		return nil
	})
	return out, next, err
}

// page walks a hash with HSCAN. The cursor is Redis's own, so a page
// never repeats or skips an entry that stays in the hash.
func (c *Catalog) page(ctx context.Context, key, cursor string, limit int, each func([]byte) error) (string, error) {
	var cur uint64
	if cursor != "" {
		v, err := strconv.ParseUint(cursor, 10, 64)
		if err != nil {
			return "", Invalid("cursor", "cursor must be a value from an earlier page's next_cursor")
		}
		cur = v
	}
	kv, next, err := c.rdb.HScan(ctx, key, cur, "*", int64(limit)).Result()
	if err != nil {
		return "", RedisErr("list", err)
	}
	for i := 1; i < len(kv); i += 2 {
		if err := each([]byte(kv[i])); err != nil {
			return "", fmt.Errorf("decode %s: %w", kv[i-1], err)
		}
	}
	if next == 0 {
		return "", nil
	}
	return strconv.FormatUint(next, 10), nil
}

// putRuleScript writes the next version of a rule if the latest version
// is still the one the caller read (ARGV[2]).
var putRuleScript = script("put_rule")

// PutRule validates, compiles and saves a rule as its next version, which
// it sets on r. With dryRun it only validates.
func (c *Catalog) PutRule(ctx context.Context, r *Rule, dryRun bool) error {
	return c.PutRuleIf(ctx, r, dryRun, 0)
}

// PutRuleIf is PutRule that fails with ErrConflict unless the rule's
// latest version is ifVersion (0: any), so that of two marketers editing
// one rule, the second is told instead of overwriting the first.
func (c *Catalog) PutRuleIf(ctx context.Context, r *Rule, dryRun bool, ifVersion int64) error {
	var fs faults
	if _, err := Compile(r); err != nil {
		fs = append(fs, err.(*ValidationError).Faults...)
	}
	if c.storeRefs != nil {
		fs = append(fs, c.storeRefs(ctx, r)...)
	}
	attrs, err := c.AttributeFaults(ctx, r)
	if err != nil {
		return err
	}
	fs = append(fs, attrs...)
	if err := fs.err(); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		prev, err := c.rdb.HGet(ctx, keyRuleVersions, r.ID).Int64()
		if err != nil && !errors.Is(err, redis.Nil) {
			return RedisErr("read rule version", err)
		}
		if ifVersion > 0 && prev != ifVersion {
			return ErrConflict
		}
		r.Version = prev + 1
		r.UpdatedAt = c.now().UTC().Truncate(time.Millisecond)
		if dryRun {
			return nil
		}
		doc, err := json.Marshal(r)
		if err != nil {
			return err
		}
		v, err := putRuleScript.Run(ctx, c.rdb,
			[]string{keyRules, keyRuleVersions, keyRuleHistory + r.ID, keyVersion},
			r.ID, prev, doc, ChannelChanged).Int64()
		if err != nil {
			return RedisErr("save rule", err)
		}
		if v > 0 {
			return nil
		}
		if attempt >= 10 {
			return ErrConflict
		}
	}
}

// GetRule reads the current version of a rule.
func (c *Catalog) GetRule(ctx context.Context, id string) (*Rule, error) {
	return getDoc[Rule](ctx, c.rdb, keyRules, id)
}

// RuleVersions lists every saved version of a rule, oldest first.
func (c *Catalog) RuleVersions(ctx context.Context, id string) ([]*Rule, error) {
	docs, err := c.rdb.LRange(ctx, keyRuleHistory+id, 0, -1).Result()
	if err != nil {
		return nil, RedisErr("read rule history", err)
	}
	if len(docs) == 0 {
		return nil, ErrNotFound
	}
	out := make([]*Rule, 0, len(docs))
	for _, doc := range docs {
		var r Rule
		if err := json.Unmarshal([]byte(doc), &r); err != nil {
			return nil, fmt.Errorf("decode rule %s history: %w", id, err)
		}
		out = append(out, &r)
	}
	return out, nil
}

// RuleVersion reads one saved version of a rule.
func (c *Catalog) RuleVersion(ctx context.Context, id string, version int64) (*Rule, error) {
	if version < 1 {
		return nil, ErrNotFound
	}
	doc, err := c.rdb.LIndex(ctx, keyRuleHistory+id, version-1).Result()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, RedisErr("read rule version", err)
	}
	var r Rule
	if err := json.Unmarshal([]byte(doc), &r); err != nil {
		return nil, fmt.Errorf("decode rule %s version %d: %w", id, version, err)
	}
	return &r, nil
}

// RestoreRule saves an old version's document as the rule's next version.
func (c *Catalog) RestoreRule(ctx context.Context, id string, version int64) (*Rule, error) {
	r, err := c.RuleVersion(ctx, id, version)
	if err != nil {
		return nil, err
	}
	if err := c.PutRule(ctx, r, false); err != nil {
		return nil, err
	}
	return r, nil
}

// DeleteRule removes a rule from force. Its history stays, and a rule
// saved later under the same id continues its version numbers.
func (c *Catalog) DeleteRule(ctx context.Context, id string) error {
	return c.delete(ctx, keyRules, id)
}

// ListRules answers a page of rules and the cursor of the next page.
func (c *Catalog) ListRules(ctx context.Context, cursor string, limit int) ([]*Rule, string, error) {
	var out []*Rule
	next, err := c.page(ctx, keyRules, cursor, limit, func(doc []byte) error {
		var r Rule
		if err := json.Unmarshal(doc, &r); err != nil {
			return err
		}
		out = append(out, &r)
		return nil
	})
	return out, next, err
}

// Version is the catalog's change counter.
func (c *Catalog) Version(ctx context.Context) (int64, error) {
	v, err := c.rdb.Get(ctx, keyVersion).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return v, RedisErr("read catalog version", err)
}

// load reads the whole catalog in one transaction, so that the version
// matches the documents.
func (c *Catalog) load(ctx context.Context) (version int64, stores, rules map[string]string, err error) {
	var vCmd *redis.StringCmd
	var sCmd, rCmd *redis.MapStringStringCmd
	_, err = c.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		vCmd = p.Get(ctx, keyVersion)
		sCmd = p.HGetAll(ctx, keyStores)
		rCmd = p.HGetAll(ctx, keyRules)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, nil, nil, RedisErr("load catalog", err)
	}
	if s := vCmd.Val(); s != "" {
		version, _ = strconv.ParseInt(s, 10, 64)
	}
	return version, sCmd.Val(), rCmd.Val(), nil
}
