package api_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nearcast/nearcast/api"
	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/internal/redistest"
)

// ruleAnyone offers at every store to every fix, a suspicious one too.
const ruleAnyone = `{"name": "Anyone", "enabled": true, "priority": 50, "trigger": {"on": "enter"},
 "offer": {"title": {"en": "Hi"}, "body": {"en": "x"}, "min_trust": "any"}}`

// mockedAt is a ping whose OS said the fix is mocked.
func mockedAt(customer string, lat float64) string {
	b, _ := json.Marshal(map[string]any{"customer_id": customer, "device_id": "d-1", "lat": lat, "lng": 13.4132, "accuracy_m": 5, "mocked": true})
	return string(b)
}

// GET /v1/fraud over HTTP, every answer checked against the spec: the
// customers with suspicious fixes, riskiest first, with their signals,
// devices and coupons issued and redeemed under suspicion; a redemption
// of such a coupon says so (to the admin key; the app is not told), and
// is refused with 422 on a server that refuses them. Bad dates and
// limits are refused naming the field.
func TestFraudReport(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			k := newContract(t)
			rdb := be.New(t)
			c := k.serve(newClient(t, rdb))
			strict := k.serve(newClientWith(t, rdb, func(d *api.Deps) {
				d.Ledger = engine.NewLedger(rdb, engine.NewCodeSigner([]byte("s")), nil, nil).RefuseSuspicious(true)
			}))
			const admin, app = "admin-key", "app-key"
			c.call(cc{"PUT", "/v1/stores/s-alex", admin, "", `{"name": "Alexanderplatz", "lat": 52.5219, "lng": 13.4132, "radius_m": 100}`, nil}, 201)
			for _, id := range []string{"c-1", "c-2", "c-3", "c-4"} {
				c.call(cc{"PUT", "/v1/customers/" + id, admin, "", `{"consent": {"location": true, "push": true}}`, nil}, 201)
			}
			c.call(cc{"PUT", "/v1/rules/anyone", admin, "", ruleAnyone, nil}, 201)
			offered := func() string {
				t.Helper()
				var res struct{ Offers []engine.IssuedOffer }
				if err := json.Unmarshal(c.last.Raw, &res); err != nil || len(res.Offers) != 1 {
					t.Fatalf("no coupon: %v %s", err, c.last.Raw)
				}
				return res.Offers[0].CouponCode
			}

			// c-1: two suspicious fixes, a coupon; c-2: one, a coupon it
			// redeems; c-3: honest; c-4: a coupon the strict server refuses.
			c.call(cc{"POST", "/v1/pings", app, "", mockedAt("c-1", 52.5219), nil}, 200)
			offered()
			c.call(cc{"POST", "/v1/pings", app, "", mockedAt("c-1", 52.5300), nil}, 200)
			c.call(cc{"POST", "/v1/pings", app, "", mockedAt("c-2", 52.5219), nil}, 200)
			code2 := offered()
			c.call(cc{"POST", "/v1/pings", app, "", `{"customer_id": "c-3", "lat": 52.5219, "lng": 13.4132, "accuracy_m": 5}`, nil}, 200)
			code3 := offered()
			time.Sleep(5 * time.Millisecond) // c-4's fix the later
			c.call(cc{"POST", "/v1/pings", app, "", mockedAt("c-4", 52.5219), nil}, 200)
			code4 := offered()

			c.call(cc{"POST", "/v1/coupons/" + code2 + "/opened", app, "", "", nil}, 200)
			if strings.Contains(string(c.last.Raw), "suspicion") {
				t.Fatalf("the app is told of the suspicion: %s", c.last.Raw)
			}
			c.call(cc{"POST", "/v1/coupons/" + code2 + "/redeem", admin, "", `{"store_id": "s-alex"}`, nil}, 200)
			var cp engine.Coupon
			if err := json.Unmarshal(c.last.Raw, &cp); err != nil || cp.Status != "redeemed" || !cp.IssuedUnderSuspicion || strings.Join(cp.SuspicionSignals, ",") != "mocked" {
				t.Fatalf("redeemed under suspicion: %v %s", err, c.last.Raw)
			}
			strict.call(cc{"POST", "/v1/coupons/" + code4 + "/redeem", admin, "", `{"store_id": "s-alex"}`, nil}, 422)
			var refused struct{ Error api.Error }
			if err := json.Unmarshal(strict.last.Raw, &refused); err != nil || refused.Error.Code != "failed_precondition" || refused.Error.Field != "code" ||
				!strings.Contains(refused.Error.Message, "mocked") {
				t.Fatalf("refused: %v %s", err, strict.last.Raw)
			}
			strict.call(cc{"GET", "/v1/coupons/" + code4, admin, "", "", nil}, 200)
			if err := json.Unmarshal(strict.last.Raw, &cp); err != nil || cp.Status != "active" || !cp.IssuedUnderSuspicion {
				t.Fatalf("after the refusal: %s", strict.last.Raw)
			}
			strict.call(cc{"POST", "/v1/coupons/" + code3 + "/redeem", admin, "", `{"store_id": "s-alex"}`, nil}, 200)
			if strings.Contains(string(strict.last.Raw), "suspicion") {
				t.Fatalf("an honest coupon: %s", strict.last.Raw)
			}

			c.call(cc{"GET", "/v1/fraud", admin, "", "", nil}, 200)
			var rep engine.FraudReport
			if err := json.Unmarshal(c.last.Raw, &rep); err != nil {
				t.Fatal(err)
			}
			today := time.Now().UTC().Format(time.DateOnly)
			var order []string
			for _, cu := range rep.Customers {
				order = append(order, cu.CustomerID)
			}
			// c-1 (two fixes) first; then c-4 (one, later) before c-2.
			if rep.To != today || rep.From != time.Now().UTC().AddDate(0, 0, -6).Format(time.DateOnly) || strings.Join(order, " ") != "c-1 c-4 c-2" || rep.Truncated {
				t.Fatalf("the report: %s", c.last.Raw)
			}
			c1, c2 := rep.Customers[0], rep.Customers[2]
			if c1.SuspiciousFixes != 2 || c1.Signals["mocked"] != 2 || len(c1.Devices) != 1 || c1.Devices[0].DeviceID != "d-1" ||
				c1.Devices[0].SuspiciousFixes != 2 || c1.CouponsIssued != 1 || c1.CouponsRedeemed != 0 || c1.LastSuspicious == nil {
				t.Errorf("c-1: %+v", c1)
			}
			if c2.SuspiciousFixes != 1 || c2.CouponsIssued != 1 || c2.CouponsRedeemed != 1 {
				t.Errorf("c-2: %+v", c2)
			}
			if rep.Totals != (engine.FraudTotals{Customers: 3, SuspiciousFixes: 4, CouponsIssued: 3, CouponsRedeemed: 1}) {
				t.Errorf("totals: %+v", rep.Totals)
			}
			c.call(cc{"GET", "/v1/fraud?limit=1&from=" + today + "&to=" + today, admin, "", "", nil}, 200)
			if err := json.Unmarshal(c.last.Raw, &rep); err != nil || len(rep.Customers) != 1 || rep.Customers[0].CustomerID != "c-1" || !rep.Truncated {
				t.Fatalf("limit 1: %s", c.last.Raw)
			}
			c.call(cc{"GET", "/v1/fraud?from=2020-01-01&to=2020-01-07", admin, "", "", nil}, 200)
			if err := json.Unmarshal(c.last.Raw, &rep); err != nil || len(rep.Customers) != 0 {
				t.Fatalf("days long gone: %s", c.last.Raw)
			}

			for _, bad := range []struct{ query, field string }{
				{"from=yesterday", "from"},
				{"to=2026-13-01", "to"},
				{"from=2026-11-08&to=2026-11-01", "from"},
				{"from=2026-01-01&to=2026-04-01", "from"}, // 91 days
				{"limit=0", "limit"},
				{"limit=101", "limit"},
				{"limit=ten", "limit"},
			} {
				c.bad(cc{"GET", "/v1/fraud?" + bad.query, admin, "", "", nil}, 400)
				var e struct{ Error api.Error }
				if err := json.Unmarshal(c.last.Raw, &e); err != nil || e.Error.Code != "invalid_argument" || e.Error.Field != bad.field {
					t.Errorf("%s: %s, want the field %s", bad.query, c.last.Raw, bad.field)
				}
			}
			c.call(cc{"GET", "/v1/fraud?from=2026-01-01&to=2026-03-31", admin, "", "", nil}, 200) // 90 days
			c.call(cc{"GET", "/v1/fraud", app, "", "", nil}, 403)
		})
	}
}
