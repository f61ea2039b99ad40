package api_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nearcast/nearcast/api"
	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/internal/redistest"
)

// batchOf is a batch body of fixes north of Alexanderplatz (metres), each
// taken secondsAgo before now.
func batchOf(device string, fixes ...[2]float64) string {
	var parts []string
	for _, f := range fixes {
		lat := 52.5219 + f[0]/111195
		ts := time.Now().Add(-time.Duration(f[1]) * time.Second).UTC().Format(time.RFC3339Nano)
		parts = append(parts, fmt.Sprintf(`{"lat": %f, "lng": 13.4132, "accuracy_m": 5, "ts": %q}`, lat, ts))
	}
	return fmt.Sprintf(`{"device_id": %q, "fixes": [%s]}`, device, strings.Join(parts, ", "))
}

// POST /v1/pings/batch: a customer's fixes applied in time order, in one
// request; every fault named by its fix, and a refused batch changes
// nothing; another customer's id is 403; a customer without a profile is
// answered as one without consent; each fix counts against the limits.
func TestPingBatchRoute(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			c := newTokenClient(t, be.New(t), 60, 1)
			setUpStoreAndRule(t, c)
			c.admin("PUT", "/v1/customers/c-42", customerAnna)
			c.admin("PUT", "/v1/customers/c-shy", strings.Replace(customerAnna, `"location": true`, `"location": false`, 1))
			anna, ghost, shy := c.mint("c-42"), c.mint("c-ghost"), c.mint("c-shy")
			redistest.OneMinute(t, 20*time.Second)

			// Refused, naming the fix and field; nothing changes.
			before := keysSnapshot(t, c.rdb)
			for _, tt := range []struct{ body, field string }{
				{`{"fixes": []}`, "fixes"},
				{batchOf("d-1", make([][2]float64, engine.MaxBatchFixes+1)...), "fixes"},
				{`{"fixes": [{"lat": 52.5, "lng": 13.4, "ts": "2026-11-22T08:00:00Z"}, {"lat": 95, "lng": 13.4, "ts": "2026-11-22T08:00:01Z"}]}`, "fixes[1].lat"},
				{`{"fixes": [{"lat": 52.5, "lng": 13.4}]}`, "fixes[0].ts"},
				{`{"fixes": [{"lat": 52.5, "lng": 13.4, "ts": "2026-11-22T08:00:00Z", "alt": 3}]}`, "fixes[0].alt"},
				{`{"device_id": "bad id!", "fixes": [{"lat": 52.5, "lng": 13.4, "ts": "2026-11-22T08:00:00Z"}]}`, "device_id"},
			} {
				wantError(t, c.as(anna, "POST", "/v1/pings/batch", tt.body), 400, "invalid_argument", tt.field)
			}
			if after := keysSnapshot(t, c.rdb); after != before {
				t.Fatal("a refused batch changed Redis")
			}
			wantError(t, c.as(anna, "POST", "/v1/pings/batch", `{"customer_id": "c-shy", "fixes": [{"lat": 52.5, "lng": 13.4, "ts": "2026-11-22T08:00:00Z"}]}`), 403, "permission_denied", "customer_id")

			// Anna's phone woke late: three fixes, out of order, walking in.
			r := c.as(anna, "POST", "/v1/pings/batch", batchOf("d-1", [2]float64{5, 2}, [2]float64{300, 240}, [2]float64{10, 30}))
			var res engine.BatchResult
			if err := json.Unmarshal([]byte(r.Raw), &res); err != nil || r.Status != 200 {
				t.Fatalf("%d %s", r.Status, r.Raw)
			}
			if len(res.Fixes) != 3 || len(res.Events) != 1 || res.Events[0].Type != "enter" || len(res.Fixes[1].Events) != 1 || len(res.Offers) != 1 || res.Monitor == nil || res.NextPing == nil {
				t.Fatalf("walking in: %s", r.Raw)
			}

			// No profile and no consent: the same answer, fix by fix.
			g := c.as(ghost, "POST", "/v1/pings/batch", batchOf("d-1", [2]float64{5, 2}, [2]float64{10, 30}))
			s := c.as(shy, "POST", "/v1/pings/batch", batchOf("d-1", [2]float64{5, 2}, [2]float64{10, 30}))
			strip := func(raw string) string {
				var v map[string]any
				json.Unmarshal([]byte(raw), &v)
				for _, f := range v["fixes"].([]any) {
					delete(f.(map[string]any), "ts")
				}
				b, _ := json.Marshal(v)
				return string(b)
			}
			if g.Status != 200 || g.Status != s.Status || strip(g.Raw) != strip(s.Raw) || strings.Contains(g.Raw, "monitor") {
				t.Fatalf("unknown %d %s; no consent %d %s", g.Status, g.Raw, s.Status, s.Raw)
			}

			// The device's limit is 1 a minute, and a batch's fixes have
			// engine.BatchLimitFactor (4) times that: Anna's d-2 sends six.
			r = c.as(anna, "POST", "/v1/pings/batch", batchOf("d-2", [2]float64{900, 60}, [2]float64{910, 50}, [2]float64{920, 40}, [2]float64{930, 30}, [2]float64{940, 20}, [2]float64{950, 10}))
			res = engine.BatchResult{}
			json.Unmarshal([]byte(r.Raw), &res)
			statuses := ""
			for _, f := range res.Fixes {
				statuses += f.Status + " "
			}
			if r.Status != 200 || statuses != "applied applied applied applied rate_limited rate_limited " {
				t.Fatalf("over the limit within a batch: %d %s", r.Status, r.Raw)
			}
			r = c.as(anna, "POST", "/v1/pings/batch", batchOf("d-2", [2]float64{960, 5}))
			wantError(t, r, 429, "rate_limited", "")
			if r.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		})
	}
}

// BenchmarkPingBatch measures 100 fixes of one device sent as one batch
// against the same fixes sent as 100 pings, one request each, through
// the server's routes (redis-server on loopback), per 100 fixes.
func BenchmarkPingBatch(b *testing.B) {
	c := newClientWith(b, srv.Client(b), func(d *api.Deps) {
		cfg := engine.DefaultConfig()
		cfg.PingsPerMinute, cfg.PingsPerMinuteDevice = 0, 0
		d.Engine = engine.New(d.Redis, d.Live, engine.NewCodeSigner([]byte("s")), cfg, quiet, nil)
	})
	c.admin("PUT", "/v1/customers/c-42", customerAnna)
	// Fixes a few km from any store, each newer than the last.
	base := time.Now().Add(-time.Hour)
	fixes := func(round int) []string {
		out := make([]string, 100)
		for i := range out {
			ts := base.Add(time.Duration(round*100+i) * 10 * time.Millisecond).UTC().Format(time.RFC3339Nano)
			out[i] = fmt.Sprintf(`{"lat": %f, "lng": 13.3, "accuracy_m": 10, "ts": %q}`, 52.4+float64(i)*1e-5, ts)
		}
		return out
	}
	b.Run("batch_of_100", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			body := `{"customer_id": "c-42", "device_id": "d-1", "fixes": [` + strings.Join(fixes(i), ",") + `]}`
			b.StartTimer()
			if r := c.admin("POST", "/v1/pings/batch", body); r.Status != 200 {
				b.Fatalf("%d %s", r.Status, r.Raw)
			}
		}
	})
	base = time.Now().Add(-30 * time.Minute)
	b.Run("100_pings", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			fs := fixes(i)
			b.StartTimer()
			for _, f := range fs {
				body := `{"customer_id": "c-42", "device_id": "d-1", ` + strings.TrimPrefix(f, "{")
				if r := c.admin("POST", "/v1/pings", body); r.Status != 200 {
					b.Fatalf("%d %s", r.Status, r.Raw)
				}
			}
		}
	})
}
