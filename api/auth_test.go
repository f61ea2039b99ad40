package api_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/api"
	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/internal/redistest"
)

const tokenSecret = "0123456789abcdef0123456789abcdef-test"

// newTokenClient is a server that takes customer tokens (NEARCAST_APP_AUTH=token),
// with the engine's limits of a minute as given.
func newTokenClient(t *testing.T, rdb redis.UniversalClient, perCustomer, perDevice int) *client {
	t.Helper()
	tokens, err := api.NewCustomerTokens([][]byte{[]byte(tokenSecret)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return newClientWith(t, rdb, func(d *api.Deps) {
		d.AppAuth = api.AppAuth{Tokens: true}
		d.Tokens = tokens
		cfg := engine.DefaultConfig()
		cfg.QuietHours = [2]int{}
		cfg.PingsPerMinute, cfg.PingsPerMinuteDevice = perCustomer, perDevice
		d.Engine = engine.New(rdb, d.Live, engine.NewCodeSigner([]byte("s")), cfg, quiet, nil)
	})
}

// as sends an app call with the app key and a customer token.
func (c *client) as(token, method, path, body string) response {
	c.t.Helper()
	return c.request(method, path, "app-key", "application/json", body, map[string]string{api.HeaderCustomerToken: token})
}

// mint asks for a customer token as the company's backend does.
func (c *client) mint(customerID string) string {
	c.t.Helper()
	r := c.admin("POST", "/v1/customers/"+customerID+"/tokens", "")
	tok, _ := r.Body["token"].(string)
	if r.Status != 201 || tok == "" {
		c.t.Fatalf("mint a token for %s: %d %s", customerID, r.Status, r.Raw)
	}
	return tok
}

// offerTo walks a customer into the test store and answers the coupon code they get.
func offerTo(t *testing.T, c *client, token, customerID string) string {
	t.Helper()
	r := c.as(token, "POST", "/v1/pings", `{"customer_id": "`+customerID+`", "lat": 52.5219, "lng": 13.4132, "accuracy_m": 5}`)
	var res struct{ Offers []engine.IssuedOffer }
	json.Unmarshal([]byte(r.Raw), &res)
	if r.Status != 200 || len(res.Offers) != 1 {
		t.Fatalf("no coupon for %s: %d %s", customerID, r.Status, r.Raw)
	}
	return res.Offers[0].CouponCode
}

func setUpStoreAndRule(t *testing.T, c *client) {
	t.Helper()
	c.admin("PUT", "/v1/stores/s-alex", strings.Replace(storeAlex, `, "opening_hours": {"mon": ["07:00-20:00"]}`, "", 1))
	c.admin("PUT", "/v1/attributes", declareTier) // no profile carries it yet
	if r := c.admin("PUT", "/v1/rules/latte", ruleLatte); r.Status != 201 {
		t.Fatalf("rule: %d %s", r.Status, r.Raw)
	}
}

// The attacks of issue 13, replayed: the app key and a customer's id
// (both easy to come by) get nothing of that customer.
func TestAppKeyAloneActsForNoOne(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			c := newTokenClient(t, be.New(t), 60, 30)
			setUpStoreAndRule(t, c)
			for _, id := range []string{"c-1", "c-3"} {
				if r := c.admin("PUT", "/v1/customers/"+id, customerAnna); r.Status != 201 {
					t.Fatalf("customer: %s", r.Raw)
				}
			}
			attacker, victim := c.mint("c-1"), c.mint("c-3")
			if r := c.as(victim, "PUT", "/v1/customers/c-3/devices/d-3", `{"fcm_token": "victim-phone", "platform": "ios"}`); r.Status != 200 {
				t.Fatalf("victim's device: %d %s", r.Status, r.Raw)
			}
			code := offerTo(t, c, victim, "c-3")
			before := keysSnapshot(t, c.rdb)
			ping := `{"customer_id": "c-3", "lat": 0, "lng": 0}`
			for _, tt := range []struct {
				name, token, method, path, body string
				status                          int
				code, field                     string
			}{
				{"where is the victim, app key alone", "", "POST", "/v1/pings", ping, 401, "unauthenticated", ""},
				{"where is the victim, dry run", attacker, "POST", "/v1/pings?dry_run=true", ping, 403, "permission_denied", "dry_run"},
				{"probe the victim's attributes", attacker, "POST", "/v1/pings?explain=true", ping, 403, "permission_denied", "explain"},
				{"where is the victim, own token", attacker, "POST", "/v1/pings", ping, 403, "permission_denied", "customer_id"},
				{"dry run with own token", attacker, "POST", "/v1/pings?dry_run=true", `{"customer_id": "c-1", "lat": 0, "lng": 0}`, 403, "permission_denied", "dry_run"},
				{"take over the victim's pushes", attacker, "PUT", "/v1/customers/c-3/devices/d-3", `{"fcm_token": "attacker-phone", "platform": "android"}`, 403, "permission_denied", "customer_id"},
				{"take over, app key alone", "", "PUT", "/v1/customers/c-3/devices/d-3", `{"fcm_token": "attacker-phone", "platform": "android"}`, 401, "unauthenticated", ""},
				{"remove the victim's device", attacker, "DELETE", "/v1/customers/c-3/devices/d-3", "", 403, "permission_denied", "customer_id"},
				{"open the victim's coupon", attacker, "POST", "/v1/coupons/" + code + "/opened", "", 404, "not_found", ""},
				{"open it, app key alone", "", "POST", "/v1/coupons/" + code + "/opened", "", 401, "unauthenticated", ""},
				{"a forged token", attacker[:len(attacker)-4] + "AAAA", "POST", "/v1/pings", `{"customer_id": "c-1", "lat": 0, "lng": 0}`, 401, "unauthenticated", api.HeaderCustomerToken},
				{"a token of no key of ours", tokenOf(t, "another-secret-of-at-least-32-bytes!", "c-3", time.Now()), "POST", "/v1/pings", ping, 401, "unauthenticated", api.HeaderCustomerToken},
				{"an expired token", tokenOf(t, tokenSecret, "c-3", time.Now().Add(-48*time.Hour)), "POST", "/v1/pings", ping, 401, "unauthenticated", api.HeaderCustomerToken},
				{"an unsigned token", unsignedToken("c-3"), "POST", "/v1/pings", ping, 401, "unauthenticated", api.HeaderCustomerToken},
			} {
				t.Run(tt.name, func(t *testing.T) {
					var r response
					if tt.token == "" {
						r = c.do(tt.method, tt.path, "app-key", tt.body)
					} else {
						r = c.as(tt.token, tt.method, tt.path, tt.body)
					}
					wantError(t, r, tt.status, tt.code, tt.field)
					if tt.status == 401 && !strings.Contains(r.Raw, api.HeaderCustomerToken) {
						t.Fatalf("a 401 must say which header to send: %s", r.Raw)
					}
				})
			}
			// The attacker's calls count against the attacker, not against
			// the victim: nothing of the victim's changed.
			if after := keysSnapshot(t, c.rdb); strings.Count(after, "{c:c-3}") != strings.Count(before, "{c:c-3}") || !sameKeysOf(before, after, "{c:c-3}") {
				t.Fatalf("the victim's keys changed:\nbefore %s\nafter  %s", before, after)
			}
			// The victim's own token still works for them, and their device is theirs.
			if r := c.as(victim, "POST", "/v1/coupons/"+code+"/opened", ""); r.Status != 200 {
				t.Fatalf("the victim opens their coupon: %d %s", r.Status, r.Raw)
			}
			devs := c.admin("GET", "/v1/customers/c-3/devices", "")
			if !strings.Contains(devs.Raw, "victim-phone") || strings.Contains(devs.Raw, "attacker-phone") {
				t.Fatalf("the victim's devices: %s", devs.Raw)
			}
			// An admin key acts for anyone, dry runs and reasons included.
			if r := c.admin("POST", "/v1/pings?dry_run=true&explain=true", ping); r.Status != 200 {
				t.Fatalf("admin dry run: %d %s", r.Status, r.Raw)
			}
		})
	}
}

// sameKeysOf compares the keys (with their values) of one customer in two snapshots.
func sameKeysOf(a, b, tag string) bool {
	pick := func(s string) string {
		var out []string
		for _, kv := range strings.Split(s, ";") {
			if strings.Contains(kv, tag) && !strings.Contains(kv, ":rate=") {
				out = append(out, kv)
			}
		}
		return strings.Join(out, ";")
	}
	return pick(a) == pick(b)
}

// tokenOf signs a token as a server with that secret would, at that time.
func tokenOf(t *testing.T, secret, customerID string, at time.Time) string {
	t.Helper()
	ts, err := api.NewCustomerTokens([][]byte{[]byte(secret)}, func() time.Time { return at })
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := ts.Mint(customerID, 1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// unsignedToken claims a customer with "alg": "none".
func unsignedToken(customerID string) string {
	enc := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	now := time.Now().Unix()
	return enc(map[string]any{"alg": "none", "typ": "JWT"}) + "." + enc(map[string]any{
		"iss": "nearcast", "aud": "nearcast-app", "sub": customerID, "iat": now, "exp": now + 3600, "gen": 1}) + "."
}

func TestCustomerTokens(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			c := newTokenClient(t, be.New(t), 60, 30)
			c.admin("PUT", "/v1/customers/c-1", customerAnna)
			ping := `{"customer_id": "c-1", "device_id": "d-1", "lat": 52.6, "lng": 13.4}`

			t.Run("minted with a lifetime", func(t *testing.T) {
				r := c.admin("POST", "/v1/customers/c-1/tokens", `{"ttl_s": 120}`)
				exp, err := time.Parse(time.RFC3339, r.Body["expires_at"].(string))
				if r.Status != 201 || err != nil || time.Until(exp) < 100*time.Second || time.Until(exp) > 130*time.Second {
					t.Fatalf("%d %s", r.Status, r.Raw)
				}
				if r.Header.Get("Cache-Control") != "no-store" {
					t.Fatal("a token answer must not be cached")
				}
				r = c.admin("POST", "/v1/customers/c-1/tokens", "")
				exp, _ = time.Parse(time.RFC3339, r.Body["expires_at"].(string))
				if d := time.Until(exp); d < 23*time.Hour || d > 25*time.Hour {
					t.Fatalf("default lifetime: %s", r.Raw)
				}
				wantError(t, c.admin("POST", "/v1/customers/c-1/tokens", `{"ttl_s": 10}`), 400, "invalid_argument", "ttl_s")
				wantError(t, c.admin("POST", "/v1/customers/c-1/tokens", `{"ttl_s": 2678400}`), 400, "invalid_argument", "ttl_s")
				wantError(t, c.admin("POST", "/v1/customers/c%7B1/tokens", ""), 400, "invalid_argument", "customer_id")
				wantError(t, c.do("POST", "/v1/customers/c-1/tokens", "app-key", ""), 403, "permission_denied", "")
			})
			t.Run("the customer comes from the token", func(t *testing.T) {
				tok := c.mint("c-1")
				if r := c.as(tok, "POST", "/v1/pings", ping); r.Status != 200 {
					t.Fatalf("%d %s", r.Status, r.Raw)
				}
				if r := c.as(tok, "POST", "/v1/pings", `{"lat": 52.6, "lng": 13.4}`); r.Status != 200 {
					t.Fatalf("without customer_id: %d %s", r.Status, r.Raw)
				}
			})
			t.Run("revoked", func(t *testing.T) {
				old := c.mint("c-1")
				if r := c.as(old, "PUT", "/v1/customers/c-1/devices/d-1", `{"fcm_token": "t-1", "platform": "ios"}`); r.Status/100 != 2 {
					t.Fatalf("device: %d %s", r.Status, r.Raw)
				}
				if r := c.admin("DELETE", "/v1/customers/c-1/tokens", ""); r.Status != 204 {
					t.Fatalf("revoke: %d %s", r.Status, r.Raw)
				}
				wantError(t, c.as(old, "POST", "/v1/pings", ping), 401, "unauthenticated", api.HeaderCustomerToken)
				wantError(t, c.as(old, "PUT", "/v1/customers/c-1/devices/d-1", `{"fcm_token": "t-2", "platform": "ios"}`), 401, "unauthenticated", api.HeaderCustomerToken)
				wantError(t, c.as(old, "DELETE", "/v1/customers/c-1/devices/d-1", ""), 401, "unauthenticated", api.HeaderCustomerToken)
				wantError(t, c.as(old, "POST", "/v1/coupons/ABCD-EFGH-JKLM/opened", ""), 401, "unauthenticated", api.HeaderCustomerToken)
				if !strings.Contains(c.admin("GET", "/v1/customers/c-1/devices", "").Raw, `"t-1"`) {
					t.Fatal("a revoked token changed a device")
				}
				fresh := c.mint("c-1")
				if r := c.as(fresh, "POST", "/v1/pings", ping); r.Status != 200 {
					t.Fatalf("a token minted after: %d %s", r.Status, r.Raw)
				}
				// A revocation is kept as long as a token lives, and no longer.
				ttl, _ := c.rdb.PTTL(context.Background(), "nc:{c:c-1}:tokens").Result()
				if ttl <= 0 || ttl > engine.MaxTokenTTL {
					t.Fatalf("the revocation's TTL is %s", ttl)
				}
			})
			t.Run("erased", func(t *testing.T) {
				tok := c.mint("c-1")
				if r := c.admin("DELETE", "/v1/customers/c-1", ""); r.Status != 204 {
					t.Fatalf("erase: %d %s", r.Status, r.Raw)
				}
				wantError(t, c.as(tok, "POST", "/v1/pings", ping), 401, "unauthenticated", api.HeaderCustomerToken)
				// A customer made again with the same id starts afresh.
				c.admin("PUT", "/v1/customers/c-1", customerAnna)
				wantError(t, c.as(tok, "POST", "/v1/pings", ping), 401, "unauthenticated", api.HeaderCustomerToken)
				if r := c.as(c.mint("c-1"), "POST", "/v1/pings", ping); r.Status != 200 {
					t.Fatalf("a new token after: %d %s", r.Status, r.Raw)
				}
			})
		})
	}
}

// An app call for an unknown customer answers exactly like one for a
// customer without consent; and each is counted against its customer and
// device, dry runs included, so that nothing tells them apart.
func TestUnknownCustomersLookLikeNoConsent(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			c := newTokenClient(t, be.New(t), 3, 0)
			setUpStoreAndRule(t, c)
			c.admin("PUT", "/v1/customers/c-shy", strings.Replace(customerAnna, `"location": true`, `"location": false`, 1))
			ghost, shy := c.mint("c-ghost"), c.mint("c-shy")
			at := `{"lat": 52.5219, "lng": 13.4132, "accuracy_m": 5}`
			redistest.OneMinute(t, 20*time.Second)
			for i := 0; i < 3; i++ {
				g, s := c.as(ghost, "POST", "/v1/pings", at), c.as(shy, "POST", "/v1/pings", at)
				if g.Status != 200 || g.Status != s.Status || g.Raw != s.Raw {
					t.Fatalf("unknown %d %s, no consent %d %s", g.Status, g.Raw, s.Status, s.Raw)
				}
			}
			// Limits hold for both alike: the fourth call in the minute is refused.
			g, s := c.as(ghost, "POST", "/v1/pings", at), c.as(shy, "POST", "/v1/pings", at)
			wantError(t, g, 429, "rate_limited", "")
			wantError(t, s, 429, "rate_limited", "")
			if g.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
			wantError(t, c.as(ghost, "PUT", "/v1/customers/c-ghost/devices/d-9", `{"fcm_token": "t", "platform": "ios"}`), 429, "rate_limited", "")
			// Dry runs count, too.
			for i := 0; i < 3; i++ {
				if r := c.admin("POST", "/v1/pings?dry_run=true", `{"customer_id": "c-dry", "lat": 1, "lng": 1}`); r.Status != 200 {
					t.Fatalf("dry run %d: %d %s", i, r.Status, r.Raw)
				}
			}
			wantError(t, c.admin("POST", "/v1/pings?dry_run=true", `{"customer_id": "c-dry", "lat": 1, "lng": 1}`), 429, "rate_limited", "")
		})
	}
}

// Registering and removing devices answers the same for a customer with
// a profile and one without (never created, or erased), where nothing
// is stored.
func TestDevicesTellNoOneWhoExists(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			c := newTokenClient(t, be.New(t), 60, 30)
			c.admin("PUT", "/v1/customers/c-real", customerAnna)
			c.admin("PUT", "/v1/customers/c-gone", customerAnna)
			c.admin("DELETE", "/v1/customers/c-gone", "")
			tokens := map[string]string{"c-real": c.mint("c-real"), "c-ghost": c.mint("c-ghost"), "c-gone": c.mint("c-gone")}
			answers := func(id string) string {
				var out []string
				for _, call := range []struct{ method, body string }{
					{"PUT", `{"fcm_token": "tok-x", "platform": "ios"}`},
					{"PUT", `{"fcm_token": "tok-x", "platform": "ios"}`},
					{"DELETE", ""}, {"DELETE", ""},
				} {
					r := c.as(tokens[id], call.method, "/v1/customers/"+id+"/devices/d-1", call.body)
					delete(r.Body, "updated_at")
					b, _ := json.Marshal(r.Body)
					out = append(out, fmt.Sprintf("%d %s", r.Status, b))
				}
				return strings.Join(out, "; ")
			}
			real := answers("c-real")
			for _, id := range []string{"c-ghost", "c-gone"} {
				if got := answers(id); got != real {
					t.Fatalf("%s is answered %s; a customer with a profile %s", id, got, real)
				}
			}
			// Nothing was stored for them but their call counters (and the
			// erased one's token generation).
			for _, k := range mustKeys(t, c.rdb) {
				if strings.Contains(k, "{c:c-ghost}") && !strings.HasSuffix(k, ":rate") ||
					strings.Contains(k, "{c:c-gone}") && !strings.HasSuffix(k, ":rate") && !strings.HasSuffix(k, ":tokens") {
					t.Fatalf("stored for a customer without a profile: %s", k)
				}
			}
		})
	}
}

func mustKeys(t *testing.T, rdb redis.UniversalClient) []string {
	keys, err := redistest.Keys(context.Background(), rdb, "*")
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// Coupon look-ups, redemptions and opens are limited per credential, in
// Redis, so that the limit holds across replicas.
func TestCouponCallsAreLimitedPerKey(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			rdb := be.New(t)
			limited := func(d *api.Deps) { d.CouponRate = engine.NewCredentialRate(rdb, 3, nil) }
			a, b := newClientWith(t, rdb, limited), newClientWith(t, rdb, limited) // two replicas
			redistest.OneMinute(t, 10*time.Second)
			a.admin("GET", "/v1/coupons/ABCD-EFGH-JKLM", "")
			b.admin("POST", "/v1/coupons/ABCD-EFGH-JKLM/redeem", "")
			a.do("POST", "/v1/coupons/ABCD-EFGH-JKLM/opened", "admin-key", "")
			r := b.admin("GET", "/v1/coupons/ABCD-EFGH-JKLM", "")
			wantError(t, r, 429, "rate_limited", "")
			if r.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
			// Another key has its own budget; no key is kept in Redis.
			if r := a.do("POST", "/v1/coupons/ABCD-EFGH-JKLM/opened", "app-key", ""); r.Status != 404 {
				t.Fatalf("the app key: %d %s", r.Status, r.Raw)
			}
			if strings.Contains(keysSnapshot(t, rdb), "admin-key") {
				t.Fatal("an API key is stored in Redis")
			}
		})
	}
}

// RFC 7235: the scheme of Authorization is case-insensitive.
func TestBearerInAnyCase(t *testing.T) {
	c := newClient(t, srv.Client(t))
	for _, h := range []string{"Bearer admin-key", "bearer admin-key", "BEARER admin-key", "bEaReR   admin-key"} {
		if r := c.request("GET", "/v1/stores", "", "", "", map[string]string{"Authorization": h}); r.Status != 200 {
			t.Fatalf("%q: %d %s", h, r.Status, r.Raw)
		}
	}
	for _, h := range []string{"Basic admin-key", "Bearer", "admin-key", "Bearer "} {
		wantError(t, c.request("GET", "/v1/stores", "", "", "", map[string]string{"Authorization": h}), 401, "unauthenticated", "")
	}
}

// Headers too large for the server are refused with their own code, on a
// real connection (fasthttp refuses them before any route).
func TestHeadersTooLarge(t *testing.T) {
	c := newClient(t, srv.Client(t))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go c.app.Listener(ln)
	t.Cleanup(func() { c.app.Shutdown() })
	res, err := http.DefaultClient.Do(func() *http.Request {
		req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/v1/stores", nil)
		req.Header.Set("Authorization", "Bearer admin-key")
		req.Header.Set("X-Padding", strings.Repeat("x", 16<<10))
		return req
	}())
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := response{Status: res.StatusCode, Raw: string(raw)}
	json.Unmarshal(raw, &r.Body)
	wantError(t, r, 431, "headers_too_large", "")
}
