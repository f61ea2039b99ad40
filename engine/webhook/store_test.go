package webhook_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nearcast/nearcast/engine/webhook"
	"github.com/nearcast/nearcast/internal/hooktest"
	"github.com/nearcast/nearcast/internal/redistest"
	"github.com/nearcast/nearcast/rules"
)

// Every save is a version, kept (the last MaxVersions) without its
// secret, as rules keep theirs; a save without a secret keeps the one the
// subscription had.
func TestVersionsKept(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			ctx := context.Background()
			st := webhook.NewStore(be.New(t))
			if _, err := st.Versions(ctx, "crm"); !errors.Is(err, webhook.ErrNotFound) {
				t.Fatalf("versions of nothing: %v", err)
			}
			s := &webhook.Subscription{ID: "crm", URL: "https://crm.example.com/v1", Events: []string{"enter"}, Enabled: true}
			if _, err := st.Put(ctx, s, 0); err != nil {
				t.Fatal(err)
			}
			secret := s.Secret
			next := &webhook.Subscription{ID: "crm", URL: "https://crm.example.com/v2", Events: []string{"enter", "exit"}, Enabled: true}
			if _, err := st.Put(ctx, next, 1); err != nil {
				t.Fatal(err)
			}
			if next.Secret != secret {
				t.Error("a save without a secret changed it")
			}
			if got, _ := st.Get(ctx, "crm"); got.Secret != secret {
				t.Error("the saved secret changed")
			}
			vs, err := st.Versions(ctx, "crm")
			if err != nil || len(vs) != 2 || vs[0].Version != 1 || vs[0].URL != "https://crm.example.com/v1" || vs[1].Version != 2 {
				t.Fatalf("versions: %+v %v", vs, err)
			}
			for _, v := range vs {
				if v.Secret != "" {
					t.Errorf("version %d keeps the secret", v.Version)
				}
			}
			// A new secret is a new version like any change.
			rotated := *next
			rotated.Secret = webhook.NewSecret()
			if _, err := st.Put(ctx, &rotated, 2); err != nil {
				t.Fatal(err)
			}
			if got, _ := st.Get(ctx, "crm"); got.Secret != rotated.Secret {
				t.Error("the new secret was not saved")
			}
			for i := 0; i < webhook.MaxVersions+5; i++ {
				if _, err := st.Put(ctx, &webhook.Subscription{ID: "crm", URL: "https://crm.example.com/v", Events: []string{"enter"}}, 0); err != nil {
					t.Fatal(err)
				}
			}
			vs, _ = st.Versions(ctx, "crm")
			if len(vs) != webhook.MaxVersions || vs[len(vs)-1].Version != int64(webhook.MaxVersions+8) || vs[0].Version != 9 {
				t.Fatalf("%d versions kept, %d to %d", len(vs), vs[0].Version, vs[len(vs)-1].Version)
			}
			// Deleted, its versions stay, and a new one continues them.
			if err := st.Delete(ctx, "crm"); err != nil {
				t.Fatal(err)
			}
			if vs, err := st.Versions(ctx, "crm"); err != nil || len(vs) != webhook.MaxVersions {
				t.Fatalf("after delete: %d %v", len(vs), err)
			}
			again := &webhook.Subscription{ID: "crm", URL: "https://crm.example.com/again", Events: []string{"enter"}}
			if created, err := st.Put(ctx, again, 0); err != nil || !created || again.Version != int64(webhook.MaxVersions+9) || again.Secret == rotated.Secret {
				t.Fatalf("again: %v %v v%d", created, err, again.Version)
			}
		})
	}
}

// A test event reaches the one subscription it was sent to, signed,
// whatever events that subscription asks for; other subscriptions never
// see it.
func TestSendTest(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			e := newEnv(t, be.New(t))
			ctx := context.Background()
			secret, otherSecret := webhook.NewSecret(), webhook.NewSecret()
			r, other := hooktest.New(t, secret), hooktest.New(t, otherSecret)
			e.subscribe(t, "till", r, secret, webhook.TypeCouponRedeemed)
			e.subscribe(t, "crm", other, otherSecret)
			d, _ := e.deliver(t, testConfig())
			id, err := e.store.SendTest(ctx, "till")
			if err != nil {
				t.Fatal(err)
			}
			if err := r.WaitAccepted(1, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			q := r.Accepted()[0]
			if q.VerifyErr != nil || q.ID != id || q.Event.Type != webhook.TypeTest || q.Event.Data["subscription_id"] != "till" {
				t.Fatalf("test event %+v", q)
			}
			eventually(t, "delivered", func() bool { return d.Health()["till"].Delivered == 1 })
			time.Sleep(100 * time.Millisecond)
			if n := len(other.Requests()); n != 0 {
				t.Errorf("another subscription got %d requests", n)
			}
			if h, _ := e.store.Health(ctx, "till"); h.Lag != 0 || h.Pending != 0 {
				t.Errorf("health after the test: %+v", h)
			}

			if _, err := e.store.SendTest(ctx, "nobody"); !errors.Is(err, webhook.ErrNotFound) {
				t.Errorf("unknown subscription: %v", err)
			}
			paused := &webhook.Subscription{ID: "paused", URL: r.URL(), Events: []string{"enter"}, Secret: secret}
			if _, err := e.store.Put(ctx, paused, 0); err != nil {
				t.Fatal(err)
			}
			var ve *rules.ValidationError
			if _, err := e.store.SendTest(ctx, "paused"); !errors.As(err, &ve) || ve.Faults[0].Field != "enabled" || !ve.Precondition() {
				t.Errorf("a disabled subscription: %v", err)
			}
		})
	}
}

func TestTestEventIsNoSubscribableType(t *testing.T) {
	s := webhook.Subscription{ID: "a", URL: "https://x.example/h", Events: []string{webhook.TypeTest}}
	var ve *rules.ValidationError
	if err := s.Normalize(); !errors.As(err, &ve) || ve.Faults[0].Field != "events[0]" {
		t.Errorf("webhook.test subscribed: %v", err)
	}
	if !webhook.KnownType(webhook.TypeTest) {
		t.Error("an event of type webhook.test would be refused")
	}
	narrow := webhook.Subscription{Events: []string{"enter"}, StoreIDs: []string{"s-1"}}
	if !narrow.Wants(&webhook.Event{Type: webhook.TypeTest}, nil) {
		t.Error("a test event filtered out")
	}
}
