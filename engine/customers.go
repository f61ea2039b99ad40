package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/rules"
)

// Keys of one customer share the hash tag {c:<id>}, so that in Redis
// Cluster they live in one slot and one script can change them together.
func customerKey(id, part string) string { return custKeyOpen + id + custKeyClose + part }

// What comes before and after a customer id in their keys, for scripts
// that find a customer's keys from a record naming them.
const (
	custKeyOpen  = "nc:{c:"
	custKeyClose = "}:"
)

const (
	partProfile    = "profile"     // hash: doc (JSON), loc and push ("1"/"0": consent, read by scripts)
	partDevices    = "devices"     // hash: device id → JSON
	partDeviceSeen = "device_seen" // hash: device id → unix ms of its last ping
	partPresence   = "presence"    // hash: store id → "entered_ms:last_seen_ms"; "_ts" → last fix
	partCaps       = "caps"        // hash: "<rule id>|<yyyymmdd>" → offers that day
	partCoupons    = "coupons"     // set: coupon codes issued to the customer
	partVisits     = "visits"      // hash: n, first, last, prev (ms), and n:/first:/last:/prev:<store>; offers
	partCoupon     = "coupon:"     // + code, hash: the coupon's record and its push
)

// couponRecordKey is a coupon's record, among its customer's keys: the
// step that issues it writes it with the customer's caps.
func couponRecordKey(customerID, code string) string { return customerKey(customerID, partCoupon+code) }

// codeIndexKey names the customer a coupon code was issued to, so that a
// till that has only the code finds the record.
func codeIndexKey(code string) string { return "nc:code:" + code }

// archivedCouponKey keeps a redeemed coupon of a customer who was erased,
// without anything that names them, for the rule's statistics.
func archivedCouponKey(code string) string { return "nc:coupon:" + code }

// deviceOwnerKey names the customer a device belongs to now, so that a
// device that logs in as another customer leaves the first one.
func deviceOwnerKey(deviceID string) string { return "nc:device:" + deviceID }

// Customers is the Redis repository of profiles and devices.
type Customers struct {
	rdb redis.UniversalClient
	now func() time.Time
}

// NewCustomers returns the repository on rdb.
func NewCustomers(rdb redis.UniversalClient) *Customers {
	return &Customers{rdb: rdb, now: time.Now}
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// Put validates and saves a profile, answering whether it is new.
func (cs *Customers) Put(ctx context.Context, c *rules.Customer) (created bool, err error) {
	if err := c.Normalize(); err != nil {
		return false, err
	}
	c.UpdatedAt = cs.now().UTC().Truncate(time.Millisecond)
	doc, err := json.Marshal(c)
	if err != nil {
		return false, err
	}
	n, err := cs.rdb.HSet(ctx, customerKey(c.ID, partProfile),
		"doc", doc, "loc", flag(c.Consent.Location), "push", flag(c.Consent.Push)).Result()
	if err != nil {
		return false, fmt.Errorf("save customer: %w", err)
	}
	if !c.Consent.Location {
		// Withdrawn location consent: what we knew of where they were goes.
		if err := cs.rdb.Del(ctx, customerKey(c.ID, partPresence)).Err(); err != nil {
			return false, fmt.Errorf("drop presence: %w", err)
		}
	}
	return n == 3, nil
}

// PutMany saves profiles already checked (Normalize), in pipelined
// batches, answering how many it wrote; on an error, the batches before it
// are written.
func (cs *Customers) PutMany(ctx context.Context, customers []*rules.Customer) (int, error) {
	const batch = 1000
	now := cs.now().UTC().Truncate(time.Millisecond)
	written := 0
	for start := 0; start < len(customers); start += batch {
		part := customers[start:min(start+batch, len(customers))]
		_, err := cs.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, c := range part {
				c.UpdatedAt = now
				doc, err := json.Marshal(c)
				if err != nil {
					return err
				}
				p.HSet(ctx, customerKey(c.ID, partProfile), "doc", doc, "loc", flag(c.Consent.Location), "push", flag(c.Consent.Push))
				if !c.Consent.Location {
					p.Del(ctx, customerKey(c.ID, partPresence))
				}
			}
			return nil
		})
		if err != nil {
			return written, fmt.Errorf("save customers: %w", err)
		}
		written += len(part)
	}
	return written, nil
}

// Get reads a profile.
func (cs *Customers) Get(ctx context.Context, id string) (*rules.Customer, error) {
	doc, err := cs.rdb.HGet(ctx, customerKey(id, partProfile), "doc").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, rules.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read customer: %w", err)
	}
	return decodeCustomer(doc)
}

func decodeCustomer(doc []byte) (*rules.Customer, error) {
	var c rules.Customer
	if err := json.Unmarshal(doc, &c); err != nil {
		return nil, fmt.Errorf("decode customer: %w", err)
	}
	return &c, nil
}

// eraseScript removes everything kept about a customer: their own keys,
// the coupons issued to them that were not redeemed, and the records of
// those redeemed, whose anonymous part it answers for the archive.
// KEYS: the customer's keys (coupons set sixth). ARGV: the prefix of
// their coupon records.
// Returns {existed, devices…, "", (code, rule_id, store_id, issued_at,
// expires_at, redeemed_at, redeemed_store, only_store, ms to live)…, "",
// codes not redeemed…}.
var eraseScript = redis.NewScript(`
local out = {tostring(redis.call('EXISTS', KEYS[1]))}
for _, dev in ipairs(redis.call('HKEYS', KEYS[2])) do table.insert(out, dev) end
table.insert(out, '')
local unredeemed = {}
for _, code in ipairs(redis.call('SMEMBERS', KEYS[6])) do
  local k = ARGV[1] .. code
  local r = redis.call('HMGET', k, 'rule_id', 'store_id', 'issued_at', 'expires_at', 'redeemed_at', 'redeemed_store', 'only_store')
  if r[5] then
    table.insert(out, code)
    for i = 1, 7 do table.insert(out, r[i] or '') end
    table.insert(out, tostring(redis.call('PTTL', k)))
  else
    table.insert(unredeemed, code)
  end
  redis.call('DEL', k)
end
table.insert(out, '')
for _, code in ipairs(unredeemed) do table.insert(out, code) end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
return out`)

// eraseLegacyScript erases a coupon record of the old layout
// (nc:coupon:<code>, with the customer's id in it).
var eraseLegacyScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'redeemed_at') then
  redis.call('HDEL', KEYS[1], 'customer_id', 'device_id')
else
  redis.call('DEL', KEYS[1])
end
return 1`)

// Delete erases the customer: profile, devices, presence, counters,
// unredeemed coupons, and the pushes still queued for them. A redeemed
// coupon stays for the rule's statistics, without what named them.
func (cs *Customers) Delete(ctx context.Context, id string) error {
	keys := []string{
		customerKey(id, partProfile), customerKey(id, partDevices), customerKey(id, partDeviceSeen),
		customerKey(id, partPresence), customerKey(id, partCaps), customerKey(id, partCoupons),
		customerKey(id, partVisits),
	}
	out, err := eraseScript.Run(ctx, cs.rdb, keys, couponRecordKey(id, "")).StringSlice()
	if err != nil {
		return fmt.Errorf("erase customer: %w", err)
	}
	existed := out[0] == "1"
	i := 1
	var devices []string
	for ; out[i] != ""; i++ {
		devices = append(devices, out[i])
	}
	// The rest lives in other slots of a cluster: one command each.
	for _, dev := range devices {
		if err := releaseDeviceScript.Run(ctx, cs.rdb, []string{deviceOwnerKey(dev)}, id).Err(); err != nil {
			return fmt.Errorf("erase customer: release device: %w", err)
		}
	}
	_, err = cs.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i++; out[i] != ""; i += 9 {
			code, f := out[i], out[i+1:i+9]
			p.HSet(ctx, archivedCouponKey(code), "rule_id", f[0], "store_id", f[1], "issued_at", f[2], "expires_at", f[3],
				"redeemed_at", f[4], "redeemed_store", f[5], "only_store", f[6])
			if ms, _ := strconv.ParseInt(f[7], 10, 64); ms > 0 {
				p.PExpire(ctx, archivedCouponKey(code), time.Duration(ms)*time.Millisecond)
			}
			p.Del(ctx, codeIndexKey(code))
		}
		for i++; i < len(out); i++ {
			p.Del(ctx, codeIndexKey(out[i]))
			// A record written before records moved to their customer:
			// gone when unredeemed, else kept without who it was.
			eraseLegacyScript.Eval(ctx, p, []string{archivedCouponKey(out[i])})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("erase customer: %w", err)
	}
	queued, err := cs.queued(ctx, id)
	if err != nil {
		return err
	}
	delayed, err := cs.delayed(ctx, id)
	if err != nil {
		return err
	}
	if len(delayed) > 0 {
		members := make([]any, len(delayed))
		for i, d := range delayed {
			members[i] = d.raw
		}
		if err := cs.rdb.ZRem(ctx, keyDelayed, members...).Err(); err != nil {
			return fmt.Errorf("drop delayed pushes: %w", err)
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
			return fmt.Errorf("drop queued pushes: %w", err)
		}
		if err := cs.rdb.XDel(ctx, keyOutbox, ids...).Err(); err != nil {
			return fmt.Errorf("drop queued pushes: %w", err)
		}
	}
	if !existed && len(queued) == 0 && len(delayed) == 0 {
		return rules.ErrNotFound
	}
	return nil
}

// queued lists the outbox entries for a customer. The outbox holds only
// pushes not yet sent, so it stays short.
func (cs *Customers) queued(ctx context.Context, id string) ([]redis.XMessage, error) {
	msgs, err := cs.rdb.XRange(ctx, keyOutbox, "-", "+").Result()
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
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
		return nil, fmt.Errorf("read delayed pushes: %w", err)
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
	var seen, presence, caps, visits *redis.MapStringStringCmd
	var codes *redis.StringSliceCmd
	if _, err := cs.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		seen = p.HGetAll(ctx, customerKey(id, partDeviceSeen))
		presence = p.HGetAll(ctx, customerKey(id, partPresence))
		caps = p.HGetAll(ctx, customerKey(id, partCaps))
		visits = p.HGetAll(ctx, customerKey(id, partVisits))
		codes = p.SMembers(ctx, customerKey(id, partCoupons))
		return nil
	}); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	ex := &Export{Profile: prof, Devices: devices, DeviceSeen: seen.Val(), Presence: presence.Val(), Counters: caps.Val(), Visits: visits.Val(),
		Coupons: map[string]map[string]string{}, QueuedPushes: []Push{}}
	for _, code := range codes.Val() {
		c, err := cs.rdb.HGetAll(ctx, couponRecordKey(id, code)).Result()
		if err == nil && len(c) == 0 {
			// A record of the old layout, when it is theirs.
			if c, err = cs.rdb.HGetAll(ctx, archivedCouponKey(code)).Result(); c["customer_id"] != id {
				c = nil
			}
		}
		if err != nil {
			return nil, fmt.Errorf("export coupon: %w", err)
		}
		if len(c) > 0 {
			ex.Coupons[code] = c
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
// whether it is new.
func (cs *Customers) PutDevice(ctx context.Context, customerID string, d *rules.Device) (created bool, err error) {
	if err := d.Normalize(); err != nil {
		return false, err
	}
	d.UpdatedAt = cs.now().UTC().Truncate(time.Millisecond)
	created2, err := cs.moveDevices(ctx, []string{customerID}, []*rules.Device{d})
	if err != nil {
		return false, fmt.Errorf("save device: %w", err)
	}
	return created2 == 1, nil
}

// PutDevices registers devices already checked (Normalize), each with the
// customer at the same position, in pipelined batches, answering how many
// it wrote; a device another customer had moves, as with PutDevice.
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
		if _, err := cs.moveDevices(ctx, customerIDs[start:end], devices[start:end]); err != nil {
			return written, fmt.Errorf("save devices: %w", err)
		}
		written += end - start
	}
	return written, nil
}

// moveDevices registers each device with the customer at its position and
// takes it from the customer who had it before (a re-login), so that the
// old customer's offers no longer reach it; it answers how many devices
// are new to their customer. The device's owner key lives apart from the
// customers' keys (another slot in Redis Cluster), so the move is three
// steps: the device joins the new customer, the owner key names them and
// says who had it, the old customer loses it. A move cut short leaves the
// device with both customers until it registers again; the push to the
// old one would still go to the device its owner key no longer names.
func (cs *Customers) moveDevices(ctx context.Context, customerIDs []string, devices []*rules.Device) (int, error) {
	docs := make([][]byte, len(devices))
	for i, d := range devices {
		doc, err := json.Marshal(d)
		if err != nil {
			return 0, err
		}
		docs[i] = doc
	}
	added := make([]*redis.IntCmd, len(devices))
	owners := make([]*redis.StatusCmd, len(devices))
	var all []redis.Cmder
	_, _ = cs.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, d := range devices {
			added[i] = p.HSet(ctx, customerKey(customerIDs[i], partDevices), d.ID, docs[i])
			owners[i] = p.SetArgs(ctx, deviceOwnerKey(d.ID), customerIDs[i], redis.SetArgs{Get: true})
			all = append(all, added[i], owners[i])
		}
		return nil
	})
	if err := firstFailure(all); err != nil {
		return 0, err
	}
	created := 0
	var moved []redis.Cmder
	_, _ = cs.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, d := range devices {
			created += int(added[i].Val())
			if old := owners[i].Val(); old != "" && old != customerIDs[i] {
				moved = append(moved, p.HDel(ctx, customerKey(old, partDevices), d.ID), p.HDel(ctx, customerKey(old, partDeviceSeen), d.ID))
			}
		}
		return nil
	})
	return created, firstFailure(moved)
}

// DeleteDevice removes a device.
func (cs *Customers) DeleteDevice(ctx context.Context, customerID, deviceID string) error {
	n, err := cs.rdb.HDel(ctx, customerKey(customerID, partDevices), deviceID).Result()
	if err != nil {
		return fmt.Errorf("delete device: %w", err)
	}
	if n == 0 {
		return rules.ErrNotFound
	}
	cs.rdb.HDel(ctx, customerKey(customerID, partDeviceSeen), deviceID)
	releaseDeviceScript.Run(ctx, cs.rdb, []string{deviceOwnerKey(deviceID)}, customerID)
	return nil
}

var releaseDeviceScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0`)

// Devices lists a customer's devices.
func (cs *Customers) Devices(ctx context.Context, customerID string) ([]*rules.Device, error) {
	m, err := cs.rdb.HGetAll(ctx, customerKey(customerID, partDevices)).Result()
	if err != nil {
		return nil, fmt.Errorf("read devices: %w", err)
	}
	out := make([]*rules.Device, 0, len(m))
	for _, doc := range m {
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

// target picks the device a push goes to: the one named, while it is still
// registered, else the one seen most recently (or registered last).
func (cs *Customers) target(ctx context.Context, customerID, deviceID string) (pushTarget, error) {
	var consent *redis.StringCmd
	var devices, seen *redis.MapStringStringCmd
	_, err := cs.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		consent = p.HGet(ctx, customerKey(customerID, partProfile), "push")
		devices = p.HGetAll(ctx, customerKey(customerID, partDevices))
		seen = p.HGetAll(ctx, customerKey(customerID, partDeviceSeen))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return pushTarget{}, fmt.Errorf("read push target: %w", err)
	}
	t := pushTarget{consent: consent.Val() == "1"}
	// Latest first; at the same millisecond a device that pinged wins over
	// one only registered, then the smaller id, so the choice is stable.
	var best *rules.Device
	var bestAt int64
	var bestSeen bool
	for id, doc := range devices.Val() {
		var d rules.Device
		if json.Unmarshal([]byte(doc), &d) != nil {
			continue
		}
		if id == deviceID {
			t.device = &d
			return t, nil
		}
		at := d.UpdatedAt.UnixMilli()
		s, err := strconv.ParseInt(seen.Val()[id], 10, 64)
		wasSeen := err == nil
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
	return t, nil
}

var dropTokenScript = redis.NewScript(`
local doc = redis.call('HGET', KEYS[1], ARGV[1])
if doc and string.find(doc, ARGV[2], 1, true) then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0`)

// dropToken removes a device whose token the push service no longer
// knows, unless the app registered a new token meanwhile.
func (cs *Customers) dropToken(ctx context.Context, customerID, deviceID, token string) error {
	quoted, _ := json.Marshal(token)
	return dropTokenScript.Run(ctx, cs.rdb, []string{customerKey(customerID, partDevices)}, deviceID, string(quoted)).Err()
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
