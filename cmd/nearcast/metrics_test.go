package main

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nearcast/nearcast/internal/redistest"
)

// scrape reads /metrics into "name{labels}" -> value.
func scrape(t *testing.T, base string) (map[string]float64, string) {
	t.Helper()
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out, string(raw)
}

// What an operator reads off /metrics after a customer walks in: the
// ping's latency, the decision and the event, the push sent, the outbox
// empty again, Redis's round trips, the snapshot; and no customer, device
// or coordinate anywhere in it.
func TestMetrics(t *testing.T) {
	base, _ := startServer(t, map[string]string{})
	before, _ := scrape(t, base)
	if before["nearcast_snapshot_version"] <= 0 || before["nearcast_snapshot_age_seconds"] < 0 {
		t.Fatalf("snapshot: version %v, age %v", before["nearcast_snapshot_version"], before["nearcast_snapshot_age_seconds"])
	}
	status, raw := call(t, "POST", base+"/v1/pings", "demo-app", `{"customer_id":"c-42","device_id":"d-1","lat":52.5215,"lng":13.4130}`)
	if status != 200 || !strings.Contains(raw, `"rule_id":"gold-flat-white"`) {
		t.Fatalf("ping: %d %s", status, raw)
	}
	if status, _ := call(t, "POST", base+"/v1/pings?dry_run=true", "demo-admin", `{"customer_id":"c-42","lat":52.5097,"lng":13.3761}`); status != 200 {
		t.Fatalf("dry run: %d", status)
	}
	var m map[string]float64
	var text string
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, text = scrape(t, base)
		if m[`nearcast_pushes_total{result="sent"}`] >= 1 && m["nearcast_outbox_length"] == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for name, want := range map[string]float64{
		"nearcast_ping_duration_seconds_count":        2, // the dry run too
		`nearcast_decisions_total{result="sent"}`:     1, // not the dry run's
		`nearcast_events_total{type="enter"}`:         1,
		`nearcast_pushes_total{result="sent"}`:        1,
		"nearcast_outbox_length":                      0,
		"nearcast_outbox_oldest_age_seconds":          0,
		`nearcast_redis_errors_total{kind="command"}`: 0,
	} {
		if got := m[name] - before[name]; got != want {
			t.Errorf("%s moved by %v, want %v", name, got, want)
		}
	}
	if m[`nearcast_redis_duration_seconds_count{kind="pipeline"}`] <= before[`nearcast_redis_duration_seconds_count{kind="pipeline"}`] {
		t.Error("no Redis round trip timed")
	}
	for _, private := range []string{"c-42", "d-1", "52.52", "13.41", "demo-fcm-token"} {
		if strings.Contains(text, private) {
			t.Errorf("/metrics holds %q", private)
		}
	}
}

// Every answer carries a request id: the caller's, or a new one.
func TestRequestIDs(t *testing.T) {
	base, _ := startServer(t, map[string]string{})
	req, _ := http.NewRequest("POST", base+"/v1/pings", strings.NewReader(`{"customer_id":"c-42","lat":95,"lng":13.4}`))
	req.Header.Set("Authorization", "Bearer demo-app")
	req.Header.Set("X-Request-ID", "trace-7")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 400 || res.Header.Get("X-Request-ID") != "trace-7" {
		t.Errorf("status %d, request id %q", res.StatusCode, res.Header.Get("X-Request-ID"))
	}
	ids := map[string]bool{}
	for i := 0; i < 3; i++ {
		res, err := http.Get(base + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		ids[res.Header.Get("X-Request-ID")] = true
	}
	if len(ids) != 3 || ids[""] {
		t.Errorf("request ids %v: want three different ones", ids)
	}
}

// A device over its limit gets 429 rate_limited in the contract's shape,
// with Retry-After.
func TestPingRateLimitAnswer(t *testing.T) {
	base, _ := startServer(t, map[string]string{"NEARCAST_PINGS_PER_MINUTE_DEVICE": "2"})
	redistest.OneMinute(t, 10*time.Second)
	body := `{"customer_id":"c-42","device_id":"d-1","lat":52.6,"lng":13.4}`
	for i := 0; i < 2; i++ {
		if status, raw := call(t, "POST", base+"/v1/pings", "demo-app", body); status != 200 {
			t.Fatalf("ping %d: %d %s", i, status, raw)
		}
	}
	req, _ := http.NewRequest("POST", base+"/v1/pings", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer demo-app")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	after, err := strconv.Atoi(res.Header.Get("Retry-After"))
	if res.StatusCode != 429 || !strings.Contains(string(raw), `"code":"rate_limited"`) || err != nil || after < 1 || after > 60 {
		t.Fatalf("3rd ping: %d, Retry-After %q, %s", res.StatusCode, res.Header.Get("Retry-After"), raw)
	}
}
