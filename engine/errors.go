package engine

import (
	"errors"
	"fmt"
	"time"

	"github.com/nearcast/nearcast/rules"
)

// ErrUnavailable wraps a failure of Redis: the caller may retry later.
// It is rules.ErrUnavailable, which the catalog reports too.
var ErrUnavailable = rules.ErrUnavailable

// RateLimitError is a call over a customer's, a device's or a
// credential's limit; it changed nothing.
type RateLimitError struct {
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("too many calls for this customer, device or key; retry in %s", e.RetryAfter.Round(time.Second))
}

// ErrNoSnapshot means the catalog has not been loaded yet.
var ErrNoSnapshot = errors.New("no catalog snapshot loaded yet")

// ErrRevoked is a call whose customer token was revoked (by the operator,
// or by the customer's erasure) after it was minted.
var ErrRevoked = errors.New("the customer token was revoked")

// Errors of a redemption, beside rules.ErrNotFound (a code the engine did
// not issue, or whose record has gone).
var (
	ErrRedeemed = errors.New("coupon already redeemed")
	ErrExpired  = errors.New("coupon expired")
	// ErrNotACoupon is a feedback question's id presented as a coupon.
	ErrNotACoupon = errors.New("a feedback question is answered, not redeemed")
)

// Errors of a feedback answer, beside rules.ErrNotFound (no question of
// that id for that customer).
var (
	ErrAnswered = errors.New("this question was answered already")
	ErrLate     = errors.New("this question can no longer be answered: answers are taken for 7 days")
)

// WrongStoreError is a coupon presented at a store other than the one it
// is good at.
type WrongStoreError struct{ Store string }

func (e *WrongStoreError) Error() string {
	return fmt.Sprintf("this coupon is good only at store %s", e.Store)
}

// ErrUnregistered reports a device token that the push service no longer
// knows (FCM's UNREGISTERED): the token is removed from the customer.
var ErrUnregistered = errors.New("device token unregistered")

// PermanentError is a push the push service refuses for good
// (FCM's INVALID_ARGUMENT, SENDER_ID_MISMATCH, THIRD_PARTY_AUTH_ERROR).
// Such a push goes to the dead-letter stream with Reason.
type PermanentError struct {
	Reason string // e.g. "INVALID_ARGUMENT"
	Err    error
}

func (e *PermanentError) Error() string { return fmt.Sprintf("push refused (%s): %v", e.Reason, e.Err) }

func (e *PermanentError) Unwrap() error { return e.Err }

// RetryError is a transient failure for which the push service said when
// to try again (FCM's Retry-After).
type RetryError struct {
	After time.Duration
	Err   error
}

func (e *RetryError) Error() string { return fmt.Sprintf("retry after %v: %v", e.After, e.Err) }

func (e *RetryError) Unwrap() error { return e.Err }
