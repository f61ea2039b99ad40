package push_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/engine/push"
	"github.com/nearcast/nearcast/internal/fcmtest"
)

func newFCM(t *testing.T) (*push.FCM, *fcmtest.Server) {
	t.Helper()
	double := fcmtest.New(t)
	f, err := push.NewFCM(context.Background(), push.FCMConfig{ProjectID: "nearcast-test", Endpoint: double.URL(), TTL: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return f, double
}

func coupon(token string, expiresIn time.Duration) engine.Push {
	return engine.Push{
		ID: "K7QM2XPA9F3D", CustomerID: "c-42", DeviceID: "d-1", Token: token,
		Title: "Hallo Anna!", Body: "Alexanderplatz ist 47 m entfernt",
		Data:        map[string]string{"coupon_code": "K7QM2XPA9F3D", "rule_id": "latte", "store_id": "s-alex"},
		CollapseKey: "latte", ExpiresAt: time.Now().Add(expiresIn),
	}
}

func TestFCMSendsTheMessage(t *testing.T) {
	f, double := newFCM(t)
	p := coupon("tok-1", 5*time.Minute)
	if err := f.Send(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	msgs := double.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	if m.Project != "nearcast-test" || m.Token != "tok-1" || m.Title != p.Title || m.Body != p.Body {
		t.Fatalf("message %+v", m)
	}
	if m.Data["coupon_code"] != "K7QM2XPA9F3D" || m.Data["rule_id"] != "latte" || len(m.Data) != 3 {
		t.Fatalf("data %v", m.Data)
	}
	// TTL ends with the push's own expiry (5 min), below the 10 min cap.
	ttl, _ := strconv.Atoi(m.AndroidTTL[:len(m.AndroidTTL)-1])
	if ttl < 295 || ttl > 300 || m.AndroidPriority != "high" || m.CollapseKey != "latte" || m.AndroidTag != "latte" {
		t.Fatalf("android: ttl %s priority %s collapse %s tag %s", m.AndroidTTL, m.AndroidPriority, m.CollapseKey, m.AndroidTag)
	}
	if wt, _ := strconv.Atoi(m.WebpushHeaders["TTL"]); wt < 295 || wt > 300 || m.WebpushHeaders["Urgency"] != "high" {
		t.Fatalf("webpush headers %v", m.WebpushHeaders)
	}
	exp, _ := strconv.ParseInt(m.APNSHeaders["apns-expiration"], 10, 64)
	if m.APNSHeaders["apns-priority"] != "10" || m.APNSHeaders["apns-collapse-id"] != "latte" || exp < time.Now().Add(290*time.Second).Unix() {
		t.Fatalf("apns headers %v", m.APNSHeaders)
	}
	if double.Rejected() != 0 {
		t.Fatal("the double refused a request")
	}
	// A push that lives longer than the TTL setting is capped to it.
	if err := f.Send(context.Background(), coupon("tok-2", time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := double.MessagesFor("tok-2")[0].AndroidTTL; got != "600s" {
		t.Fatalf("ttl %s, want 600s", got)
	}
}

func TestFCMErrors(t *testing.T) {
	tests := []struct {
		code                    string
		permanent               string // the PermanentError reason, if any
		unregistered, transient bool
	}{
		{code: "UNREGISTERED", unregistered: true},
		{code: "INVALID_ARGUMENT", permanent: "INVALID_ARGUMENT"},
		{code: "SENDER_ID_MISMATCH", permanent: "SENDER_ID_MISMATCH"},
		{code: "THIRD_PARTY_AUTH_ERROR", permanent: "THIRD_PARTY_AUTH_ERROR"},
		{code: "QUOTA_EXCEEDED", transient: true},
		{code: "INTERNAL", transient: true},
		{code: "UNAVAILABLE", transient: true},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			t.Parallel()
			f, double := newFCM(t)
			// UNAVAILABLE is retried inside firebase-admin-go (4 retries), so
			// it must fail more often than that to reach us.
			double.FailToken("tok", tt.code, 0)
			err := f.Send(context.Background(), coupon("tok", time.Minute))
			var perm *engine.PermanentError
			switch {
			case tt.unregistered:
				if !errors.Is(err, engine.ErrUnregistered) {
					t.Fatalf("err %v, want ErrUnregistered", err)
				}
			case tt.permanent != "":
				if !errors.As(err, &perm) || perm.Reason != tt.permanent {
					t.Fatalf("err %v, want PermanentError %s", err, tt.permanent)
				}
			case tt.transient:
				if err == nil || errors.As(err, &perm) || errors.Is(err, engine.ErrUnregistered) {
					t.Fatalf("err %v, want a transient error", err)
				}
			}
			if len(double.Messages()) != 0 {
				t.Fatal("a failed send was recorded as delivered")
			}
		})
	}
}

func TestFCMRetriesUnavailableAndHonoursRetryAfter(t *testing.T) {
	f, double := newFCM(t)
	double.FailTokenRetryAfter("tok", "UNAVAILABLE", 1, 1)
	start := time.Now()
	if err := f.Send(context.Background(), coupon("tok", time.Minute)); err != nil {
		t.Fatalf("send after one UNAVAILABLE: %v", err)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Fatalf("retried after %v, before Retry-After's 1 s", waited)
	}
	if len(double.Messages()) != 1 {
		t.Fatal("the retry did not arrive")
	}
	// QUOTA_EXCEEDED is left to the outbox: fails now, succeeds later.
	double.FailToken("tok", "QUOTA_EXCEEDED", 1)
	if err := f.Send(context.Background(), coupon("tok", time.Minute)); err == nil {
		t.Fatal("QUOTA_EXCEEDED did not fail")
	}
	if err := f.Send(context.Background(), coupon("tok", time.Minute)); err != nil {
		t.Fatalf("the next try: %v", err)
	}
}

func TestExpiredPushIsNotSent(t *testing.T) {
	f, double := newFCM(t)
	var perm *engine.PermanentError
	if err := f.Send(context.Background(), coupon("tok", -time.Second)); !errors.As(err, &perm) || perm.Reason != "EXPIRED" {
		t.Fatalf("err %v", err)
	}
	l := push.NewLog(10, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := l.Send(context.Background(), coupon("tok", -time.Second)); !errors.As(err, &perm) {
		t.Fatalf("log sender: %v", err)
	}
	if len(double.Messages()) != 0 || len(l.Pushes("")) != 0 {
		t.Fatal("an expired push was sent")
	}
}

func TestLogKeepsNewestPushes(t *testing.T) {
	l := push.NewLog(3, slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	l.Now = func() time.Time { return now }
	for i, cust := range []string{"a", "b", "a", "a", "b"} {
		p := coupon("tok", time.Hour)
		p.ExpiresAt = now.Add(time.Hour)
		p.ID, p.CustomerID = strconv.Itoa(i), cust
		if err := l.Send(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(ps []engine.Push) (s string) {
		for _, p := range ps {
			s += p.ID
		}
		return s
	}
	if got := ids(l.Pushes("")); got != "234" {
		t.Fatalf("kept %s, want the newest three, oldest first: 234", got)
	}
	if got := ids(l.Pushes("a")); got != "23" {
		t.Fatalf("customer a: %s", got)
	}
	if p := l.Pushes("b")[0]; !p.SentAt.Equal(now) {
		t.Fatalf("sent_at %v", p.SentAt)
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				p := coupon("tok", time.Hour)
				p.ExpiresAt = now.Add(time.Hour)
				l.Send(context.Background(), p)
				l.Pushes("c-42")
			}
		}()
	}
	wg.Wait()
	if n := len(l.Pushes("")); n != 3 {
		t.Fatalf("kept %d", n)
	}
}
