package engine

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/rules"
)

// MaxTokenTTL is the longest a customer token may live. A revocation is
// kept that long, so that every token it revoked has expired before it
// is forgotten.
const MaxTokenTTL = 30 * 24 * time.Hour

// rateWindow is how long a rate counter outlives its last call.
const rateWindow = 2 * time.Minute

// tokenGenerationScript answers the generation a token minted now
// carries, and keeps a raised generation at least as long as the token
// (ARGV[1], ms), so that the revocation of older tokens is never forgotten
// while a newer one lives. KEYS: the customer's tokens key.
var tokenGenerationScript = script("token_generation")

// revokeTokensScript raises the customer's token generation: every token
// minted before stops working. Kept for MaxTokenTTL, the longest any of
// them lives. KEYS: the customer's tokens key. ARGV: ms to keep it.
var revokeTokensScript = script("revoke_tokens")

// TokenGeneration answers the generation a customer token minted now for
// the customer carries; the token lives ttl.
func (cs *Customers) TokenGeneration(ctx context.Context, customerID string, ttl time.Duration) (int64, error) {
	g, err := tokenGenerationScript.Run(ctx, cs.rdb, []string{customerKey(customerID, partTokens)}, ttl.Milliseconds()).Int64()
	if err != nil {
		return 0, rules.RedisErr("token generation", err)
	}
	return g, nil
}

// RevokeTokens makes every customer token minted so far for the customer
// stop working, on every replica at once: each call checks its token's
// generation in its own Redis step.
func (cs *Customers) RevokeTokens(ctx context.Context, customerID string) error {
	err := revokeTokensScript.Run(ctx, cs.rdb, []string{customerKey(customerID, partTokens)}, MaxTokenTTL.Milliseconds()).Err()
	if err != nil {
		return rules.RedisErr("revoke tokens", err)
	}
	return nil
}

// admitScript admits an app call that is not a ping (pings do the same in
// the observe step): the customer token's generation must still be valid
// (0: the call carried none), and the call is counted against the
// customer's and the device's limits of a minute. A call over a limit is
// not counted.
// The counts are kept in the customer's presence while there is one (the
// ping's step reads and writes them there with it), else in the rate key.
// KEYS: the customer's tokens key, rate key, presence. ARGV: token generation, now
// (ms), limit per customer, per device (0: none), device id ("" : none),
// ms the counters live.
// Returns {"ok"}, {"revoked"} or {"rate_limited", ms until the next minute}.
var admitScript = script("admit", "rate", "presence")

// Admit checks and counts an app call made for a customer that is not a
// ping: a device registered or removed, a coupon opened. tokenGen is the
// generation of the customer token it came with, 0 for none. It answers
// ErrRevoked, a *RateLimitError, or nil.
func (e *Engine) Admit(ctx context.Context, customerID, deviceID string, tokenGen int64) error {
	return e.admit(ctx, customerID, deviceID, tokenGen, 1)
}

// admit is Admit with the limits times scale.
func (e *Engine) admit(ctx context.Context, customerID, deviceID string, tokenGen int64, scale int) error {
	keys := []string{customerKey(customerID, partTokens), customerKey(customerID, partRate), customerKey(customerID, partPresence)}
	limC, limD := e.limits(scale)
	raw, err := admitScript.Run(ctx, e.rdb, keys, tokenGen, e.now().UnixMilli(),
		limC, limD, deviceID, rateWindow.Milliseconds()).StringSlice()
	if err != nil {
		return rules.RedisErr("admit", err)
	}
	return admitted(raw)
}

// admitted reads the verdict of the admission part of a script's reply.
func admitted(raw []string) error {
	switch raw[0] {
	case "revoked":
		return ErrRevoked
	case "rate_limited":
		ms, _ := strconv.ParseInt(raw[1], 10, 64)
		return &RateLimitError{RetryAfter: time.Duration(ms) * time.Millisecond}
	}
	return nil
}

// keyRateScript counts a call against a credential's limit of a minute.
// KEYS: the credential's counter. ARGV: limit, now (ms).
// Returns 0, or the ms until the next minute when over the limit.
var keyRateScript = script("key_rate")

// CredentialRate limits the coupon calls (look-ups, redemptions, opens)
// of one credential, in Redis so that the limit holds across replicas.
type CredentialRate struct {
	rdb       redis.UniversalClient
	perMinute int
	now       func() time.Time
}

// NewCredentialRate limits each credential to perMinute calls a minute of
// the server's clock; 0 means no limit. now may be nil for the wall clock.
func NewCredentialRate(rdb redis.UniversalClient, perMinute int, now func() time.Time) *CredentialRate {
	if now == nil {
		now = time.Now
	}
	return &CredentialRate{rdb: rdb, perMinute: perMinute, now: now}
}

// Allow counts one call of the credential, answering a *RateLimitError
// when it is over its limit. The credential itself is never stored: its
// counter is named by a hash of it.
func (r *CredentialRate) Allow(ctx context.Context, credential string) error {
	if r == nil || r.perMinute <= 0 {
		return nil
	}
	ms, err := keyRateScript.Run(ctx, r.rdb, []string{credentialRateKey(credential)}, r.perMinute, r.now().UnixMilli()).Int64()
	if err != nil {
		return rules.RedisErr("rate limit", err)
	}
	if ms > 0 {
		return &RateLimitError{RetryAfter: time.Duration(ms) * time.Millisecond}
	}
	return nil
}
