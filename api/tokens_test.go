package api

import (
	"crypto/sha256"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	secretOld = []byte("old-secret-old-secret-old-secret-0001")
	secretNew = []byte("new-secret-new-secret-new-secret-0002")
)

// A secret is rotated by putting the new one first: tokens the old one
// signed still verify until it is dropped.
func TestTokenSecretRotation(t *testing.T) {
	before, err := NewCustomerTokens([][]byte{secretOld}, nil)
	if err != nil {
		t.Fatal(err)
	}
	during, _ := NewCustomerTokens([][]byte{secretNew, secretOld}, nil)
	after, _ := NewCustomerTokens([][]byte{secretNew}, nil)
	old, _, _ := before.Mint("c-1", 3, time.Hour)
	fresh, _, _ := during.Mint("c-1", 3, time.Hour)
	for _, tt := range []struct {
		name  string
		v     *CustomerTokens
		token string
		ok    bool
	}{
		{"old token, old secret", before, old, true},
		{"old token while rotating", during, old, true},
		{"new token while rotating", during, fresh, true},
		{"new token, new secret alone", after, fresh, true},
		{"old token after the old secret is dropped", after, old, false},
		{"new token, old secret alone", before, fresh, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id, gen, err := tt.v.Verify(tt.token)
			if ok := err == nil && id == "c-1" && gen == 3; ok != tt.ok {
				t.Fatalf("verify: %q %d %v, want ok=%v", id, gen, err, tt.ok)
			}
		})
	}
}

func TestTokenClaimsAreChecked(t *testing.T) {
	if _, err := NewCustomerTokens([][]byte{[]byte("short")}, nil); err == nil {
		t.Fatal("a secret under 32 bytes was taken")
	}
	now := time.Now()
	at := func(d time.Duration) func() time.Time { return func() time.Time { return now.Add(d) } }
	minter, _ := NewCustomerTokens([][]byte{secretNew}, at(0))
	tok, exp, err := minter.Mint("c-1", 1, time.Hour)
	if err != nil || exp.Sub(now) > time.Hour || exp.Sub(now) < 59*time.Minute {
		t.Fatalf("mint: %v, expires %s", err, exp)
	}
	for _, tt := range []struct {
		name  string
		clock time.Duration
		token string
		ok    bool
	}{
		{"fresh", 0, tok, true},
		{"within the leeway after expiry", time.Hour + 20*time.Second, tok, true},
		{"expired", time.Hour + time.Minute, tok, false},
		{"issued in the future", -10 * time.Minute, tok, false},
		{"payload changed", 0, tamper(tok), false},
		{"no signature", 0, tok[:strings.LastIndex(tok, ".")+1], false},
		{"garbage", 0, "not.a.token", false},
		{"empty", 0, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v, _ := NewCustomerTokens([][]byte{secretNew}, at(tt.clock))
			_, _, err := v.Verify(tt.token)
			if (err == nil) != tt.ok {
				t.Fatalf("verify: %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// tamper flips one character of a token's payload.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	b := []byte(parts[1])
	if b[5] == 'A' {
		b[5] = 'B'
	} else {
		b[5] = 'A'
	}
	parts[1] = string(b)
	return strings.Join(parts, ".")
}

// The cost a customer token adds to every app call: the first time a
// replica sees it, and every time after (an app sends the same token with
// each ping).
func BenchmarkVerifyToken(b *testing.B) {
	v, _ := NewCustomerTokens([][]byte{secretNew, secretOld}, nil)
	tok, _, _ := v.Mint("c-123456", 1, time.Hour)
	b.Run("first", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v.verified.reset()
			if _, _, err := v.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("again", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := v.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A token verified once is not trusted past its expiry, nor before its
// issue, for having been verified; a token changed by one byte is not the
// token that verified; and the verified tokens kept stay bounded.
func TestVerifiedTokensKeepTheirBounds(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	v, err := NewCustomerTokens([][]byte{secretNew}, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	tok, _, _ := v.Mint("c-1", 3, time.Hour)
	for i := 0; i < 2; i++ { // the second from what was kept
		if id, gen, err := v.Verify(tok); err != nil || id != "c-1" || gen != 3 {
			t.Fatalf("verify %d: %q %d %v", i, id, gen, err)
		}
	}
	if _, _, err := v.Verify(tamper(tok)); err == nil {
		t.Fatal("a changed token verified")
	}
	now = now.Add(time.Hour + tokenLeeway + time.Second)
	if _, _, err := v.Verify(tok); err == nil {
		t.Fatal("a token verified before verifies after its expiry")
	}
	now = now.Add(-2*time.Hour - 2*tokenLeeway)
	if _, _, err := v.Verify(tok); err == nil {
		t.Fatal("a token verified before verifies before it was issued")
	}
	// A token that is not valid before a time (nbf, as a company's backend
	// may set) is not taken from what was kept before that time either.
	now = now.Add(time.Hour)
	later := jwt.NewWithClaims(jwt.SigningMethodHS256, tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{Issuer: tokenIssuer, Audience: jwt.ClaimStrings{tokenAudience}, Subject: "c-2",
			IssuedAt: jwt.NewNumericDate(now.Add(-2 * time.Hour)), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))},
		Gen: 1,
	})
	later.Header["kid"] = keyID(secretNew)
	nbf, err := later.SignedString(secretNew)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.Verify(nbf); err != nil {
		t.Fatalf("a token within its times: %v", err)
	}
	now = now.Add(-tokenLeeway - time.Minute)
	if _, _, err := v.Verify(nbf); err == nil {
		t.Fatal("a token verified before verifies before its nbf")
	}
	now = now.Add(tokenLeeway + time.Minute)
	for i := range verifiedCacheSize + 10 {
		tok, _, _ := v.Mint(fmt.Sprint("c-", i), 1, time.Hour)
		if _, _, err := v.Verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := v.verified.len(); n > verifiedCacheSize {
		t.Fatalf("%d tokens kept, bound %d", n, verifiedCacheSize)
	}
}

// A token in use stays verified while others come and go past the bound,
// with its customer; one not seen for a generation is forgotten. (The
// signing keys are taken away at the end, so only a token kept verifies.)
func TestVerifiedTokensKeepWhatIsInUse(t *testing.T) {
	v, err := NewCustomerTokens([][]byte{secretNew}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v.verified.bound = 8
	hot, _, _ := v.Mint("c-hot", 2, time.Hour)
	var toks []string
	for i := range 40 {
		tok, _, _ := v.Mint(fmt.Sprint("c-", i), 1, time.Hour)
		toks = append(toks, tok)
		for _, tk := range []string{tok, hot} {
			if _, _, err := v.Verify(tk); err != nil {
				t.Fatalf("token %d: %v", i, err)
			}
		}
		if n := v.verified.len(); n > 8 {
			t.Fatalf("%d tokens kept, bound 8", n)
		}
	}
	clear(v.keys)
	if id, gen, err := v.Verify(hot); err != nil || id != "c-hot" || gen != 2 {
		t.Fatalf("the token in use: %q %d %v", id, gen, err)
	}
	if id, _, err := v.Verify(toks[39]); err != nil || id != "c-39" {
		t.Fatalf("the last token: %q %v", id, err)
	}
	if _, _, err := v.Verify(toks[0]); err == nil {
		t.Fatal("a token not seen for a generation is still kept")
	}
}

// A token whose times lie past 2262 (a company backend's "never
// expires") is kept verified like any other, and keeping a token again
// adds nothing to the arena of ids.
func TestVerifiedTokensFarFuture(t *testing.T) {
	v, err := NewCustomerTokens([][]byte{secretNew}, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	forever := jwt.NewWithClaims(jwt.SigningMethodHS256, tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{Issuer: tokenIssuer, Audience: jwt.ClaimStrings{tokenAudience}, Subject: "c-forever",
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(time.Unix(9999999999, 0))},
		Gen: 1,
	})
	forever.Header["kid"] = keyID(secretNew)
	tok, err := forever.SignedString(secretNew)
	if err != nil {
		t.Fatal(err)
	}
	if id, _, err := v.Verify(tok); err != nil || id != "c-forever" {
		t.Fatalf("first: %q %v", id, err)
	}
	arena := len(v.verified.newer.ids)
	v.verified.put(sha256.Sum256([]byte(tok)), "c-forever", verifiedToken{gen: 1, notBefore: math.MinInt64, until: math.MaxInt64})
	if got := len(v.verified.newer.ids); got != arena {
		t.Fatalf("keeping a token again grew the arena %d → %d bytes", arena, got)
	}
	clear(v.keys) // from here on only a kept token verifies
	if id, _, err := v.Verify(tok); err != nil || id != "c-forever" {
		t.Fatalf("a token expiring in 2286 was not kept: %q %v", id, err)
	}
}

// len is how many tokens are kept.
func (v *verifiedTokens) len() int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return len(v.newer.m) + len(v.older.m)
}

// reset forgets every token.
func (v *verifiedTokens) reset() {
	v.mu.Lock()
	v.newer, v.older = tokenGen{}, tokenGen{}
	v.mu.Unlock()
}
