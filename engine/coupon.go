package engine

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"strings"
)

// Coupon codes are 12 characters of Crockford's base32 (no I, L, O or U,
// so a cashier cannot misread them): 8 random characters (40 bits) and a
// 4-character HMAC tag (20 bits) that tells a forged code from one the
// engine issued without a Redis lookup.
var crockford = base32.NewEncoding("0123456789ABCDEFGHJKMNPQRSTVWXYZ").WithPadding(base32.NoPadding)

const (
	codeRandomLen = 8
	codeTagLen    = 4
	// CouponCodeLen is the length of a coupon code.
	CouponCodeLen = codeRandomLen + codeTagLen
)

// CodeSigner issues and checks signed coupon codes.
type CodeSigner struct {
	secret []byte
}

// NewCodeSigner returns a code issuer signing with secret.
func NewCodeSigner(secret []byte) *CodeSigner { return &CodeSigner{secret: secret} }

// NewCode returns a fresh, signed coupon code.
func (c *CodeSigner) NewCode() string {
	var b [5]byte
	_, _ = rand.Read(b[:]) // never fails on supported platforms
	random := crockford.EncodeToString(b[:])
	return random + c.tag(random)
}

// Valid reports whether code is well-formed and signed with this secret.
// Lower case and dashes, as people type them, are accepted.
func (c *CodeSigner) Valid(code string) bool {
	code = NormalizeCode(code)
	if len(code) != CouponCodeLen {
		return false
	}
	return hmac.Equal([]byte(code[codeRandomLen:]), []byte(c.tag(code[:codeRandomLen])))
}

// NormalizeCode upper-cases a typed code and drops dashes and spaces.
func NormalizeCode(code string) string {
	return strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(code))
}

func (c *CodeSigner) tag(random string) string {
	m := hmac.New(sha256.New, c.secret)
	m.Write([]byte(random))
	return crockford.EncodeToString(m.Sum(nil))[:codeTagLen]
}
