package api

import (
	"crypto/sha256"
	"math"
	"sync"
	"time"
	"unsafe"
)

// verifiedTokens are the customer tokens that verified, by the SHA-256 of
// the whole token, in two generations: a lookup reads the newer, then the
// older, and moves what it finds in the older to the newer; when the
// newer holds half the bound, the older is forgotten and the newer takes
// its place. A token in use stays; one not seen for a generation verifies
// again when it comes back (some 5 µs).
//
// Nothing in them is a pointer: the customer ids sit in a byte arena per
// generation, which is only ever appended to. A collection of the garbage
// collector marks every object the live heap points to, and with a string
// per token the cache was over half the server's live objects under load
// (131,072 tokens).
type verifiedTokens struct {
	mu           sync.RWMutex
	newer, older tokenGen
	bound        int // 0: verifiedCacheSize
}

// tokenGen is one generation: the tokens, and the arena of their ids.
type tokenGen struct {
	m   map[[sha256.Size]byte]verifiedToken
	ids []byte
}

// verifiedToken is what a token that verified proves, and the times
// (leeway included, Unix nanoseconds) between which it still does.
type verifiedToken struct {
	gen              int64
	notBefore, until int64
	at, n            uint32 // the customer id: the generation's ids[at:at+n]
}

// verifiedCacheSize bounds the tokens kept verified (some 100 bytes each).
const verifiedCacheSize = 1 << 17

// get answers the customer and generation of a token kept, with its times.
// The id is a string on the arena's bytes, which are never changed, so it
// stays valid after the generation is forgotten.
func (v *verifiedTokens) get(key [sha256.Size]byte) (id string, t verifiedToken, ok bool) {
	v.mu.RLock()
	if t, ok = v.newer.m[key]; ok {
		id = v.newer.id(t)
		v.mu.RUnlock()
		return id, t, true
	}
	_, inOlder := v.older.m[key]
	v.mu.RUnlock()
	if !inOlder {
		return "", t, false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if t, ok = v.newer.m[key]; ok { // moved meanwhile
		return v.newer.id(t), t, true
	}
	if t, ok = v.older.m[key]; !ok { // forgotten meanwhile
		return "", t, false
	}
	id = v.older.id(t)
	v.putLocked(key, id, t)
	return id, t, true
}

// put keeps a token that verified.
func (v *verifiedTokens) put(key [sha256.Size]byte, customerID string, t verifiedToken) {
	v.mu.Lock()
	v.putLocked(key, customerID, t)
	v.mu.Unlock()
}

func (v *verifiedTokens) putLocked(key [sha256.Size]byte, customerID string, t verifiedToken) {
	if had, ok := v.newer.m[key]; ok && v.newer.id(had) == customerID {
		t.at, t.n = had.at, had.n // verified again (two calls at once): its id is there
		v.newer.m[key] = t
		return
	}
	bound := v.bound
	if bound == 0 {
		bound = verifiedCacheSize
	}
	if len(v.newer.m) >= bound/2 || len(v.newer.ids)+len(customerID) > bound/2*maxIDBytes {
		v.older, v.newer = v.newer, tokenGen{}
	}
	if v.newer.m == nil {
		v.newer.m = make(map[[sha256.Size]byte]verifiedToken)
	}
	t.at, t.n = uint32(len(v.newer.ids)), uint32(len(customerID))
	v.newer.ids = append(v.newer.ids, customerID...)
	v.newer.m[key] = t
}

// maxIDBytes is what a generation's arena allows a token on average
// (customer ids are at most 128 bytes): it is rotated when full, so it
// stays well inside its uint32 offsets whatever the ids.
const maxIDBytes = 256

// unixNano is t in Unix nanoseconds, held to int64's range (years 1678
// to 2262), so that a token that says it expires in 2286 stays valid
// rather than expired.
func unixNano(t time.Time) int64 {
	switch {
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	}
	return t.UnixNano()
}

func (g *tokenGen) id(t verifiedToken) string {
	if t.n == 0 {
		return ""
	}
	return unsafe.String(&g.ids[t.at], t.n)
}
