package api

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"time"
	"unsafe"

	"github.com/golang-jwt/jwt/v5"
)

// Customer tokens are JSON Web Tokens signed with HMAC-SHA256 (RFC 7519,
// 7518): issued by Nearcast ("iss": "nearcast"), for the app routes
// ("aud": "nearcast-app"), naming the customer ("sub"), with their
// issue and expiry times and the customer's token generation ("gen"),
// which a revocation raises. They verify without Redis; the generation is
// checked in the Redis step the call makes anyway.
//
// HMAC, not a public-key signature: the one party that mints and the one
// that verifies are the same, Nearcast's replicas, which share the
// secret; a company backend that wants to mint them itself can, with any
// JWT library and the same secret. Only HS256 is accepted, so a token
// cannot choose its own algorithm ("none", or a public key as an HMAC
// secret).
const (
	tokenIssuer   = "nearcast"
	tokenAudience = "nearcast-app"
	// MinTokenSecret is the shortest signing secret accepted, in bytes.
	MinTokenSecret = 32
)

// DefaultTokenTTL is how long a customer token lives when its minter
// does not say.
const DefaultTokenTTL = 24 * time.Hour

// tokenClaims are a customer token's claims.
type tokenClaims struct {
	jwt.RegisteredClaims
	// Gen is the customer's token generation when it was minted.
	Gen int64 `json:"gen"`
}

// CustomerTokens mints and verifies customer tokens. The first secret
// signs; every secret verifies, so that a secret can be rotated: add the
// new one first, and drop the old one once the tokens it signed have
// expired (30 days at most).
type CustomerTokens struct {
	keys   map[string][]byte // key id → secret
	signID string
	parser *jwt.Parser
	now    func() time.Time

	// Tokens that verified: an app sends the same token with every ping,
	// and parsing it (base64, two JSON documents, the HMAC) cost some 7
	// µs and 61 allocations a call.
	verified verifiedTokens
}

// tokenLeeway is how far replicas' clocks may differ.
const tokenLeeway = 30 * time.Second

// NewCustomerTokens returns the minter and verifier for these secrets,
// the first of which signs; now may be nil for the wall clock.
func NewCustomerTokens(secrets [][]byte, now func() time.Time) (*CustomerTokens, error) {
	if len(secrets) == 0 {
		return nil, errors.New("no token secret")
	}
	if now == nil {
		now = time.Now
	}
	t := &CustomerTokens{keys: map[string][]byte{}, now: now}
	for i, s := range secrets {
		if len(s) < MinTokenSecret {
			return nil, fmt.Errorf("a token secret must be at least %d bytes", MinTokenSecret)
		}
		id := keyID(s)
		if i == 0 {
			t.signID = id
		}
		t.keys[id] = s
	}
	t.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(tokenIssuer),
		jwt.WithAudience(tokenAudience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(tokenLeeway),
		jwt.WithTimeFunc(func() time.Time { return t.now() }),
	)
	return t, nil
}

// keyID names a secret without revealing it: the first bytes of its hash.
func keyID(secret []byte) string {
	sum := sha256.Sum256(secret)
	return hex.EncodeToString(sum[:6])
}

// Mint signs a token for the customer, of token generation gen, that
// lives ttl.
func (t *CustomerTokens) Mint(customerID string, gen int64, ttl time.Duration) (string, time.Time, error) {
	now := t.now().Truncate(time.Second)
	exp := now.Add(ttl)
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: tokenIssuer, Audience: jwt.ClaimStrings{tokenAudience}, Subject: customerID,
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(exp),
		},
		Gen: gen,
	})
	tok.Header["kid"] = t.signID
	signed, err := tok.SignedString(t.keys[t.signID])
	return signed, exp.UTC(), err
}

// errBadToken is any token that does not verify; why is not told.
var errBadToken = errors.New("customer token not valid")

// Verify checks a token's signature, issuer, audience and times, and
// answers the customer it names and its generation.
func (t *CustomerTokens) Verify(token string) (customerID string, gen int64, err error) {
	// The token's bytes as they are: a copy would be an allocation a ping.
	key := sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
	now := unixNano(t.now())
	if id, v, ok := t.verified.get(key); ok && now >= v.notBefore && now < v.until {
		return id, v.gen, nil
	}
	var claims tokenClaims
	_, err = t.parser.ParseWithClaims(token, &claims, func(tok *jwt.Token) (any, error) {
		id, _ := tok.Header["kid"].(string)
		if s, ok := t.keys[id]; ok {
			return s, nil
		}
		return nil, errBadToken
	})
	if err != nil || claims.Subject == "" || claims.Gen < 1 {
		return "", 0, errBadToken
	}
	v := verifiedToken{gen: claims.Gen, notBefore: math.MinInt64, until: unixNano(claims.ExpiresAt.Add(tokenLeeway))}
	// Not before the later of its issue and its not-before times (a token
	// a company backend mints may carry nbf), as the full check has it.
	for _, at := range [...]*jwt.NumericDate{claims.IssuedAt, claims.NotBefore} {
		if at != nil {
			v.notBefore = max(v.notBefore, unixNano(at.Add(-tokenLeeway)))
		}
	}
	t.verified.put(key, claims.Subject, v)
	return claims.Subject, claims.Gen, nil
}
