package engine_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/internal/fcmtest"
	"github.com/nearcast/nearcast/internal/redistest"
	"github.com/nearcast/nearcast/rules"
)

// legacyOwnerKey is where earlier releases kept the device an FCM token
// belongs to: a key of its own.
func legacyOwnerKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "nc:fcmtoken:" + hex.EncodeToString(sum[:])
}

// setOwner writes the device an FCM token belongs to ("customer\ndevice"),
// where this release keeps it or, legacy, where earlier ones did.
func setOwner(t *testing.T, rdb redis.UniversalClient, token, holder string, legacy bool) {
	t.Helper()
	ctx := context.Background()
	key, field := engine.TokenOwnerOf(token)
	var err error
	if legacy {
		err = rdb.HDel(ctx, key, field).Err()
		if err == nil {
			err = rdb.Set(ctx, legacyOwnerKey(token), holder, 0).Err()
		}
	} else {
		err = rdb.HSet(ctx, key, field, holder).Err()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// toLegacy moves a token's owner where earlier releases kept it, as an
// upgrade finds it.
func toLegacy(t *testing.T, rdb redis.UniversalClient, token string) {
	t.Helper()
	key, field := engine.TokenOwnerOf(token)
	holder, err := rdb.HGet(context.Background(), key, field).Result()
	if err != nil {
		t.Fatalf("the owner of %s: %v", token, err)
	}
	setOwner(t, rdb, token, holder, true)
}

// tokenOwner is the device an FCM token belongs to, as "customer/device",
// or "" when it has no owner: the owners' hash says, else the key of its
// own an earlier release kept. Never both: that would be two owners.
func tokenOwner(t *testing.T, rdb redis.UniversalClient, token string) string {
	t.Helper()
	ctx := context.Background()
	key, field := engine.TokenOwnerOf(token)
	v, err := rdb.HGet(ctx, key, field).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	old, err := rdb.Get(ctx, legacyOwnerKey(token)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	if v != "" && old != "" {
		t.Fatalf("%s has two owners: %q in the hash, %q in its own key", token, v, old)
	}
	return strings.Replace(v+old, "\n", "/", 1)
}

// holdings lists a customer's devices as "device:token", sorted.
func holdings(t *testing.T, f *fixture, customerID string) []string {
	t.Helper()
	ds, err := f.cust.Devices(context.Background(), customerID)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, d := range ds {
		out = append(out, d.ID+":"+d.FCMToken)
	}
	slices.Sort(out)
	return out
}

// seenDevices lists the devices whose stamps (when each was last seen)
// a customer's devices hash holds, sorted.
func seenDevices(t *testing.T, f *fixture, customerID string) []string {
	t.Helper()
	fields, err := f.rdb.HKeys(context.Background(), "nc:{c:"+customerID+"}:devices").Result()
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, field := range fields {
		if id, ok := strings.CutPrefix(field, "#seen:"); ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// A device id names a device of one customer only. Whoever registers
// "d-1" for another customer with another token gets a device of their
// own: c-42's d-1, its token and its pushes stay as they were.
func TestDeviceIDAloneMovesNothing(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			f := newRealClockFixtureOn(t, be.New(t))
			ctx := context.Background()
			addCustomer(t, f, "c-evil")
			created, err := f.cust.PutDevice(ctx, "c-evil", &rules.Device{ID: "d-1", FCMToken: "tok-evil", Platform: "android"})
			if err != nil || !created {
				t.Fatalf("PutDevice: %v, %v", created, err)
			}
			if got := holdings(t, f, "c-42"); !slices.Equal(got, []string{"d-1:tok-1"}) {
				t.Fatalf("c-42's devices %v, want d-1 with tok-1 untouched", got)
			}
			if got := tokenOwner(t, f.rdb, "tok-1"); got != "c-42/d-1" {
				t.Fatalf("tok-1 belongs to %q, want c-42/d-1", got)
			}
			double := runDispatcher(t, f, nil)
			o := f.realClockPing(t, "d-1")
			eventually(t, "c-42's push", func() bool { return len(double.Messages()) == 1 })
			eventually(t, "the outbox to empty", func() bool { return undelivered(t, f.rdb) == 0 })
			if m := double.Messages()[0]; m.Token != "tok-1" || m.Data["coupon_code"] != o.CouponCode {
				t.Fatalf("c-42's push went to %s (%+v), want tok-1", m.Token, m)
			}
			if n := len(double.MessagesFor("tok-evil")); n != 0 {
				t.Fatalf("%d of c-42's pushes reached the attacker's token", n)
			}
		})
	}
}

// One FCM token, one device of one customer: registering a token takes
// it from the device that had it, and a device's new token lets the old
// one go.
func TestDeviceTokenClaims(t *testing.T) {
	tests := []struct {
		name       string
		customerID string
		device     rules.Device
		created    bool
		c42, c7    []string          // devices after, "device:token"
		c42Seen    []string          // the devices c-42's stamps name after
		owners     map[string]string // token → "customer/device" ("" none)
		stale      map[string]string // owner keys written first, as a step cut short may leave them
	}{
		{"another customer's device id with another token", "c-7", rules.Device{ID: "d-1", FCMToken: "tok-7"}, true,
			[]string{"d-1:tok-1"}, []string{"d-1:tok-7"}, []string{"d-1"}, map[string]string{"tok-1": "c-42/d-1", "tok-7": "c-7/d-1"}, nil},
		{"re-login: the token under another customer and device id", "c-7", rules.Device{ID: "d-5", FCMToken: "tok-1"}, true,
			[]string{}, []string{"d-5:tok-1"}, []string{}, map[string]string{"tok-1": "c-7/d-5"}, nil},
		{"re-login: the token under another customer, same device id", "c-7", rules.Device{ID: "d-1", FCMToken: "tok-1"}, true,
			[]string{}, []string{"d-1:tok-1"}, []string{}, map[string]string{"tok-1": "c-7/d-1"}, nil},
		{"the token under another device id of the same customer", "c-42", rules.Device{ID: "d-9", FCMToken: "tok-1"}, true,
			[]string{"d-9:tok-1"}, []string{}, []string{}, map[string]string{"tok-1": "c-42/d-9"}, nil},
		{"a new token for the device releases the old one", "c-42", rules.Device{ID: "d-1", FCMToken: "tok-2"}, false,
			[]string{"d-1:tok-2"}, []string{}, []string{"d-1"}, map[string]string{"tok-1": "", "tok-2": "c-42/d-1"}, nil},
		{"the same device and token again", "c-42", rules.Device{ID: "d-1", FCMToken: "tok-1"}, false,
			[]string{"d-1:tok-1"}, []string{}, []string{"d-1"}, map[string]string{"tok-1": "c-42/d-1"}, nil},
		{"an owner key naming a device without its token takes nothing", "c-7", rules.Device{ID: "d-5", FCMToken: "tok-9"}, true,
			[]string{"d-1:tok-1"}, []string{"d-5:tok-9"}, []string{"d-1"}, map[string]string{"tok-1": "c-42/d-1", "tok-9": "c-7/d-5"},
			map[string]string{"tok-9": "c-42\nd-1"}},
	}
	for _, be := range redistest.Backends(srv) {
		for _, tt := range tests {
			for _, legacy := range []bool{false, true} {
				name := be.Name + "/" + tt.name
				if legacy {
					name += ", owners where an earlier release kept them"
				}
				t.Run(name, func(t *testing.T) {
					f := setup(t, be.New(t))
					ctx := context.Background()
					addCustomer(t, f, "c-7")
					f.ping(t, 300, engine.Options{}) // far from any store: d-1 is seen
					if legacy {
						toLegacy(t, f.rdb, "tok-1")
					}
					for tok, holder := range tt.stale {
						setOwner(t, f.rdb, tok, holder, legacy)
					}
					if got := seenDevices(t, f, "c-42"); !slices.Equal(got, []string{"d-1"}) {
						t.Fatalf("c-42's stamps %v before, want d-1", got)
					}
					d := tt.device
					d.Platform = "ios"
					created, err := f.cust.PutDevice(ctx, tt.customerID, &d)
					if err != nil || created != tt.created {
						t.Fatalf("PutDevice: %v, %v; want %v", created, err, tt.created)
					}
					if got := holdings(t, f, "c-42"); !slices.Equal(got, tt.c42) {
						t.Fatalf("c-42's devices %v, want %v", got, tt.c42)
					}
					if got := holdings(t, f, "c-7"); !slices.Equal(got, tt.c7) {
						t.Fatalf("c-7's devices %v, want %v", got, tt.c7)
					}
					if got := seenDevices(t, f, "c-42"); !slices.Equal(got, tt.c42Seen) {
						t.Fatalf("c-42's stamps %v, want %v", got, tt.c42Seen)
					}
					for tok, want := range tt.owners {
						if got := tokenOwner(t, f.rdb, tok); got != want {
							t.Fatalf("%s belongs to %q, want %q", tok, got, want)
						}
					}
				})
			}
		}
	}
}

// A device that goes (deleted, its customer erased, its token found
// unregistered by FCM) releases its token's owner key, unless that key
// names another device by then (a move cut short after the key was
// claimed), which keeps it.
func TestDeviceTokenReleases(t *testing.T) {
	acts := []struct {
		name string
		do   func(t *testing.T, f *fixture)
	}{
		{"device deleted", func(t *testing.T, f *fixture) {
			if err := f.cust.DeleteDevice(context.Background(), "c-42", "d-1"); err != nil {
				t.Fatal(err)
			}
		}},
		{"customer erased", func(t *testing.T, f *fixture) {
			if err := f.cust.Delete(context.Background(), "c-42"); err != nil {
				t.Fatal(err)
			}
		}},
		{"token unregistered", func(t *testing.T, f *fixture) {
			double := fcmtest.New(t)
			double.FailToken("tok-1", "UNREGISTERED", 0)
			runDispatcherOn(t, f, double, nil)
			eventually(t, "the push to be dropped", func() bool { return undelivered(t, f.rdb) == 0 })
			if dead := deadReasons(t, f); len(dead) != 1 || dead[0] != "unregistered" {
				t.Fatalf("dead letters %v", dead)
			}
		}},
	}
	for _, be := range redistest.Backends(srv) {
		for _, act := range acts {
			for _, c := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
				other, legacy := c[0], c[1]
				name := be.Name + "/" + act.name
				if other {
					name += ", owner key naming another device"
				}
				if legacy {
					name += ", where an earlier release kept it"
				}
				t.Run(name, func(t *testing.T) {
					f := newRealClockFixtureOn(t, be.New(t))
					f.realClockPing(t, "d-1") // d-1 seen, a push queued for it
					want := ""
					switch {
					case other:
						setOwner(t, f.rdb, "tok-1", "c-7\nd-5", legacy)
						want = "c-7/d-5"
					case legacy:
						toLegacy(t, f.rdb, "tok-1")
					}
					act.do(t, f)
					if got := holdings(t, f, "c-42"); len(got) != 0 {
						t.Fatalf("c-42 still has %v", got)
					}
					if got := seenDevices(t, f, "c-42"); len(got) != 0 {
						t.Fatalf("c-42's stamps still name %v", got)
					}
					if got := tokenOwner(t, f.rdb, "tok-1"); got != want {
						t.Fatalf("tok-1 belongs to %q, want %q", got, want)
					}
				})
			}
		}
	}
}

// A customer without a profile (never created, or erased) gets no key
// from a device registration, not even by naming another customer's
// token, and the same answer as a customer who has one.
func TestDeviceWithoutProfileStoresNothing(t *testing.T) {
	tests := []struct {
		name       string
		customerID string
		prepare    func(t *testing.T, f *fixture)
	}{
		{"never created", "c-nobody", func(*testing.T, *fixture) {}},
		{"erased", "c-gone", func(t *testing.T, f *fixture) {
			ctx := context.Background()
			addCustomer(t, f, "c-gone")
			if _, err := f.cust.PutDevice(ctx, "c-gone", &rules.Device{ID: "d-3", FCMToken: "tok-gone", Platform: "ios"}); err != nil {
				t.Fatal(err)
			}
			if err := f.cust.Delete(ctx, "c-gone"); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, be := range redistest.Backends(srv) {
		for _, tt := range tests {
			t.Run(be.Name+"/"+tt.name, func(t *testing.T) {
				f := setup(t, be.New(t))
				ctx := context.Background()
				tt.prepare(t, f)
				addCustomer(t, f, "c-7")
				type answer struct {
					created bool
					err     error
				}
				register := func(customerID string, d rules.Device) answer {
					created, err := f.cust.PutDevice(ctx, customerID, &d)
					return answer{created, err}
				}
				registrations := []rules.Device{
					{ID: "d-3", FCMToken: "tok-3", Platform: "ios"},
					{ID: "d-1", FCMToken: "tok-1", Platform: "android"}, // c-42's token
				}
				var known []answer
				for _, d := range registrations {
					d.FCMToken += "-c7"
					known = append(known, register("c-7", d))
				}
				before := dumpRedis(t, f.rdb)
				for i, d := range registrations {
					if got := register(tt.customerID, d); got != known[i] {
						t.Fatalf("registering %s/%s answered %+v, a customer with a profile %+v", tt.customerID, d.ID, got, known[i])
					}
				}
				n, err := f.cust.PutDevices(ctx, []string{tt.customerID, tt.customerID},
					[]*rules.Device{{ID: "d-4", FCMToken: "tok-4", Platform: "web"}, {ID: "d-1", FCMToken: "tok-1", Platform: "android"}})
				if n != 2 || err != nil {
					t.Fatalf("PutDevices: %d, %v; want 2, nil", n, err)
				}
				if after := dumpRedis(t, f.rdb); !slices.Equal(after, before) {
					t.Fatalf("Redis changed:\nbefore %v\nafter  %v", before, after)
				}
				if got := holdings(t, f, "c-42"); !slices.Equal(got, []string{"d-1:tok-1"}) || tokenOwner(t, f.rdb, "tok-1") != "c-42/d-1" {
					t.Fatalf("c-42's devices %v, tok-1 belongs to %q", got, tokenOwner(t, f.rdb, "tok-1"))
				}
			})
		}
	}
}

// PutDevices, which loads customers in bulk, registers as PutDevice
// does: a token moves with it, a customer without a profile gets nothing.
func TestPutDevicesClaimsTokens(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			f := setup(t, be.New(t))
			ctx := context.Background()
			addCustomer(t, f, "c-7")
			n, err := f.cust.PutDevices(ctx, []string{"c-7", "c-nobody", "c-42"}, []*rules.Device{
				{ID: "d-5", FCMToken: "tok-1", Platform: "ios"},
				{ID: "d-6", FCMToken: "tok-6", Platform: "ios"},
				{ID: "d-2", FCMToken: "tok-2", Platform: "android"},
			})
			if n != 3 || err != nil {
				t.Fatalf("PutDevices: %d, %v", n, err)
			}
			for _, c := range []struct {
				customer string
				want     []string
			}{{"c-42", []string{"d-2:tok-2"}}, {"c-7", []string{"d-5:tok-1"}}, {"c-nobody", []string{}}} {
				if got := holdings(t, f, c.customer); !slices.Equal(got, c.want) {
					t.Fatalf("%s's devices %v, want %v", c.customer, got, c.want)
				}
			}
			for tok, want := range map[string]string{"tok-1": "c-7/d-5", "tok-2": "c-42/d-2", "tok-6": ""} {
				if got := tokenOwner(t, f.rdb, tok); got != want {
					t.Fatalf("%s belongs to %q, want %q", tok, got, want)
				}
			}
		})
	}
}

// dumpRedis lists every key with its type and value, sorted.
func dumpRedis(t *testing.T, rdb redis.UniversalClient) []string {
	t.Helper()
	ctx := context.Background()
	keys, err := redistest.Keys(ctx, rdb, "*")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range keys {
		var v any
		switch typ := rdb.Type(ctx, k).Val(); typ {
		case "string":
			v = rdb.Get(ctx, k).Val()
		case "hash":
			v = rdb.HGetAll(ctx, k).Val()
		case "set":
			m := rdb.SMembers(ctx, k).Val()
			slices.Sort(m)
			v = m
		case "zset":
			v = rdb.ZRangeWithScores(ctx, k, 0, -1).Val()
		case "list":
			v = rdb.LRange(ctx, k, 0, -1).Val()
		case "stream":
			v = rdb.XRange(ctx, k, "-", "+").Val()
		default:
			t.Fatalf("key %s of type %s is not dumped", k, typ)
		}
		out = append(out, fmt.Sprintf("%s=%v", k, v))
	}
	slices.Sort(out)
	return out
}

// An upgrade finds each token's owner in a key of its own. The first
// start moves every one into the owners' hashes, once: each token keeps
// its owner, the old keys go, what is not an owner key stays, and the
// tokens are claimed and released as any other.
func TestMigrateTokenOwners(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			f := setup(t, be.New(t))
			ctx := context.Background()
			addCustomer(t, f, "c-7")
			if _, err := f.cust.PutDevice(ctx, "c-7", &rules.Device{ID: "d-5", FCMToken: "tok-5", Platform: "android"}); err != nil {
				t.Fatal(err)
			}
			toLegacy(t, f.rdb, "tok-1")
			toLegacy(t, f.rdb, "tok-5")
			if err := f.rdb.Set(ctx, "nc:fcmtoken:not-a-hash", "x", 0).Err(); err != nil {
				t.Fatal(err)
			}
			moved, err := f.cust.MigrateTokenOwners(ctx)
			if err != nil || moved != 2 {
				t.Fatalf("MigrateTokenOwners: %d, %v; want 2 moved", moved, err)
			}
			for tok, want := range map[string]string{"tok-1": "c-42/d-1", "tok-5": "c-7/d-5"} {
				if got := tokenOwner(t, f.rdb, tok); got != want {
					t.Fatalf("%s belongs to %q, want %q", tok, got, want)
				}
				if n := f.rdb.Exists(ctx, legacyOwnerKey(tok)).Val(); n != 0 {
					t.Fatalf("%s's old owner key is still there", tok)
				}
			}
			if v := f.rdb.Get(ctx, "nc:fcmtoken:not-a-hash").Val(); v != "x" {
				t.Fatalf("a key that is no owner key was changed: %q", v)
			}

			// Once: a later start does not scan again.
			setOwner(t, f.rdb, "tok-9", "c-7\nd-9", true)
			if moved, err := f.cust.MigrateTokenOwners(ctx); err != nil || moved != 0 {
				t.Fatalf("MigrateTokenOwners again: %d, %v; want 0", moved, err)
			}
			if n := f.rdb.Exists(ctx, legacyOwnerKey("tok-9")).Val(); n != 1 {
				t.Fatal("the second pass moved an owner")
			}

			// The moved owners are claimed and released as any.
			if _, err := f.cust.PutDevice(ctx, "c-7", &rules.Device{ID: "d-6", FCMToken: "tok-1", Platform: "ios"}); err != nil {
				t.Fatal(err)
			}
			if got := holdings(t, f, "c-42"); len(got) != 0 {
				t.Fatalf("c-42 kept %v after c-7 took its token", got)
			}
			if err := f.cust.DeleteDevice(ctx, "c-7", "d-5"); err != nil {
				t.Fatal(err)
			}
			for tok, want := range map[string]string{"tok-1": "c-7/d-6", "tok-5": ""} {
				if got := tokenOwner(t, f.rdb, tok); got != want {
					t.Fatalf("after the moves, %s belongs to %q, want %q", tok, got, want)
				}
			}
		})
	}
}

// A pass beside registrations, releases, erasures and another pass: what
// it read may have changed before it moves it. It leaves no owner naming
// an erased customer or a device without the token, takes none from a
// device that holds it, and leaves both where the hash names another.
func TestMigrateTokenOwnersBesideChanges(t *testing.T) {
	tests := []struct {
		name   string
		before func(t *testing.T, f *fixture) // after the pass read tok-1's key as naming c-42's d-1
		hash   string                         // tok-1's owner in the hash after, "customer/device"
		legacy string                         // and in its key of its own
		moved  int
	}{
		{"nothing changed", func(t *testing.T, f *fixture) {}, "c-42/d-1", "", 1},
		{"another pass moved it first", func(t *testing.T, f *fixture) {
			if n, err := f.cust.FoldTokenOwners(context.Background(), []string{legacyOwnerKey("tok-1")}, []string{"c-42\nd-1"}); err != nil || n != 1 {
				t.Fatalf("the other pass: %d, %v", n, err)
			}
		}, "c-42/d-1", "", 0},
		{"the device registered the token again", func(t *testing.T, f *fixture) {
			if _, err := f.cust.PutDevice(context.Background(), "c-42", &rules.Device{ID: "d-1", FCMToken: "tok-1", Platform: "ios"}); err != nil {
				t.Fatal(err)
			}
		}, "c-42/d-1", "", 0},
		{"the key went, the device still holds the token", func(t *testing.T, f *fixture) {
			// As when the pass adds to the hash just before a registration
			// claims it again and takes the key.
			f.rdb.Del(context.Background(), legacyOwnerKey("tok-1"))
		}, "c-42/d-1", "", 0},
		{"the customer was erased", func(t *testing.T, f *fixture) {
			if err := f.cust.Delete(context.Background(), "c-42"); err != nil {
				t.Fatal(err)
			}
		}, "", "", 0},
		{"an older server gave the token to another device", func(t *testing.T, f *fixture) {
			f.rdb.Set(context.Background(), legacyOwnerKey("tok-1"), "c-7\nd-5", 0)
		}, "", "c-7/d-5", 0},
		{"the hash names another device", func(t *testing.T, f *fixture) {
			key, field := engine.TokenOwnerOf("tok-1")
			f.rdb.HSet(context.Background(), key, field, "c-7\nd-5")
		}, "c-7/d-5", "c-42/d-1", 0},
		{"the hash names another device, the key's device lost the token", func(t *testing.T, f *fixture) {
			// As a registration cut before it released the key leaves it.
			key, field := engine.TokenOwnerOf("tok-1")
			f.rdb.HSet(context.Background(), key, field, "c-7\nd-5")
			f.rdb.HSet(context.Background(), "nc:{c:c-42}:devices", "d-1", `{"device_id":"d-1","fcm_token":"tok-2","platform":"ios"}`)
		}, "c-7/d-5", "", 0},
	}
	for _, be := range redistest.Backends(srv) {
		for _, tt := range tests {
			t.Run(be.Name+"/"+tt.name, func(t *testing.T) {
				f := setup(t, be.New(t))
				ctx := context.Background()
				addCustomer(t, f, "c-7")
				toLegacy(t, f.rdb, "tok-1")
				tt.before(t, f)
				moved, err := f.cust.FoldTokenOwners(ctx, []string{legacyOwnerKey("tok-1")}, []string{"c-42\nd-1"})
				if err != nil || moved != tt.moved {
					t.Fatalf("FoldTokenOwners: %d, %v; want %d moved", moved, err, tt.moved)
				}
				key, field := engine.TokenOwnerOf("tok-1")
				hash := strings.Replace(f.rdb.HGet(ctx, key, field).Val(), "\n", "/", 1)
				legacy := strings.Replace(f.rdb.Get(ctx, legacyOwnerKey("tok-1")).Val(), "\n", "/", 1)
				if hash != tt.hash || legacy != tt.legacy {
					t.Fatalf("tok-1's owner: %q in the hash, %q in its own key; want %q, %q", hash, legacy, tt.hash, tt.legacy)
				}
			})
		}
	}
}

// A registration that finds the token's owner in the hash and another in
// the key an earlier release kept takes the token from both devices.
func TestClaimTakesTheTokenFromBothOwners(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			f := setup(t, be.New(t))
			ctx := context.Background()
			addCustomer(t, f, "c-7")
			addCustomer(t, f, "c-9")
			if _, err := f.cust.PutDevice(ctx, "c-7", &rules.Device{ID: "d-5", FCMToken: "tok-1", Platform: "android"}); err != nil {
				t.Fatal(err)
			}
			// c-7's d-5 owns tok-1 in the hash; an older server left c-42's
			// d-1, which holds it too (as a cut registration may), in a key.
			f.rdb.HSet(ctx, "nc:{c:c-42}:devices", "d-1", `{"device_id":"d-1","fcm_token":"tok-1","platform":"ios"}`)
			setOwner(t, f.rdb, "tok-1", "c-42\nd-1", true)
			key, field := engine.TokenOwnerOf("tok-1")
			f.rdb.HSet(ctx, key, field, "c-7\nd-5")
			if _, err := f.cust.PutDevice(ctx, "c-9", &rules.Device{ID: "d-9", FCMToken: "tok-1", Platform: "ios"}); err != nil {
				t.Fatal(err)
			}
			for _, c := range []string{"c-42", "c-7"} {
				if got := holdings(t, f, c); len(got) != 0 {
					t.Fatalf("%s keeps %v", c, got)
				}
			}
			if got := tokenOwner(t, f.rdb, "tok-1"); got != "c-9/d-9" {
				t.Fatalf("tok-1 belongs to %q, want c-9/d-9", got)
			}
		})
	}
}

// One replica makes the pass: another that starts meanwhile leaves the
// keys to it, and records nothing.
func TestMigrateTokenOwnersOnePassAtATime(t *testing.T) {
	f := setup(t, srv.Client(t))
	ctx := context.Background()
	toLegacy(t, f.rdb, "tok-1")
	f.rdb.Set(ctx, "nc:{catalog}:migrating", "another replica", time.Minute)
	if moved, err := f.cust.MigrateTokenOwners(ctx); err != nil || moved != 0 {
		t.Fatalf("beside another pass: %d, %v", moved, err)
	}
	if f.rdb.Exists(ctx, legacyOwnerKey("tok-1")).Val() != 1 || f.rdb.HExists(ctx, "nc:{catalog}:migrated", "token_owners").Val() {
		t.Fatal("a replica without the lease moved or recorded something")
	}
	f.rdb.Del(ctx, "nc:{catalog}:migrating")
	if moved, err := f.cust.MigrateTokenOwners(ctx); err != nil || moved != 1 {
		t.Fatalf("once the lease is free: %d, %v", moved, err)
	}
	if f.rdb.Exists(ctx, "nc:{catalog}:migrating").Val() != 0 {
		t.Fatal("the pass kept its lease")
	}
}
