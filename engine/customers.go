package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/rules"
)

// tokenHolder is the value of a token's owner key: a customer and one of
// their device ids (ids hold no newline: rules.ValidID).
func tokenHolder(customerID, deviceID string) string { return customerID + "\n" + deviceID }

// Customers is the Redis repository of profiles and devices.
type Customers struct {
	rdb    redis.UniversalClient
	now    func() time.Time
	attrs  *Attributes
	events *Events
	// ownersMoved: MigrateTokenOwners was recorded done (see migrating).
	ownersMoved atomic.Bool
}

// migrating tells whether token owners of an earlier release may still
// be moving (MigrateTokenOwners not recorded done in this Redis): only
// then can a pass write an owner back behind a release, and only then is
// a release repeated once the device let go of its token (a repeat could
// otherwise take the owner of a registration of the same device that
// came in between). Once done, it is remembered.
func (cs *Customers) migrating(ctx context.Context) bool {
	if cs.ownersMoved.Load() {
		return false
	}
	done, err := cs.rdb.HExists(ctx, keyMigrated, migratedTokenOwners).Result()
	if err == nil && done {
		cs.ownersMoved.Store(true)
		return false
	}
	return true
}

// WithEvents has an erasure reach the events out: customer.erased to
// every subscription, and the customer's events not delivered yet gone.
func (cs *Customers) WithEvents(ev *Events) *Customers {
	cs.events = ev
	return cs
}

// NewCustomers returns the repository on rdb.
func NewCustomers(rdb redis.UniversalClient) *Customers {
	return &Customers{rdb: rdb, now: time.Now, attrs: NewAttributes(rdb)}
}

// Attributes is the catalog of the attributes the profiles carry, which
// the repository keeps as it writes and erases them.
func (cs *Customers) Attributes() *Attributes { return cs.attrs }

// luaBool is a boolean as the Lua scripts read it: "1" or "0".
func luaBool(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// putProfileScript writes a profile and answers what the one it replaced
// was counted with in the catalog of attributes (countedAttrs).
// KEYS: profile, presence. ARGV: doc, loc, push, feedback ("1" or "0";
// withdrawn location consent: what was known of where they were goes
// with the presence).
// Returns {created (0/1), lib/counted.lua's answer for the one replaced}.
var putProfileScript = script("put_profile", "counted")

// Put validates and saves a profile, answering whether it is new, and
// counts the attributes it gains and loses in the catalog of attributes.
func (cs *Customers) Put(ctx context.Context, c *rules.Customer) (created bool, err error) {
	if err := c.Normalize(); err != nil {
		return false, err
	}
	c.UpdatedAt = cs.now().UTC().Truncate(time.Millisecond)
	doc, err := json.Marshal(c)
	if err != nil {
		return false, err
	}
	attrs := attrLines(c)
	out, err := putProfileScript.Run(ctx, cs.rdb, customerKeys(c.ID, partProfile, partPresence),
		doc, luaBool(c.Consent.Location), luaBool(c.Consent.Push), luaBool(c.Consent.Feedback)).Slice()
	if err != nil {
		return false, rules.RedisErr("save customer", err)
	}
	created, old, err := putProfileReply(out)
	if err != nil {
		return false, err
	}
	d := newAttrDelta()
	d.add(old, attrs)
	return created, cs.attrs.learn(ctx, d)
}

// putProfileReply reads putProfileScript's answer: whether the profile
// is new, and the attributes the one it replaced was counted with.
func putProfileReply(out []any) (created bool, old string, err error) {
	if len(out) != 2 {
		return false, "", fmt.Errorf("save customer: unexpected answer %v", out)
	}
	old, _ = out[1].(string)
	return out[0] == int64(1), countedAttrs(old), nil
}

// countedAttrs reads lib/counted.lua's answer: the attributes a profile
// was counted with. A profile's attributes are worked out from its
// document when it is replaced or erased rather than kept beside it (as
// profiles written before kept them, "a:"): the same lines (attrLines
// reads JSON's types), some 60 bytes a customer less.
func countedAttrs(v string) string {
	switch {
	case strings.HasPrefix(v, "a:"):
		return v[2:]
	case strings.HasPrefix(v, "d:"):
		return attrLinesOf(v[2:])
	}
	return ""
}

// attrLinesOf is attrLines of a stored profile document.
func attrLinesOf(doc string) string {
	var c rules.Customer
	if err := json.Unmarshal([]byte(doc), &c); err != nil {
		return "" // not a document this code wrote: counted with none
	}
	return attrLines(&c)
}

// PutMany saves profiles already checked (Normalize), in pipelined
// batches, answering how many it wrote; on an error, the batches before it
// are written. Each batch counts what its profiles gain and lose in the
// catalog of attributes, in one more round trip (and one that loads the
// script, so that Redis does not answer each profile NOSCRIPT).
func (cs *Customers) PutMany(ctx context.Context, customers []*rules.Customer) (int, error) {
	const batch = 1000
	now := cs.now().UTC().Truncate(time.Millisecond)
	written := 0
	for start := 0; start < len(customers); start += batch {
		part := customers[start:min(start+batch, len(customers))]
		docs := make([][]byte, len(part))
		size := 0
		for i, c := range part {
			c.UpdatedAt = now
			doc, err := json.Marshal(c)
			if err != nil {
				return written, err
			}
			docs[i], size = doc, size+len(doc)
		}
		bctx, cancel := context.WithTimeout(ctx, rules.BatchTimeoutFor(size))
		err := cs.putBatch(bctx, part, docs)
		cancel()
		if err != nil {
			return written, rules.RedisErr("save customers", err)
		}
		written += len(part)
	}
	return written, nil
}

// putBatch runs a batch of putProfileScript in one pipeline, then counts
// what they changed in the catalog of attributes.
func (cs *Customers) putBatch(ctx context.Context, part []*rules.Customer, docs [][]byte) error {
	if err := putProfileScript.Load(ctx, cs.rdb).Err(); err != nil {
		return err
	}
	puts := make([]*scripted, len(part))
	attrs := make([]string, len(part))
	for i, c := range part {
		attrs[i] = attrLines(c)
		puts[i] = newScripted(ctx, putProfileScript, customerKeys(c.ID, partProfile, partPresence),
			docs[i], luaBool(c.Consent.Location), luaBool(c.Consent.Push), luaBool(c.Consent.Feedback))
	}
	if err := cs.runScripts(ctx, puts); err != nil {
		return err
	}
	d := newAttrDelta()
	for i, x := range puts {
		out, err := x.cmd.Slice()
		if err != nil {
			return err
		}
		_, old, err := putProfileReply(out)
		if err != nil {
			return err
		}
		d.add(old, attrs[i])
	}
	return cs.attrs.learn(ctx, d)
}

// Get reads a profile.
func (cs *Customers) Get(ctx context.Context, id string) (*rules.Customer, error) {
	doc, err := cs.rdb.HGet(ctx, customerKey(id, partProfile), "doc").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, rules.ErrNotFound
	}
	if err != nil {
		return nil, rules.RedisErr("read customer", err)
	}
	return decodeCustomer(doc, -1)
}

// decodeCustomer reads a profile, with the customer's last NPS answer
// (-1: none), which the profile does not hold.
func decodeCustomer(doc []byte, lastNPS int) (*rules.Customer, error) {
	c := rules.Customer{LastNPS: lastNPS}
	if err := json.Unmarshal(doc, &c); err != nil {
		return nil, fmt.Errorf("decode customer: %w", err)
	}
	return &c, nil
}

// eraseScript removes everything kept about a customer: their own keys,
// the coupons issued to them that were not redeemed, and the records of
// those redeemed, whose anonymous part it answers for the archive.
// KEYS: the customer's keys (coupons set sixth, rate counters eighth), their
// tokens key ninth, which is raised rather than deleted, their fraud
// record tenth, their journal of events out eleventh. ARGV: the prefix of
// their coupon records, ms to keep the raised token generation.
// Returns {existed, what the profile was counted with (lib/counted.lua),
// device docs…, "", (code, rule_id, store_id,
// issued_at, expires_at, redeemed_at, redeemed_store, only_store, ms to
// live)…, "", codes not redeemed…}.
var eraseScript = script("erase", "counted")

// Delete erases the customer: profile, devices, presence, counters,
// unredeemed coupons, their fraud record and place in the fraud index,
// and the pushes still queued for them. A redeemed
// coupon stays for the rule's statistics, without what named them.
func (cs *Customers) Delete(ctx context.Context, id string) error {
	existed, attrs, err := cs.eraseKeys(ctx, id)
	if err != nil {
		return err
	}
	if err := cs.settleInFlight(ctx, id); err != nil {
		return err
	}
	pushes, err := cs.dropPushes(ctx, id)
	if err != nil {
		return err
	}
	// Their journal went with their keys; what the streams and dead
	// letters hold of them goes now, and every subscription is told.
	if existed || pushes > 0 {
		if err := cs.events.Erase(ctx, id); err != nil {
			return err
		}
	}
	// Last, since the erasure comes first: the catalog of attributes no
	// longer counts the profile's.
	lost := newAttrDelta()
	lost.add(attrs, "")
	if err := cs.attrs.learn(ctx, lost); err != nil {
		return err
	}
	if !existed && pushes == 0 {
		return rules.ErrNotFound
	}
	return nil
}

// eraseKeys removes the customer's keys in their slot and what names them
// elsewhere: their tokens' owner keys, and their codes' index (marked
// erased); a redeemed coupon goes to the archive without them. It answers
// whether the customer had a profile, and the attributes the catalog of
// attributes counted it with.
func (cs *Customers) eraseKeys(ctx context.Context, id string) (existed bool, attrs string, err error) {
	keys := []string{
		customerKey(id, partProfile), customerKey(id, partDevices), customerKey(id, partDeviceSeen),
		customerKey(id, partPresence), customerKey(id, partCaps), customerKey(id, partCoupons),
		customerKey(id, partVisits), customerKey(id, partRate), customerKey(id, partTokens),
		customerKey(id, partFraud), customerKey(id, partEvents),
	}
	// Their tokens' owner keys (in other slots of a cluster) go first: an
	// erasure cut short after its script could not find them again.
	docs, err := cs.rdb.HVals(ctx, customerKey(id, partDevices)).Result()
	if err != nil {
		return false, "", rules.RedisErr("erase customer: read devices", err)
	}
	if err := cs.releaseTokens(ctx, id, docs); err != nil {
		return false, "", rules.RedisErr("erase customer", err)
	}
	out, err := eraseScript.Run(ctx, cs.rdb, keys, couponRecordKey(id, ""), MaxTokenTTL.Milliseconds()).StringSlice()
	if err != nil {
		return false, "", rules.RedisErr("erase customer", err)
	}
	i := 2 + slices.Index(out[2:], "") // where the device docs end
	// And again for the devices the script found: one registered
	// meanwhile has claimed its token since.
	if err := cs.releaseTokens(ctx, id, out[2:i]); err != nil {
		return false, "", rules.RedisErr("erase customer", err)
	}
	_, err = cs.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i++; out[i] != ""; i += 9 {
			code, f := out[i], out[i+1:i+9]
			p.HSet(ctx, archivedCouponKey(code), "rule_id", f[0], "store_id", f[1], "issued_at", f[2], "expires_at", f[3],
				"redeemed_at", f[4], "redeemed_store", f[5], "only_store", f[6])
			if ms, _ := strconv.ParseInt(f[7], 10, 64); ms > 0 {
				p.PExpire(ctx, archivedCouponKey(code), time.Duration(ms)*time.Millisecond)
			}
			p.Set(ctx, codeIndexKey(code), "", erasedCodeTTL) // marked erased: see settleInFlight
		}
		for i++; i < len(out); i++ {
			p.Set(ctx, codeIndexKey(out[i]), "", erasedCodeTTL)
		}
		p.ZRem(ctx, keyFraudIndex, id) // their fraud record went with their keys
		return nil
	})
	if err != nil {
		return false, "", rules.RedisErr("erase customer", err)
	}
	return out[0] == "1", countedAttrs(out[1]), nil
}

// dropPushes removes the pushes queued and delayed for a customer,
// answering how many there were.
func (cs *Customers) dropPushes(ctx context.Context, id string) (int, error) {
	queued, err := cs.queued(ctx, id)
	if err != nil {
		return 0, err
	}
	delayed, err := cs.delayed(ctx, id)
	if err != nil {
		return 0, err
	}
	if len(delayed) > 0 {
		members := make([]any, len(delayed))
		for i, d := range delayed {
			members[i] = d.raw
		}
		if err := cs.rdb.ZRem(ctx, keyDelayed, members...).Err(); err != nil {
			return 0, rules.RedisErr("drop delayed pushes", err)
		}
	}
	if len(queued) > 0 {
		ids := make([]string, len(queued))
		for i, m := range queued {
			ids[i] = m.ID
		}
		// Acknowledged first, so no worker holds them; there is no group
		// yet when no dispatcher has run, which is fine.
		if err := cs.rdb.XAck(ctx, keyOutbox, outboxGroup, ids...).Err(); err != nil && !strings.Contains(err.Error(), "NOGROUP") {
			return 0, rules.RedisErr("drop queued pushes", err)
		}
		if err := cs.rdb.XDel(ctx, keyOutbox, ids...).Err(); err != nil {
			return 0, rules.RedisErr("drop queued pushes", err)
		}
	}
	return len(queued) + len(delayed), nil
}

// queued lists the outbox entries for a customer. The outbox holds only
// pushes not yet sent, so it stays short.
func (cs *Customers) queued(ctx context.Context, id string) ([]redis.XMessage, error) {
	msgs, err := cs.rdb.XRange(ctx, keyOutbox, "-", "+").Result()
	if err != nil {
		return nil, rules.RedisErr("read outbox", err)
	}
	var out []redis.XMessage
	for _, m := range msgs {
		raw, _ := m.Values["push"].(string)
		var p Push
		if json.Unmarshal([]byte(raw), &p) == nil && p.CustomerID == id {
			out = append(out, m)
		}
	}
	return out, nil
}

type delayedPush struct {
	raw  string
	push Push
}

// delayed lists the pushes for a customer waiting for another try.
func (cs *Customers) delayed(ctx context.Context, id string) ([]delayedPush, error) {
	all, err := cs.rdb.ZRange(ctx, keyDelayed, 0, -1).Result()
	if err != nil {
		return nil, rules.RedisErr("read delayed pushes", err)
	}
	var out []delayedPush
	for _, raw := range all {
		var p Push
		if json.Unmarshal([]byte(raw), &p) == nil && p.CustomerID == id {
			out = append(out, delayedPush{raw: raw, push: p})
		}
	}
	return out, nil
}

// Export is everything the engine holds about one customer.
type Export struct {
	Profile      *rules.Customer              `json:"profile"`
	Devices      []*rules.Device              `json:"devices"`
	DeviceSeen   map[string]string            `json:"device_seen"`
	Presence     map[string]string            `json:"presence"`
	Counters     map[string]string            `json:"counters"`
	Visits       map[string]string            `json:"visits"`
	Coupons      map[string]map[string]string `json:"coupons"`
	QueuedPushes []Push                       `json:"queued_pushes"`
	// LocationRisk is their fraud record: suspicious fixes counted per
	// day, their signals and devices, coupons issued and redeemed under
	// suspicion (keys.go, partFraud).
	LocationRisk map[string]string `json:"location_risk"`
}

// Export gathers everything kept about a customer, for their right of
// access.
func (cs *Customers) Export(ctx context.Context, id string) (*Export, error) {
	prof, err := cs.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	devices, err := cs.Devices(ctx, id)
	if err != nil {
		return nil, err
	}
	var all, seen, presence, caps, visits, fraud *redis.MapStringStringCmd
	var codes *redis.StringSliceCmd
	if _, err := cs.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		all = p.HGetAll(ctx, customerKey(id, partDevices)) // for the stamps
		seen = p.HGetAll(ctx, customerKey(id, partDeviceSeen))
		presence = p.HGetAll(ctx, customerKey(id, partPresence))
		caps = p.HGetAll(ctx, customerKey(id, partCaps))
		visits = p.HGetAll(ctx, customerKey(id, partVisits))
		fraud = p.HGetAll(ctx, customerKey(id, partFraud))
		codes = p.SMembers(ctx, customerKey(id, partCoupons))
		return nil
	}); err != nil {
		return nil, rules.RedisErr("export", err)
	}
	ex := &Export{Profile: prof, Devices: devices, DeviceSeen: devicesSeen(all.Val(), seen.Val()), Presence: presence.Val(), Counters: caps.Val(), Visits: visits.Val(),
		Coupons: map[string]map[string]string{}, QueuedPushes: []Push{}, LocationRisk: fraud.Val()}
	// The coupons' records in one round trip (a customer may have
	// hundreds: one each would not fit a request's Redis budget).
	list := codes.Val()
	recs := make([]*redis.MapStringStringCmd, len(list))
	if err := cs.pipeline(ctx, func(p redis.Pipeliner) []redis.Cmder {
		for i, code := range list {
			recs[i] = p.HGetAll(ctx, couponRecordKey(id, code))
		}
		return cmders(recs)
	}); err != nil {
		return nil, rules.RedisErr("export coupons", err)
	}
	for i, rec := range recs {
		if c := rec.Val(); len(c) > 0 {
			ex.Coupons[list[i]] = c
		}
	}
	queued, err := cs.queued(ctx, id)
	if err != nil {
		return nil, err
	}
	for _, m := range queued {
		var p Push
		json.Unmarshal([]byte(m.Values["push"].(string)), &p)
		// The stream holds a reference; the coupon's record, the push.
		if rec, ok := ex.Coupons[p.ID]; ok && rec["push"] != "" {
			json.Unmarshal([]byte(rec["push"]), &p)
		}
		ex.QueuedPushes = append(ex.QueuedPushes, p)
	}
	delayed, err := cs.delayed(ctx, id)
	if err != nil {
		return nil, err
	}
	for _, d := range delayed {
		ex.QueuedPushes = append(ex.QueuedPushes, d.push)
	}
	return ex, nil
}

// PutDevice registers or replaces a device of a customer, answering
// whether it is new to them. For a customer without a profile (never
// created, or erased) nothing is stored, and the answer is the one a
// customer with a profile would get: a caller cannot tell which customer
// ids exist.
func (cs *Customers) PutDevice(ctx context.Context, customerID string, d *rules.Device) (created bool, err error) {
	if err := d.Normalize(); err != nil {
		return false, err
	}
	d.UpdatedAt = cs.now().UTC().Truncate(time.Millisecond)
	n, err := cs.register(ctx, []string{customerID}, []*rules.Device{d})
	if err != nil {
		return false, rules.RedisErr("save device", err)
	}
	return n == 1, nil
}

// PutDevices registers devices already checked (Normalize), each with the
// customer at the same position, in pipelined batches, as PutDevice does,
// answering how many it took (a device of a customer without a profile
// counts, and is not stored); on an error, the batches before it are
// written.
func (cs *Customers) PutDevices(ctx context.Context, customerIDs []string, devices []*rules.Device) (int, error) {
	if len(customerIDs) != len(devices) {
		return 0, fmt.Errorf("put devices: %d customers for %d devices", len(customerIDs), len(devices))
	}
	const batch = 1000
	now := cs.now().UTC().Truncate(time.Millisecond)
	written := 0
	for start := 0; start < len(devices); start += batch {
		end := min(start+batch, len(devices))
		for _, d := range devices[start:end] {
			d.UpdatedAt = now
		}
		if _, err := cs.register(ctx, customerIDs[start:end], devices[start:end]); err != nil {
			return written, rules.RedisErr("save devices", err)
		}
		written += end - start
	}
	return written, nil
}

// putDeviceScript stores a device, only for a customer with a profile.
// KEYS: profile, devices, presence. ARGV: device id, doc.
// Returns {stored (0/1), new to the customer (0/1), the doc it replaced
// or ""}. The presence's last call forgets its device, so that the
// next ping reads the device's platform anew.
var putDeviceScript = script("put_device", "presence")

// dropDeviceScript removes a device from its customer while it still
// holds a token (the app may have registered a new one meanwhile).
// KEYS: devices (the device and its stamp), device_seen (its stamp as
// earlier releases kept it), presence. ARGV: device id, token.
var dropDeviceScript = script("drop_device", "presence")

// releaseTokenScript deletes a token's owner while it names the device
// given. KEYS: the owner hash, or a legacy owner key. ARGV: the holder;
// the token's field in the hash (none for a legacy key). Answers 1 when
// it deleted the owner, else 0.
var releaseTokenScript = script("release_token")

// claimTokenScript makes a device its token's owner. KEYS: the owner
// hash. ARGV: the token's field, the holder. Answers the holder before,
// or nil.
var claimTokenScript = script("claim_token")

// releaseToken is the release of a token's owner where it names the
// holder: in the owners' hash, and in the key of its own an earlier
// release kept (legacyTokenOwnerKey).
func releaseToken(ctx context.Context, token, holder string) []*scripted {
	o := tokenOwnerOf(token)
	return []*scripted{
		newScripted(ctx, releaseTokenScript, []string{o.key}, holder, o.field),
		newScripted(ctx, releaseTokenScript, []string{legacyTokenOwnerKey(token)}, holder),
	}
}

// register stores each device with the customer at its position and
// claims its FCM token for it, answering how many devices are new to
// their customer. One token, one device of one customer: a device id
// alone moves nothing (another customer's "d-1" is another device); a
// token does, since only the phone that holds it can show it, and the
// device that held it before loses it: a re-login, the phone changed
// hands, or the app registered under a new device id. That customer's
// pushes no longer reach the phone.
//
// A token's owner key lives apart from the customers' keys (another slot
// in Redis Cluster), so this is five steps, each one pipeline for the
// whole batch:
//  1. read the devices as they are;
//  2. a device whose token changes releases the old token's owner key;
//  3. store the device, if its customer has a profile (one script on the
//     customer's keys: no profile, nothing stored, no owner key claimed);
//  4. the token's owner key names the device, answering who it named;
//  5. that device, if it still holds the token, leaves its customer (and
//     so does the one an earlier release's key of its own names, which
//     is released last: a cut just before leaves that key naming a device
//     without the token, until the token is registered again or the pass
//     of MigrateTokenOwners finds it).
//
// An owner key is released before its device lets go of the token and
// claimed after the device holds it, so that, wherever a failure cuts
// this short, an owner key names only a device that holds its token, and
// erasing a customer finds every key that names them. What a cut leaves:
// after 2, the device keeps its old token with no owner key (a re-login
// with it would not take the device) until the request is retried; after
// 3, the token is with both devices and its owner key names the old one,
// until the token is registered again, which redoes 4 and 5; after 4,
// the token is with both devices and its owner key names the new one:
// the old device keeps the token, and its customer's pushes reach the
// phone, until it is deleted, registers another token, is found
// unregistered by FCM, or its customer is erased.
func (cs *Customers) register(ctx context.Context, customerIDs []string, devices []*rules.Device) (int, error) {
	docs := make([]string, len(devices))
	for i, d := range devices {
		doc, err := json.Marshal(d)
		if err != nil {
			return 0, err
		}
		docs[i] = string(doc)
	}
	before, err := cs.deviceDocs(ctx, customerIDs, devices) // 1.
	if err != nil {
		return 0, err
	}
	released, err := cs.releaseOldTokens(ctx, customerIDs, devices, before) // 2.
	if err != nil {
		return 0, err
	}
	created, stored, late, err := cs.storeDevices(ctx, customerIDs, devices, docs, released) // 3.
	if err != nil {
		return 0, err
	}
	// Step 2's releases again, now that the devices let go of those
	// tokens, while a migration pass may have written an owner back.
	again := slices.ContainsFunc(released, func(tok string) bool { return tok != "" }) && cs.migrating(ctx)
	for i, tok := range released {
		if again && tok != "" && stored[i] {
			late = append(late, releaseToken(ctx, tok, tokenHolder(customerIDs[i], devices[i].ID))...)
		}
	}
	holders, legacy, err := cs.claimTokens(ctx, customerIDs, devices, stored) // 4.
	if err != nil {
		return 0, err
	}
	// A token a device took since step 1 (another registration of it,
	// meanwhile) goes as step 2's did, now that the device holds this one.
	if err := cs.runScripts(ctx, late); err != nil {
		return 0, err
	}
	if err := cs.dropPreviousHolders(ctx, customerIDs, devices, stored, holders); err != nil { // 5.
		return 0, err
	}
	// The owner an earlier release kept in a key of its own goes last,
	// while it names the holder read, once that holder has lost the token.
	var old []*scripted
	for i, d := range devices {
		if stored[i] && legacy[i] != "" {
			old = append(old, newScripted(ctx, releaseTokenScript, []string{legacyTokenOwnerKey(d.FCMToken)}, legacy[i]))
		}
	}
	if err := cs.runScripts(ctx, old); err != nil {
		return 0, err
	}
	return created, nil
}

// deviceDocs reads each device's doc as it is (step 1 of register).
func (cs *Customers) deviceDocs(ctx context.Context, customerIDs []string, devices []*rules.Device) ([]string, error) {
	cmds := make([]*redis.StringCmd, len(devices))
	if err := cs.pipeline(ctx, func(p redis.Pipeliner) []redis.Cmder {
		for i, d := range devices {
			cmds[i] = p.HGet(ctx, customerKey(customerIDs[i], partDevices), d.ID)
		}
		return cmders(cmds)
	}); err != nil {
		return nil, err
	}
	out := make([]string, len(cmds))
	for i, c := range cmds {
		out[i] = c.Val()
	}
	return out, nil
}

// releaseOldTokens releases the owner key of the token each device held
// before, when it changes (step 2 of register); it answers the token
// released per device.
func (cs *Customers) releaseOldTokens(ctx context.Context, customerIDs []string, devices []*rules.Device, before []string) ([]string, error) {
	released := make([]string, len(devices))
	var release []*scripted
	for i, d := range devices {
		if old := docToken(before[i]); old != "" && old != d.FCMToken {
			released[i] = old
			release = append(release, releaseToken(ctx, old, tokenHolder(customerIDs[i], d.ID))...)
		}
	}
	return released, cs.runScripts(ctx, release)
}

// storeDevices writes each device into its customer's devices, when the
// customer has a profile (step 3 of register). It answers how many were
// new, which were stored, and the release of tokens the devices took
// since step 1.
func (cs *Customers) storeDevices(ctx context.Context, customerIDs []string, devices []*rules.Device, docs, released []string) (created int, stored []bool, late []*scripted, err error) {
	puts := make([]*scripted, len(devices))
	for i, d := range devices {
		puts[i] = newScripted(ctx, putDeviceScript,
			customerKeys(customerIDs[i], partProfile, partDevices, partPresence), d.ID, docs[i])
	}
	if err := cs.runScripts(ctx, puts); err != nil {
		return 0, nil, nil, err
	}
	stored = make([]bool, len(devices))
	for i, d := range devices {
		out, err := puts[i].cmd.Slice()
		if err != nil || len(out) != 3 {
			return 0, nil, nil, fmt.Errorf("store device: unexpected answer %v", out)
		}
		stored[i] = out[0] == int64(1)
		if out[1] == int64(1) {
			created++
		}
		if old, _ := out[2].(string); stored[i] {
			if tok := docToken(old); tok != "" && tok != d.FCMToken && tok != released[i] {
				late = append(late, releaseToken(ctx, tok, tokenHolder(customerIDs[i], d.ID))...)
			}
		}
	}
	return created, stored, late, nil
}

// claimTokens makes each stored device its token's owner, answering the
// owners before (step 4 of register): the hash's and, apart, the one an
// earlier release kept in a key of its own (register releases that key
// after step 5). A customer without a profile reads the owner instead,
// so that the answer takes as many round trips.
func (cs *Customers) claimTokens(ctx context.Context, customerIDs []string, devices []*rules.Device, stored []bool) (holders [][]string, legacy []string, err error) {
	claims := make([]*scripted, len(devices))
	reads := make([]*redis.StringCmd, len(devices))
	olds := make([]*redis.StringCmd, len(devices))
	if err := cs.pipeline(ctx, func(p redis.Pipeliner) []redis.Cmder {
		var cmds []redis.Cmder
		for i, d := range devices {
			o := tokenOwnerOf(d.FCMToken)
			if stored[i] {
				claims[i] = newScripted(ctx, claimTokenScript, []string{o.key}, o.field, tokenHolder(customerIDs[i], d.ID))
				_ = p.Process(ctx, claims[i].cmd) // its answer is read below, through result
			} else {
				reads[i] = p.HGet(ctx, o.key, o.field)
				cmds = append(cmds, reads[i])
			}
			olds[i] = p.Get(ctx, legacyTokenOwnerKey(d.FCMToken))
			cmds = append(cmds, olds[i])
		}
		return cmds
	}); err != nil {
		return nil, nil, err
	}
	holders, legacy = make([][]string, len(devices)), make([]string, len(devices))
	for i := range devices {
		var v string
		if claims[i] != nil {
			v, err = claims[i].result(ctx, cs.rdb).Text()
			if err != nil && !errors.Is(err, redis.Nil) {
				return nil, nil, rules.RedisErr("claim token", err)
			}
		} else {
			v = reads[i].Val()
		}
		legacy[i] = olds[i].Val()
		for _, h := range []string{v, legacy[i]} {
			if h != "" && !slices.Contains(holders[i], h) {
				holders[i] = append(holders[i], h)
			}
		}
	}
	return holders, legacy, nil
}

// dropPreviousHolders takes each token from the device that held it
// before, if that device still holds it (step 5 of register).
func (cs *Customers) dropPreviousHolders(ctx context.Context, customerIDs []string, devices []*rules.Device, stored []bool, holders [][]string) error {
	var drops []*scripted
	for i, d := range devices {
		for _, prev := range holders[i] {
			if !stored[i] || prev == tokenHolder(customerIDs[i], d.ID) {
				continue
			}
			cust, dev, ok := strings.Cut(prev, "\n")
			if !ok {
				continue
			}
			drops = append(drops, newScripted(ctx, dropDeviceScript,
				customerKeys(cust, partDevices, partDeviceSeen, partPresence), dev, d.FCMToken))
		}
	}
	return cs.runScripts(ctx, drops)
}

// docToken is the FCM token in a device's doc, or "".
func docToken(doc string) string {
	if doc == "" {
		return ""
	}
	var d rules.Device
	if json.Unmarshal([]byte(doc), &d) != nil {
		return ""
	}
	return d.FCMToken
}

// releaseTokens releases the owner keys of the tokens in a customer's
// device docs, where they still name the device.
func (cs *Customers) releaseTokens(ctx context.Context, customerID string, docs []string) error {
	xs := make([]*scripted, 0, len(docs))
	for _, doc := range docs {
		var d rules.Device
		if json.Unmarshal([]byte(doc), &d) != nil || d.FCMToken == "" {
			continue
		}
		xs = append(xs, releaseToken(ctx, d.FCMToken, tokenHolder(customerID, d.ID))...)
	}
	if err := cs.runScripts(ctx, xs); err != nil {
		return rules.RedisErr("release tokens", err)
	}
	return nil
}

// pipeline sends the commands add queues in one pipeline and answers the
// first that failed.
func (cs *Customers) pipeline(ctx context.Context, add func(redis.Pipeliner) []redis.Cmder) error {
	var cmds []redis.Cmder
	_, _ = cs.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		cmds = add(p)
		return nil
	})
	return firstFailure(cmds)
}

func cmders[C redis.Cmder](cmds []C) []redis.Cmder {
	out := make([]redis.Cmder, len(cmds))
	for i, c := range cmds {
		out[i] = c
	}
	return out
}

// runScripts runs scripts in one pipeline (each runs whole where Redis
// did not have it yet) and answers the first that failed.
func (cs *Customers) runScripts(ctx context.Context, xs []*scripted) error {
	if len(xs) == 0 {
		return nil
	}
	_, _ = cs.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, x := range xs {
			_ = p.Process(ctx, x.cmd)
		}
		return nil
	})
	cmds := make([]redis.Cmder, len(xs))
	for i, x := range xs {
		cmds[i] = x.result(ctx, cs.rdb)
	}
	return firstFailure(cmds)
}

// deleteDeviceScript removes a device, answering its doc.
// KEYS: devices (the device and its stamp), device_seen (its stamp as
// earlier releases kept it), presence (which forgets its last device).
// ARGV: device id.
var deleteDeviceScript = script("delete_device", "presence")

// DeleteDevice removes a device of a customer and releases its token.
func (cs *Customers) DeleteDevice(ctx context.Context, customerID, deviceID string) error {
	doc, err := cs.rdb.HGet(ctx, customerKey(customerID, partDevices), deviceID).Result()
	if errors.Is(err, redis.Nil) {
		return rules.ErrNotFound
	}
	if err != nil {
		return rules.RedisErr("delete device", err)
	}
	// The owner key first, as in register.
	if err := cs.releaseTokens(ctx, customerID, []string{doc}); err != nil {
		return rules.RedisErr("delete device", err)
	}
	gone, err := deleteDeviceScript.Run(ctx, cs.rdb,
		customerKeys(customerID, partDevices, partDeviceSeen, partPresence), deviceID).Text()
	if errors.Is(err, redis.Nil) {
		return nil // deleted meanwhile
	}
	if err != nil {
		return rules.RedisErr("delete device", err)
	}
	// And again once the device is gone, when its token changed since it
	// was read, or while a migration pass may have written the owner back.
	if docToken(gone) != docToken(doc) || cs.migrating(ctx) {
		if err := cs.releaseTokens(ctx, customerID, []string{gone}); err != nil {
			return rules.RedisErr("delete device", err)
		}
	}
	return nil
}

// Devices lists a customer's devices.
func (cs *Customers) Devices(ctx context.Context, customerID string) ([]*rules.Device, error) {
	m, err := cs.rdb.HGetAll(ctx, customerKey(customerID, partDevices)).Result()
	if err != nil {
		return nil, rules.RedisErr("read devices", err)
	}
	out := make([]*rules.Device, 0, len(m))
	for id, doc := range m {
		if strings.HasPrefix(id, deviceSeenPrefix) {
			continue
		}
		var d rules.Device
		if err := json.Unmarshal([]byte(doc), &d); err != nil {
			return nil, fmt.Errorf("decode device: %w", err)
		}
		out = append(out, &d)
	}
	return out, nil
}

// pushTarget is what the sender needs to know at send time.
type pushTarget struct {
	consent bool
	device  *rules.Device
}

// targetRead is the reading of a push's target, queued on a pipeline
// (the dispatcher's, with the push's record: one round trip for both).
type targetRead struct {
	consent       *redis.StringCmd
	devices, seen *redis.MapStringStringCmd
}

// readTarget queues on p what target needs to know of a customer.
func readTarget(ctx context.Context, p redis.Pipeliner, customerID string) targetRead {
	return targetRead{
		consent: p.HGet(ctx, customerKey(customerID, partProfile), "push"),
		devices: p.HGetAll(ctx, customerKey(customerID, partDevices)),
		seen:    p.HGetAll(ctx, customerKey(customerID, partDeviceSeen)),
	}
}

// err is the reading's failure, if any; a field or key that is missing is none.
func (r targetRead) err() error {
	for _, err := range []error{r.consent.Err(), r.devices.Err(), r.seen.Err()} {
		if err != nil && !errors.Is(err, redis.Nil) {
			return rules.RedisErr("read push target", err)
		}
	}
	return nil
}

// target picks the device a push goes to: the one named, while it is still
// registered, else the one seen most recently (or registered last).
func (r targetRead) target(deviceID string) pushTarget {
	t := pushTarget{consent: r.consent.Val() == "1"}
	// Latest first; at the same millisecond a device that pinged wins over
	// one only registered, then the smaller id, so the choice is stable.
	var best *rules.Device
	var bestAt int64
	var bestSeen bool
	all, legacy := r.devices.Val(), r.seen.Val()
	for id, doc := range all {
		if strings.HasPrefix(id, deviceSeenPrefix) {
			continue
		}
		var d rules.Device
		if json.Unmarshal([]byte(doc), &d) != nil {
			continue
		}
		if id == deviceID {
			t.device = &d
			return t
		}
		at := d.UpdatedAt.UnixMilli()
		s, wasSeen := lastSeen(all, legacy, id)
		if wasSeen && s > at {
			at = s
		}
		better := best == nil || at > bestAt ||
			at == bestAt && (wasSeen && !bestSeen || wasSeen == bestSeen && d.ID < best.ID)
		if better {
			best, bestAt, bestSeen = &d, at, wasSeen
		}
	}
	t.device = best
	return t
}

// devicesSeen is when each device was last seen, as lastSeen tells it:
// device id → unix ms.
func devicesSeen(devices, legacy map[string]string) map[string]string {
	out := map[string]string{}
	add := func(id string) {
		if ms, ok := lastSeen(devices, legacy, id); ok {
			out[id] = strconv.FormatInt(ms, 10)
		}
	}
	for f := range devices {
		if id, ok := strings.CutPrefix(f, deviceSeenPrefix); ok {
			add(id)
		}
	}
	for id := range legacy {
		add(id)
	}
	return out
}

// lastSeen is when a device was last seen, from its stamp in the devices
// hash or, from releases before, in the device_seen key: the newer.
func lastSeen(devices, legacy map[string]string, id string) (int64, bool) {
	s, err := strconv.ParseInt(devices[deviceSeenField(id)], 10, 64)
	old, errOld := strconv.ParseInt(legacy[id], 10, 64)
	switch {
	case err != nil && errOld != nil:
		return 0, false
	case err != nil || errOld == nil && old > s:
		return old, true
	}
	return s, true
}

// dropToken removes a device whose token the push service no longer
// knows, unless the app registered a new token meanwhile, and releases
// the token's owner key (first, as in register) while it names the
// device.
func (cs *Customers) dropToken(ctx context.Context, customerID, deviceID, token string) error {
	if err := cs.runScripts(ctx, releaseToken(ctx, token, tokenHolder(customerID, deviceID))); err != nil {
		return rules.RedisErr("release token", err)
	}
	dropped, err := dropDeviceScript.Run(ctx, cs.rdb, customerKeys(customerID, partDevices, partDeviceSeen, partPresence), deviceID, token).Int()
	if err != nil {
		return rules.RedisErr("drop device", err)
	}
	if dropped == 1 && cs.migrating(ctx) { // again: a pass may have written the owner back
		if err := cs.runScripts(ctx, releaseToken(ctx, token, tokenHolder(customerID, deviceID))); err != nil {
			return rules.RedisErr("release token", err)
		}
	}
	return nil
}

// firstFailure is the first error of the commands of a pipeline, but for
// redis.Nil (a key that was not there: an answer, not a failure).
func firstFailure(cmds []redis.Cmder) error {
	for _, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
	}
	return nil
}
