package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nearcast/nearcast/api"
	"github.com/nearcast/nearcast/engine"
)

// The app key ships inside every copy of the app, so anyone who unpacks
// the app has it. These tests replay what such a person tried with it
// (pinging, registering a phone, opening coupons and reading the rules'
// reasons for another customer) against the server on a real
// redis-server in its production default, token mode, and check that
// each attempt now gets nothing.

// tokenSettings run the server on the package's redis-server as
// production does by default: NEARCAST_APP_AUTH unset means token. The
// log sender keeps the pushes for GET /v1/dev/pushes.
func tokenSettings() map[string]string {
	return map[string]string{
		"NEARCAST_REDIS_URL": "redis://" + srv.Addr, "NEARCAST_PUSH": "log",
		"NEARCAST_APP_KEYS": "app", "NEARCAST_ADMIN_KEYS": "admin", "NEARCAST_COUPON_SECRET": "auth-secret",
		"NEARCAST_TOKEN_SECRETS": testTokenSecret,
		"NEARCAST_QUIET_HOURS":   "off", // the tests run at any hour
		"NEARCAST_MIN_OFFER_GAP": "0s",  // and walk in, out and in within a second
	}
}

// tokenServer starts the server on an emptied redis-server, with the
// store s-alex and the rule flat-white (gold customers get a coupon on
// entering).
func tokenServer(t *testing.T) (string, *syncBuffer) {
	t.Helper()
	srv.Client(t) // emptied
	base, out := startServer(t, tokenSettings())
	for _, c := range []struct{ path, body string }{{"/v1/stores/s-alex", e2eStore}, {"/v1/attributes", e2eAttributes}, {"/v1/rules/flat-white", e2eRule}} {
		if status, raw := call(t, "PUT", base+c.path, "admin", c.body); status >= 300 {
			t.Fatalf("PUT %s: %d %s", c.path, status, raw)
		}
	}
	return base, out
}

// signUp is a customer joining: the company's backend saves their
// profile and gets them a token (admin key), and their app registers
// their phone with that token. It answers the token.
func signUp(t *testing.T, base, customer, name, device, fcmToken string) string {
	t.Helper()
	profile := fmt.Sprintf(`{"first_name": %q, "locale": "en", "consent": {"location": true, "push": true}, "attributes": {"tier": "gold"}}`, name)
	if status, raw := call(t, "PUT", base+"/v1/customers/"+customer, "admin", profile); status >= 300 {
		t.Fatalf("profile of %s: %d %s", customer, status, raw)
	}
	token := mintToken(t, base, "admin", customer)
	phone := fmt.Sprintf(`{"fcm_token": %q, "platform": "android"}`, fcmToken)
	if status, raw := callAs(t, "PUT", base+"/v1/customers/"+customer+"/devices/"+device, "app", token, phone); status >= 300 {
		t.Fatalf("%s registers %s: %d %s", customer, device, status, raw)
	}
	return token
}

// pingBody is a ping of a phone walking north metres north of the store
// s-alex (radius 100 m).
func pingBody(customer, device string, north float64) string {
	return fmt.Sprintf(`{"customer_id": %q, "device_id": %q, "lat": %.7f, "lng": 13.4132, "accuracy_m": 8, "speed_mps": 0.5}`,
		customer, device, 52.5219+north/111194.9)
}

// visit walks the customer from 400 m away into the store with their own
// token and answers the coupon the entry gives.
func visit(t *testing.T, base, token, customer, device string) engine.IssuedOffer {
	t.Helper()
	var a pingAnswer
	for _, north := range []float64{400, 10} {
		status, raw := callAs(t, "POST", base+"/v1/pings", "app", token, pingBody(customer, device, north))
		if status != 200 {
			t.Fatalf("%s pings %v m away: %d %s", customer, north, status, raw)
		}
		a = pingAnswer{}
		if err := json.Unmarshal([]byte(raw), &a); err != nil {
			t.Fatal(err)
		}
	}
	if len(a.Offers) != 1 {
		t.Fatalf("%s walked into s-alex and got %d offers: %+v", customer, len(a.Offers), a)
	}
	return a.Offers[0]
}

// sentPushes waits until the log sender has sent n pushes in all, and
// answers them.
func sentPushes(t *testing.T, base string, n int) []engine.Push {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, raw := call(t, "GET", base+"/v1/dev/pushes", "admin", "")
		var p struct {
			Pushes []engine.Push `json:"pushes"`
		}
		if err := json.Unmarshal([]byte(raw), &p); status != 200 || err != nil {
			t.Fatalf("GET /v1/dev/pushes: %d %s", status, raw)
		}
		if len(p.Pushes) >= n || time.Now().After(deadline) {
			if len(p.Pushes) != n {
				t.Fatalf("%d pushes sent, want %d: %s", len(p.Pushes), n, raw)
			}
			return p.Pushes
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// refused checks an answer is the contract's error with the status, the
// code and, when not "", the field.
func refused(t *testing.T, status int, raw string, wantStatus int, code, field string) {
	t.Helper()
	var e struct {
		Error struct {
			Code  string `json:"code"`
			Field string `json:"field"`
		} `json:"error"`
	}
	json.Unmarshal([]byte(raw), &e)
	if status != wantStatus || e.Error.Code != code || field != "" && e.Error.Field != field {
		t.Fatalf("%d %s, want %d %s (field %q)", status, raw, wantStatus, code, field)
	}
}

// claims reads a customer token's claims, without checking them.
func claims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// renamed is the token with its customer changed and its signature kept,
// as someone who read a token would forge one for another customer.
func renamed(t *testing.T, token, customer string) string {
	t.Helper()
	c := claims(t, token)
	c["sub"] = customer
	payload, _ := json.Marshal(c)
	parts := strings.Split(token, ".")
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
}

// Two customers with a phone each: each registers their own phone and
// gets their own coupon, pushed to their own phone only. Someone with
// the app key and Anna's token (their own account, say) cannot act for
// Ben: not ping for him, not point his pushes at another phone, not
// remove his phone, not open his coupon, not read the rules' reasons.
func TestStolenAppKeyActsForNoOtherCustomer(t *testing.T) {
	base, _ := tokenServer(t)
	anna := signUp(t, base, "c-anna", "Anna", "d-anna", "anna-phone")
	ben := signUp(t, base, "c-ben", "Ben", "d-ben", "ben-phone")
	phone := map[string]string{"c-anna": "anna-phone", "c-ben": "ben-phone"}
	owner := map[string]string{} // coupon code -> customer
	annaCoupon := visit(t, base, anna, "c-anna", "d-anna")
	owner[annaCoupon.CouponCode] = "c-anna"
	benCoupon := visit(t, base, ben, "c-ben", "d-ben")
	owner[benCoupon.CouponCode] = "c-ben"
	// pushedToOwners checks every push sent went to its coupon's
	// customer's own phone.
	pushedToOwners := func(t *testing.T, pushes []engine.Push) {
		t.Helper()
		for _, p := range pushes {
			c, ok := owner[p.Data["coupon_code"]]
			if !ok || p.CustomerID != c || p.Token != phone[c] {
				t.Errorf("push of coupon %s (%s's) went to %s's phone token %q", p.Data["coupon_code"], c, p.CustomerID, p.Token)
			}
		}
	}
	pushedToOwners(t, sentPushes(t, base, 2))

	other, err := api.NewCustomerTokens([][]byte{[]byte("another-deployments-token-secret-0123456789")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	foreign, _, err := other.Mint("c-ben", 1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	attacker := `{"fcm_token": "attacker-phone", "platform": "android"}`
	for _, tt := range []struct {
		name, method, path, token, body string
		status                          int
		code, field                     string
	}{
		{"ping for Ben with Anna's token", "POST", "/v1/pings", anna, pingBody("c-ben", "d-ben", 10), 403, "permission_denied", "customer_id"},
		{"ping for Ben with the app key alone", "POST", "/v1/pings", "", pingBody("c-ben", "d-ben", 10), 401, "unauthenticated", ""},
		{"ping for Ben with Anna's token renamed to him", "POST", "/v1/pings", renamed(t, anna, "c-ben"), pingBody("c-ben", "d-ben", 10), 401, "unauthenticated", ""},
		{"ping for Ben with a token another deployment signed", "POST", "/v1/pings", foreign, pingBody("c-ben", "d-ben", 10), 401, "unauthenticated", ""},
		{"mint a token for Ben with the app key", "POST", "/v1/customers/c-ben/tokens", anna, "", 403, "permission_denied", ""},
		{"point Ben's phone at the attacker's", "PUT", "/v1/customers/c-ben/devices/d-ben", anna, attacker, 403, "permission_denied", "customer_id"},
		{"add the attacker's phone to Ben", "PUT", "/v1/customers/c-ben/devices/d-attacker", anna, attacker, 403, "permission_denied", "customer_id"},
		{"point Ben's phone at the attacker's with the app key alone", "PUT", "/v1/customers/c-ben/devices/d-ben", "", attacker, 401, "unauthenticated", ""},
		{"remove Ben's phone", "DELETE", "/v1/customers/c-ben/devices/d-ben", anna, "", 403, "permission_denied", "customer_id"},
		{"remove Ben's phone with the app key alone", "DELETE", "/v1/customers/c-ben/devices/d-ben", "", "", 401, "unauthenticated", ""},
		{"open Ben's coupon", "POST", "/v1/coupons/" + benCoupon.CouponCode + "/opened", anna, "", 404, "not_found", ""},
		{"open Ben's coupon with the app key alone", "POST", "/v1/coupons/" + benCoupon.CouponCode + "/opened", "", "", 401, "unauthenticated", ""},
		{"read Ben's coupon", "GET", "/v1/coupons/" + benCoupon.CouponCode, anna, "", 403, "permission_denied", ""},
		{"read Ben's pushes", "GET", "/v1/dev/pushes?customer_id=c-ben", anna, "", 403, "permission_denied", ""},
		{"a dry run with the app key", "POST", "/v1/pings?dry_run=true", anna, pingBody("c-anna", "d-anna", 10), 403, "permission_denied", "dry_run"},
		{"an explained ping with the app key", "POST", "/v1/pings?explain=true", anna, pingBody("c-anna", "d-anna", 10), 403, "permission_denied", "explain"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, raw := callAs(t, tt.method, base+tt.path, "app", tt.token, tt.body)
			refused(t, status, raw, tt.status, tt.code, tt.field)
		})
	}

	t.Run("Ben's phone and coupon are as he left them", func(t *testing.T) {
		status, raw := call(t, "GET", base+"/v1/customers/c-ben/devices", "admin", "")
		var d struct {
			Devices []struct {
				ID       string `json:"device_id"`
				FCMToken string `json:"fcm_token"`
			} `json:"devices"`
		}
		json.Unmarshal([]byte(raw), &d)
		if status != 200 || len(d.Devices) != 1 || d.Devices[0].ID != "d-ben" || d.Devices[0].FCMToken != "ben-phone" {
			t.Fatalf("Ben's devices: %d %s", status, raw)
		}
		status, raw = call(t, "GET", base+"/v1/coupons/"+benCoupon.CouponCode, "admin", "")
		var cp engine.Coupon
		json.Unmarshal([]byte(raw), &cp)
		if status != 200 || cp.OpenedAt != nil || cp.Status != "active" {
			t.Fatalf("Ben's coupon after Anna tried to open it: %d %s", status, raw)
		}
		// The 404 was for Anna: Ben opens his own coupon.
		if status, raw := callAs(t, "POST", base+"/v1/coupons/"+benCoupon.CouponCode+"/opened", "app", ben, ""); status != 200 {
			t.Fatalf("Ben opens his coupon: %d %s", status, raw)
		}
	})

	t.Run("Ben's next push goes to his phone", func(t *testing.T) {
		again := visit(t, base, ben, "c-ben", "d-ben")
		owner[again.CouponCode] = "c-ben"
		pushes := sentPushes(t, base, 3)
		pushedToOwners(t, pushes)
		found := false
		for _, p := range pushes {
			found = found || p.Data["coupon_code"] == again.CouponCode
		}
		if !found {
			t.Fatalf("Ben's second coupon %s was not pushed: %+v", again.CouponCode, pushes)
		}
	})

	t.Run("the admin key acts for anyone", func(t *testing.T) {
		// Ben is in the store: leaving it is what a dry run shows.
		status, raw := call(t, "POST", base+"/v1/pings?dry_run=true&explain=true", "admin", pingBody("c-ben", "d-ben", 400))
		if status != 200 || !strings.Contains(raw, `"type":"exit"`) {
			t.Fatalf("an admin's explained dry run for Ben: %d %s", status, raw)
		}
	})
}

// A customer's tokens are revoked at once on every replica: the token
// revoked through one replica is refused by the other on each app route,
// and a token minted afterwards works. Erasing the customer revokes their
// tokens too.
func TestRevokedTokensStopWorking(t *testing.T) {
	a, _ := tokenServer(t)
	b, _ := startServer(t, tokenSettings()) // a second replica
	old := signUp(t, a, "c-rev", "Rev", "d-rev", "rev-phone")
	coupon := visit(t, a, old, "c-rev", "d-rev").CouponCode
	phone := `{"fcm_token": "rev-phone", "platform": "android"}`
	// The app routes that act for c-rev, all taken before the revocation.
	type appCall struct{ name, method, path, body string }
	calls := []appCall{
		{"ping", "POST", "/v1/pings", pingBody("c-rev", "d-rev", 10)},
		{"device registration", "PUT", "/v1/customers/c-rev/devices/d-rev", phone},
		{"coupon opened", "POST", "/v1/coupons/" + coupon + "/opened", ""},
	}
	for _, c := range calls {
		if status, raw := callAs(t, c.method, b+c.path, "app", old, c.body); status != 200 {
			t.Fatalf("%s before the revocation: %d %s", c.name, status, raw)
		}
	}
	if status, raw := call(t, "DELETE", a+"/v1/customers/c-rev/tokens", "admin", ""); status != 204 {
		t.Fatalf("revoke: %d %s", status, raw)
	}
	for _, c := range append(calls, appCall{"device removal", "DELETE", "/v1/customers/c-rev/devices/d-rev", ""}) {
		t.Run("revoked token: "+c.name, func(t *testing.T) {
			status, raw := callAs(t, c.method, b+c.path, "app", old, c.body)
			refused(t, status, raw, 401, "unauthenticated", "")
		})
	}
	fresh := mintToken(t, b, "admin", "c-rev")
	for _, c := range calls {
		t.Run("new token: "+c.name, func(t *testing.T) {
			if status, raw := callAs(t, c.method, a+c.path, "app", fresh, c.body); status != 200 {
				t.Fatalf("%d %s", status, raw)
			}
		})
	}
	t.Run("an expired token", func(t *testing.T) {
		// The new token as it was, signed by this server's secret, but
		// for an hour that ended an hour ago.
		gen, _ := claims(t, fresh)["gen"].(float64)
		past, err := api.NewCustomerTokens([][]byte{[]byte(testTokenSecret)}, func() time.Time { return time.Now().Add(-2 * time.Hour) })
		if err != nil {
			t.Fatal(err)
		}
		expired, _, err := past.Mint("c-rev", int64(gen), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		status, raw := callAs(t, "POST", b+"/v1/pings", "app", expired, pingBody("c-rev", "d-rev", 10))
		refused(t, status, raw, 401, "unauthenticated", "")
	})
	t.Run("only an admin revokes", func(t *testing.T) {
		status, raw := callAs(t, "DELETE", a+"/v1/customers/c-rev/tokens", "app", fresh, "")
		refused(t, status, raw, 403, "permission_denied", "")
		if status, raw := callAs(t, "POST", b+"/v1/pings", "app", fresh, pingBody("c-rev", "d-rev", 10)); status != 200 {
			t.Fatalf("the token after an app tried to revoke it: %d %s", status, raw)
		}
	})

	if status, raw := call(t, "DELETE", a+"/v1/customers/c-rev", "admin", ""); status != 204 {
		t.Fatalf("erase: %d %s", status, raw)
	}
	for _, c := range calls[:2] {
		t.Run("erased customer's token: "+c.name, func(t *testing.T) {
			status, raw := callAs(t, c.method, b+c.path, "app", fresh, c.body)
			refused(t, status, raw, 401, "unauthenticated", "")
		})
	}
}

// POST /v1/customers/{id}/tokens: a token lives 24 h unless asked
// otherwise, from a minute to 30 days.
func TestMintedTokensLiveAsAsked(t *testing.T) {
	base, _ := tokenServer(t)
	for _, tt := range []struct {
		name, body string
		status     int
		life       time.Duration
	}{
		{"default", "", 201, 24 * time.Hour},
		{"an hour", `{"ttl_s": 3600}`, 201, time.Hour},
		{"30 days", `{"ttl_s": 2592000}`, 201, 30 * 24 * time.Hour},
		{"under a minute", `{"ttl_s": 59}`, 400, 0},
		{"over 30 days", `{"ttl_s": 2592001}`, 400, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now().Truncate(time.Second)
			status, raw := call(t, "POST", base+"/v1/customers/c-1/tokens", "admin", tt.body)
			if tt.status != 201 {
				refused(t, status, raw, tt.status, "invalid_argument", "ttl_s")
				return
			}
			var m struct {
				Token      string    `json:"token"`
				CustomerID string    `json:"customer_id"`
				ExpiresAt  time.Time `json:"expires_at"`
			}
			json.Unmarshal([]byte(raw), &m)
			if status != 201 || m.Token == "" || m.CustomerID != "c-1" {
				t.Fatalf("%d %s", status, raw)
			}
			if left := m.ExpiresAt.Sub(before); left < tt.life || left > tt.life+2*time.Second {
				t.Fatalf("expires_at %s: in %s, want %s", m.ExpiresAt, left, tt.life)
			}
		})
	}
}

// The settings of who may act for a customer, as the server reads them.
func TestAppAuthSettings(t *testing.T) {
	realRedis := map[string]string{
		"NEARCAST_REDIS_URL": "redis://127.0.0.1:1", "NEARCAST_APP_KEYS": "app",
		"NEARCAST_ADMIN_KEYS": "admin", "NEARCAST_COUPON_SECRET": "s",
	}
	with := func(env map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range env {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	token := api.AppAuth{Tokens: true}
	tests := []struct {
		name string
		env  map[string]string
		// wantErr is the setting the error names; "": accepted.
		wantErr string
		want    api.AppAuth
	}{
		{"real Redis without token secrets", realRedis, "NEARCAST_TOKEN_SECRETS", token},
		{"a token secret under 32 characters", with(realRedis, "NEARCAST_TOKEN_SECRETS", strings.Repeat("s", 31)), "NEARCAST_TOKEN_SECRETS", token},
		{"an old secret under 32 characters", with(realRedis, "NEARCAST_TOKEN_SECRETS", testTokenSecret+",short"), "NEARCAST_TOKEN_SECRETS", token},
		{"key on a real Redis", with(realRedis, "NEARCAST_APP_AUTH", "key"), "NEARCAST_APP_AUTH", api.AppAuth{}},
		{"key on a real Redis, allowed", with(realRedis, "NEARCAST_APP_AUTH", "key", "NEARCAST_ALLOW_KEY_ONLY", "1"), "", api.AppAuth{}},
		{"an unknown mode", with(realRedis, "NEARCAST_APP_AUTH", "bogus", "NEARCAST_TOKEN_SECRETS", testTokenSecret), "NEARCAST_APP_AUTH", token},
		{"firebase without a Firebase project", with(realRedis, "NEARCAST_APP_AUTH", "firebase"), "NEARCAST_APP_AUTH", api.AppAuth{Firebase: true}},
		{"embedded default", map[string]string{}, "", api.AppAuth{}},
		{"real Redis default", with(realRedis, "NEARCAST_TOKEN_SECRETS", strings.Repeat("s", 32)), "", token},
		{"token or firebase", with(realRedis, "NEARCAST_APP_AUTH", "token,firebase", "NEARCAST_TOKEN_SECRETS", testTokenSecret, "NEARCAST_FCM_PROJECT", "p"), "", api.AppAuth{Tokens: true, Firebase: true}},
		{"firebase needs no token secret", with(realRedis, "NEARCAST_APP_AUTH", "firebase", "NEARCAST_FCM_PROJECT", "p"), "", api.AppAuth{Firebase: true}},
		{"the older NEARCAST_VERIFY_ID_TOKENS=1", with(realRedis, "NEARCAST_VERIFY_ID_TOKENS", "1", "NEARCAST_FCM_PROJECT", "p"), "", api.AppAuth{Firebase: true}},
		{"NEARCAST_APP_AUTH over NEARCAST_VERIFY_ID_TOKENS", with(realRedis, "NEARCAST_APP_AUTH", "token", "NEARCAST_VERIFY_ID_TOKENS", "1", "NEARCAST_TOKEN_SECRETS", testTokenSecret, "NEARCAST_FCM_PROJECT", "p"), "", token},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadConfig(func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("loadConfig = %v, want an error naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.AppAuth != tt.want {
				t.Fatalf("app calls take %s, want %s", cfg.AppAuth, tt.want)
			}
		})
	}

	t.Run("the first secret signs, all verify", func(t *testing.T) {
		first, second := strings.Repeat("a", 32), strings.Repeat("b", 40)
		cfg, err := loadConfig(func(k string) string { return with(realRedis, "NEARCAST_TOKEN_SECRETS", first+", "+second)[k] })
		if err != nil || len(cfg.TokenSecrets) != 2 || string(cfg.TokenSecrets[0]) != first || string(cfg.TokenSecrets[1]) != second {
			t.Fatalf("secrets %q, %v", cfg.TokenSecrets, err)
		}
		if cfg.CouponCallsPerMin != 6000 {
			t.Fatalf("coupon calls a minute: %d, want 6000", cfg.CouponCallsPerMin)
		}
	})
}

// readyz is what GET /readyz answers.
type readyz struct {
	Status   string   `json:"status"`
	Warnings []string `json:"warnings"`
}

// NEARCAST_APP_AUTH=key on a real Redis, allowed with
// NEARCAST_ALLOW_KEY_ONLY=1: the server starts, takes the app key alone,
// and says so in its log and on /readyz; in token mode it says nothing.
func TestKeyOnlyIsWarnedOf(t *testing.T) {
	for _, tt := range []struct {
		name   string
		extra  map[string]string
		warned bool
	}{
		{"key, allowed", map[string]string{"NEARCAST_APP_AUTH": "key", "NEARCAST_ALLOW_KEY_ONLY": "1", "NEARCAST_TOKEN_SECRETS": ""}, true},
		{"token", map[string]string{}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv.Client(t)
			settings := tokenSettings()
			for k, v := range tt.extra {
				settings[k] = v
			}
			base, out := startServer(t, settings)
			logged := false
			sc := bufio.NewScanner(strings.NewReader(out.String()))
			for sc.Scan() {
				var line struct{ Level, Msg string }
				if json.Unmarshal(sc.Bytes(), &line) == nil && line.Level == "WARN" && strings.Contains(line.Msg, "NEARCAST_APP_AUTH=key") {
					logged = true
				}
			}
			res, err := http.Get(base + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			var r readyz
			json.NewDecoder(res.Body).Decode(&r)
			res.Body.Close()
			told := false
			for _, w := range r.Warnings {
				told = told || strings.Contains(w, "NEARCAST_APP_AUTH=key")
			}
			if res.StatusCode != 200 || r.Status != "ready" || logged != tt.warned || told != tt.warned || !tt.warned && len(r.Warnings) > 0 {
				t.Fatalf("/readyz %d %+v, warned in the log: %v, want warned %v\n%s", res.StatusCode, r, logged, tt.warned, out.String())
			}
			status, raw := call(t, "POST", base+"/v1/pings", "app", pingBody("c-1", "d-1", 400))
			if tt.warned && status != 200 {
				t.Fatalf("a ping with the app key alone, allowed: %d %s", status, raw)
			}
			if !tt.warned {
				refused(t, status, raw, 401, "unauthenticated", "")
			}
		})
	}
}

// The demo prints a token for Anna (c-42) and a curl that sends it; the
// token works on a ping, and only for her.
func TestDemoPrintsAnnasToken(t *testing.T) {
	base, out := startServer(t, map[string]string{})
	m := regexp.MustCompile(`c-42's customer token \(24 h\): (\S+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no token for c-42 in the welcome text:\n%s", out.String())
	}
	token := m[1]
	if !strings.Contains(out.String(), "-H 'X-Customer-Token: "+token+"'") {
		t.Fatalf("the welcome's curl does not send the token:\n%s", out.String())
	}
	c := claims(t, token)
	if c["sub"] != "c-42" || c["exp"].(float64)-c["iat"].(float64) != 24*3600 {
		t.Fatalf("token claims %v: want c-42's, for 24 h", c)
	}
	status, raw := callAs(t, "POST", base+"/v1/pings", "demo-app", token, `{"customer_id":"c-42","device_id":"d-1","lat":52.5215,"lng":13.4130}`)
	var a pingAnswer
	json.Unmarshal([]byte(raw), &a)
	if status != 200 || len(a.Offers) != 1 {
		t.Fatalf("the tour's ping with Anna's token: %d %s", status, raw)
	}
	// Sent, a token is checked even where the app key alone would do.
	status, raw = callAs(t, "POST", base+"/v1/pings", "demo-app", token, `{"customer_id":"c-7","lat":52.6,"lng":13.4}`)
	refused(t, status, raw, 403, "permission_denied", "customer_id")
	status, raw = callAs(t, "POST", base+"/v1/pings", "demo-app", renamed(t, token, "c-7"), `{"customer_id":"c-7","lat":52.6,"lng":13.4}`)
	refused(t, status, raw, 401, "unauthenticated", "")
}

// The Authorization scheme is taken in any letter case (RFC 7235 2.1).
func TestBearerInAnyCase(t *testing.T) {
	base, _ := tokenServer(t)
	token := signUp(t, base, "c-1", "Cleo", "d-1", "cleo-phone")
	for _, tt := range []struct {
		name, auth string
		admin      bool // GET /v1/rules, else POST /v1/pings with the customer's token
		status     int
	}{
		{"Bearer, admin", "Bearer admin", true, 200},
		{"bearer, admin", "bearer admin", true, 200},
		{"BEARER, admin", "BEARER admin", true, 200},
		{"Bearer, app", "Bearer app", false, 200},
		{"bearer, app", "bearer app", false, 200},
		{"BEARER, app", "BEARER app", false, 200},
		{"bEaReR, app", "bEaReR app", false, 200},
		{"another scheme", "Basic admin", true, 401},
		{"no key", "Bearer ", true, 401},
		{"an unknown key", "bearer nope", true, 401},
		{"the app key on an admin route", "bearer app", true, 403},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := newRequest("POST", base+"/v1/pings", "", token, pingBody("c-1", "d-1", 400))
			if tt.admin {
				req = newRequest("GET", base+"/v1/rules", "", "", "")
			}
			req.Header.Set("Authorization", tt.auth)
			if status, raw := send(t, req); status != tt.status {
				t.Fatalf("Authorization: %s: %d %s, want %d", tt.auth, status, raw, tt.status)
			}
		})
	}
}
