package engine

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// Every Redis key the engine uses is named here (the catalog's are in
// rules/catalog.go). docs/architecture.md lists them all for operators.
//
// In Redis Cluster a script may touch the keys of one slot only, so keys
// that change together share a hash tag: a customer's {c:<id>}, a rule's
// counters {rule:<id>}, the outbox {outbox}. What spans slots goes in
// ordered steps (see intent.go and Customers.Delete).

// Keys of one customer share the hash tag {c:<id>}, so that in Redis
// Cluster they live in one slot and one script can change them together.
func customerKey(id, part string) string { return custKeyOpen + id + custKeyClose + part }

// customerKeys is customerKey for several parts at once, in one
// allocation. (A ping's observe step names its eight in a pooled buffer
// instead: observeCall.)
func customerKeys(id string, parts ...string) []string {
	n := 0
	for _, part := range parts {
		n += len(custKeyOpen) + len(id) + len(custKeyClose) + len(part)
	}
	var b strings.Builder
	b.Grow(n)
	for _, part := range parts {
		b.WriteString(custKeyOpen)
		b.WriteString(id)
		b.WriteString(custKeyClose)
		b.WriteString(part)
	}
	all, keys := b.String(), make([]string, len(parts))
	at := 0
	for i, part := range parts {
		end := at + len(custKeyOpen) + len(id) + len(custKeyClose) + len(part)
		keys[i] = all[at:end]
		at = end
	}
	return keys
}

// deviceSeenField is where a customer's devices hash keeps when a device
// was last seen (observe.lua writes it).
func deviceSeenField(id string) string { return deviceSeenPrefix + id }

const deviceSeenPrefix = "#seen:"

// What comes before and after a customer id in their keys, for scripts
// that find a customer's keys from a record naming them.
const (
	custKeyOpen  = "nc:{c:"
	custKeyClose = "}:"
)

// The parts of a customer's keys: nc:{c:<id>}:<part>.
const (
	// partProfile: hash, "doc" (the profile's JSON), "loc", "push" and
	// "fb" ("1" or "0": the consents, which scripts read). The attributes
	// the catalog of attributes counts the profile with are worked out
	// from "doc" (lib/counted.lua, countedAttrs); profiles written before
	// kept them beside it in "attrs", which their next write drops; one
	// with neither "attrs" nor "fb" is from before the catalog, and not
	// counted. No TTL: the customer's own.
	partProfile = "profile"
	// partDevices: hash, device id → the device's JSON, and
	// deviceSeenField(id) → unix ms of when the device was last seen (the
	// first ping of its latest run: one device's pings in a row, with no
	// gap of a visit timeout, write it once; '#' is in no id). Ids are the
	// customer's own: another customer's "d-1" is another device. No TTL:
	// a device's stamp goes with it.
	partDevices = "devices"
	// partDeviceSeen: hash, device id → unix ms of when it was last seen,
	// as releases before the stamps moved into the devices hash kept it:
	// written no more, still read (the newer stamp wins) until its TTL, 400
	// days past its last write, takes it; erasure deletes it.
	partDeviceSeen = "device_seen"
	// partPresence: hash, store id → "entered_ms:last_seen_ms:dwell_done_s"
	// (a visit open), "#fix" → the last call (lua/lib/presence.lua: the
	// fix, the minute of its call and the customer's calls in it, when
	// the TTL was set, the device and its platform), "#d:<device id>" →
	// each device's calls in that minute, "#risk" → the customer's risk
	// ('#' is in no id); "#ts", "#dev" and "#os", which older versions
	// kept, go at the next write. TTL the visit timeout and up to a minute
	// more (set once a minute).
	partPresence = "presence"
	// partCaps: hash, offers per rule and local day ("<rule>|d<yyyymmdd>"),
	// ISO week ("|w<yyyyww>") and in total ("|t"), all rules per day
	// ("*|d…") and the last offer's time ("*|last"); day and week fields
	// pruned after 8 days and 2 weeks; TTL 400 days.
	partCaps = "caps"
	// partCoupons: set, the codes issued to the customer; TTL that of the
	// newest coupon's record.
	partCoupons = "coupons"
	// partVisits: hash, visits in all ("n", "first", "last", "prev", ms)
	// and per store ("n:<store>", …), offers received and redeemed, and
	// "aff:<tag>" per tag of the rules redeemed; TTL 400 days.
	partVisits = "visits"
	// partCoupon: + code, hash, the coupon's record (rule, store, times,
	// redemption) and, until it is sent or dropped, its push.
	partCoupon = "coupon:"
	// partTokens: string, the lowest generation of customer tokens still
	// valid (missing: 1). A revocation raises it; tokens carry the
	// generation they were minted in, so a token is checked in the call's
	// own Redis step, with no read of its own. Erasure raises it too and
	// leaves it (a number); TTL 30 days past the last raise, and at least
	// as long as any token minted in it.
	partTokens = "tokens"
	// partRate: hash, the customer's app calls in a minute of the server's
	// clock: "m" the minute counted, "c" the customer's calls in it and
	// "d:<device id>" each device's; the first call of a minute starts it
	// afresh, with a TTL of 2 minutes. A customer with presence has them
	// there instead (in "#fix" and "#d:<device id>"), read and written
	// with it by the ping's step.
	partRate = "rate"
	// partFraud: hash, what the customer's suspicious fixes left (fraud.go;
	// never a coordinate): per UTC day "f:<yyyymmdd>" the suspicious fixes,
	// "s:<yyyymmdd>:<signal>" those with each signal, "v:<yyyymmdd>:<device
	// id>" those of each device, "i:<yyyymmdd>" and "r:<yyyymmdd>" the
	// coupons issued and redeemed under suspicion; "last" (unix ms) the
	// last suspicious fix, "pruned" the day days older than FraudRetention
	// were last dropped. Written only for a suspicious fix (and the
	// redemption of a coupon issued to one); TTL FraudRetention (90 days)
	// past the last write.
	partFraud = "fraud"
	// partEvents: list, the customer's journal of events out (events.go):
	// each fact a step decided that a subscription wants, as JSON, until
	// the relay has moved it to the event streams; at most 1,000 (the
	// newest). No TTL: a fact waits for its relay, and erasure removes it.
	partEvents = "events"
)

// keyFraudIndex is the customers with a fraud record: a sorted set,
// customer id → unix ms of their last suspicious fix or redemption under
// suspicion, which GET /v1/fraud reads most recent first. Members older
// than FraudRetention are trimmed as it is written, an erased customer's
// removed (Customers.Delete); TTL FraudRetention past the last write.
const keyFraudIndex = "nc:{fraud}:index"

// couponRecordKey is a coupon's record, among its customer's keys: the
// step that issues it writes it with the customer's caps.
func couponRecordKey(customerID, code string) string { return customerKey(customerID, partCoupon+code) }

// codeIndexKey names the customer a coupon code was issued to, so that a
// till that has only the code finds the record. Empty for an hour after
// the customer's erasure (see settleInFlight).
func codeIndexKey(code string) string { return "nc:code:" + code }

// archivedCouponKey keeps a redeemed coupon of a customer who was erased,
// without anything that names them, for the rule's statistics.
func archivedCouponKey(code string) string { return "nc:coupon:" + code }

// tokenOwner is where the device an FCM token is registered to is kept,
// as tokenHolder writes it: "<customer id>\n<device id>". One token, one
// device of one customer. The owners share tokenBuckets hashes, named by
// the first bits of the token's SHA-256, each token a field named by the
// next 96 bits: a key of its own cost each customer some 200 B of Redis,
// a field costs some 50. Neither key nor field holds the token, which is
// a credential to push to the phone.
type tokenOwner struct{ key, field string }

// tokenBuckets is how many hashes the token owners share: at a million
// customers some 60 fields each, which Redis keeps in its compact
// listpack encoding (up to hash-max-listpack-entries, 128 by default).
const tokenBuckets = 1 << 14

func tokenOwnerOf(token string) tokenOwner {
	sum := sha256.Sum256([]byte(token))
	return tokenOwnerOfSum(sum[:])
}

// tokenOwnerOfSum is tokenOwnerOf for the token's SHA-256.
func tokenOwnerOfSum(sum []byte) tokenOwner {
	bucket := (int(sum[0])<<8 | int(sum[1])) & (tokenBuckets - 1)
	return tokenOwner{
		key:   fmt.Sprintf("nc:fcmtokens:%04x", bucket),
		field: base64.RawURLEncoding.EncodeToString(sum[2:14]),
	}
}

// legacyTokenOwnerKey is where earlier releases kept a token's owner: a
// key of its own, named by the token's SHA-256 in hex. Nothing writes it
// now: registering the token moves its owner into the hashes, releasing
// the token releases this key too, and Customers.MigrateTokenOwners
// moves every one left.
func legacyTokenOwnerKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return legacyTokenOwnerPrefix + hex.EncodeToString(sum[:])
}

const legacyTokenOwnerPrefix = "nc:fcmtoken:"

// credentialRateKey counts a credential's coupon calls this minute
// (CredentialRate); it names a hash of the credential, never the
// credential. TTL 2 minutes.
func credentialRateKey(credential string) string {
	sum := sha256.Sum256([]byte(credential))
	return "nc:{rate:" + hex.EncodeToString(sum[:12]) + "}"
}

// Keys of the outbox, shared by all customers, under one hash tag so that
// in Redis Cluster its scripts find them in one slot.
const (
	keyOutbox   = "nc:{outbox}:stream"   // stream of pushes to send (references to their coupon records)
	keyDead     = "nc:{outbox}:dead"     // stream of pushes that could not be sent, with the reason
	keyDelayed  = "nc:{outbox}:delayed"  // sorted set of pushes waiting to be tried again, by due time
	keyIntents  = "nc:{outbox}:intents"  // sorted set of offers being issued, by the deadline of their commit
	keyReserved = "nc:{outbox}:reserved" // hash: intent → the rule capacity reserved for it, to give back what no coupon used
)

// Keys of the catalog of attributes (attributes.go), shared by all
// customers under one hash tag, so that in Redis Cluster its script
// changes them together. They name no customer. No TTL.
const (
	// keyAttrCount: hash, attribute name → how many profiles carry it; a
	// count at 0 goes, and a negative one is a loss counted before its
	// gain. At most MaxLearnedAttributes names, beyond which only
	// declared names are learned.
	keyAttrCount = "nc:{attrs}:count"
	// keyAttrTypes: hash, "<type>:<name>" → how many profiles carry the
	// attribute with that type (string, number, bool, list).
	keyAttrTypes = "nc:{attrs}:types"
	// keyAttrDeclared: hash, attribute name → {"type", "description"}, as
	// the operator declared it (PUT /v1/attributes).
	keyAttrDeclared = "nc:{attrs}:declared"
)

// funnelKey is a rule's funnel counters for one UTC day (yyyymmdd); TTL
// 400 days.
func funnelKey(rule, day string) string { return "nc:{rule:" + rule + "}:funnel:" + day }

// budgetKey counts the offers a rule issued against its total budget
// (caps.total); holdoutKey those its holdout kept.
func budgetKey(rule string) string  { return "nc:{rule:" + rule + "}:issued" }
func holdoutKey(rule string) string { return budgetKey(rule) + ":holdout" }

// storeDayKey counts a rule's offers at one store on one local day
// (caps.per_store_per_day).
func storeDayKey(rule, store, day string) string {
	return "nc:{rule:" + rule + "}:store:" + store + ":" + day
}
