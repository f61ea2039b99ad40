package engine

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Push is one coupon notification on its way to one device. It is what the
// decision writes to the outbox and what a Sender delivers.
type Push struct {
	// ID is the coupon code: one push per coupon, so it doubles as the
	// idempotency key of the delivery.
	ID         string            `json:"id"`
	CustomerID string            `json:"customer_id"`
	DeviceID   string            `json:"device_id"`
	Token      string            `json:"token,omitempty"`
	Platform   string            `json:"platform,omitempty"`
	Title      string            `json:"title"`
	Body       string            `json:"body"`
	Data       map[string]string `json:"data"`
	// CollapseKey groups pushes of one rule on the device (Android
	// collapse_key, APNs apns-collapse-id).
	CollapseKey string `json:"collapse_key,omitempty"`
	// ExpiresAt is when the push loses its point (coupon expiry or push
	// TTL, whichever is sooner): it is never delivered after that.
	ExpiresAt time.Time `json:"expires_at"`
	CreatedAt time.Time `json:"created_at"`
	SentAt    time.Time `json:"sent_at,omitempty"`
	// Attempts counts the failed tries so far.
	Attempts int `json:"attempts,omitempty"`
}

// Sender delivers one push. The FCM and log senders in engine/push
// satisfy it. An error wrapping ErrUnregistered means the device token is
// dead; a *PermanentError means the push can never be delivered as it is;
// any other error is transient and the push is tried again.
type Sender interface {
	Send(ctx context.Context, p Push) error
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
