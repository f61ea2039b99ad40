package engine

import (
	"context"
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
