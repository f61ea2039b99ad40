// Package push holds the engine's push senders: FCM, through
// firebase-admin-go's messaging client, and Log, which keeps pushes in
// memory for development (GET /v1/dev/pushes). Both satisfy
// engine.Sender; the outbox decides what to send and when.
package push

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"
	"google.golang.org/api/option"

	"github.com/nearcast/nearcast/engine"
)

// FCMConfig says how to reach Firebase Cloud Messaging.
type FCMConfig struct {
	// ProjectID is the Firebase project; taken from the credentials when empty.
	ProjectID string
	// Endpoint replaces FCM's base URL (…/v1), for an emulator or a test double.
	Endpoint string
	// CredentialsFile is a service-account file; without one, requests go
	// unauthenticated (only sensible with Endpoint).
	CredentialsFile string
	// TTL caps how long FCM keeps an undelivered push; 0 means until the
	// push's own expiry.
	TTL time.Duration
}

// FCM sends pushes through firebase-admin-go.
//
// firebase-admin-go retries a send by itself on network errors and on 503
// (UNAVAILABLE): up to 4 times, waiting 0.5 s, 1 s, 2 s and 4 s, or what
// the Retry-After header says (capped at 2 minutes). Other errors come back
// at once; the outbox retries transient ones later.
type FCM struct {
	client *messaging.Client
	ttl    time.Duration
}

var _ engine.Sender = (*FCM)(nil)

// NewFCM builds the messaging client.
func NewFCM(ctx context.Context, cfg FCMConfig) (*FCM, error) {
	var opts []option.ClientOption
	if cfg.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(cfg.Endpoint))
	}
	if cfg.CredentialsFile != "" {
		opts = append(opts, option.WithCredentialsFile(cfg.CredentialsFile))
	} else {
		opts = append(opts, option.WithoutAuthentication())
	}
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: cfg.ProjectID}, opts...)
	if err != nil {
		return nil, fmt.Errorf("firebase app: %w", err)
	}
	client, err := app.Messaging(ctx)
	if err != nil {
		return nil, fmt.Errorf("firebase messaging: %w", err)
	}
	return &FCM{client: client, ttl: cfg.TTL}, nil
}

// apnsCollapseIDMax is APNs' limit on apns-collapse-id, in bytes.
const apnsCollapseIDMax = 64

// Message is the FCM message for a push: a notification with the offer's
// text, the coupon in data, high priority, and a time to live that ends
// when the push loses its point, so a phone that was off does not get a
// stale coupon hours later (on Android, iOS and the web alike). The
// collapse key also tags the Android notification and is the APNs
// collapse id, so that a push delivered twice is shown once.
func (f *FCM) Message(p engine.Push, now time.Time) (*messaging.Message, error) {
	ttl := p.ExpiresAt.Sub(now).Truncate(time.Second)
	if f.ttl > 0 && ttl > f.ttl {
		ttl = f.ttl
	}
	if ttl <= 0 {
		return nil, &engine.PermanentError{Reason: "EXPIRED", Err: fmt.Errorf("push %s expired at %s", p.ID, p.ExpiresAt.Format(time.RFC3339))}
	}
	headers := map[string]string{
		"apns-priority":   "10",
		"apns-push-type":  "alert",
		"apns-expiration": strconv.FormatInt(now.Add(ttl).Unix(), 10),
	}
	if p.CollapseKey != "" {
		id := p.CollapseKey
		if len(id) > apnsCollapseIDMax {
			id = id[:apnsCollapseIDMax]
		}
		headers["apns-collapse-id"] = id
	}
	return &messaging.Message{
		Token:        p.Token,
		Notification: &messaging.Notification{Title: p.Title, Body: p.Body},
		Data:         p.Data,
		Android: &messaging.AndroidConfig{
			Priority:     "high",
			TTL:          &ttl,
			CollapseKey:  p.CollapseKey,
			Notification: &messaging.AndroidNotification{Tag: p.CollapseKey},
		},
		Webpush: &messaging.WebpushConfig{Headers: map[string]string{
			"TTL":     strconv.FormatInt(int64(ttl/time.Second), 10),
			"Urgency": "high",
		}},
		APNS: &messaging.APNSConfig{
			Headers: headers,
			Payload: &messaging.APNSPayload{Aps: &messaging.Aps{
				Alert: &messaging.ApsAlert{Title: p.Title, Body: p.Body},
				Sound: "default",
			}},
		},
	}, nil
}

// Send delivers one push and classifies FCM's answer for the outbox.
func (f *FCM) Send(ctx context.Context, p engine.Push) error {
	msg, err := f.Message(p, time.Now())
	if err != nil {
		return err
	}
	_, err = f.client.Send(ctx, msg)
	switch {
	case err == nil:
		return nil
	case messaging.IsUnregistered(err):
		return fmt.Errorf("%w: %v", engine.ErrUnregistered, err)
	case messaging.IsInvalidArgument(err):
		return &engine.PermanentError{Reason: "INVALID_ARGUMENT", Err: err}
	case messaging.IsSenderIDMismatch(err):
		return &engine.PermanentError{Reason: "SENDER_ID_MISMATCH", Err: err}
	case messaging.IsThirdPartyAuthError(err):
		return &engine.PermanentError{Reason: "THIRD_PARTY_AUTH_ERROR", Err: err}
	}
	if after, ok := retryAfter(errorutils.HTTPResponse(err)); ok {
		return &engine.RetryError{After: after, Err: err}
	}
	return fmt.Errorf("fcm send: %w", err)
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(resp *http.Response) (time.Duration, bool) {
	if resp == nil {
		return 0, false
	}
	v := resp.Header.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, time.Until(t)), true
	}
	return 0, false
}
