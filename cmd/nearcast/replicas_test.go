package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nearcast/nearcast/internal/serverproc"
)

// startProcess runs the nearcast binary as its own process and returns
// its base URL; it is stopped (SIGTERM) when the test ends.
func startProcess(t *testing.T, bin string, env map[string]string) string {
	url, _ := startProcessCmd(t, bin, env)
	return url
}

// startProcessCmd is startProcess, also answering the process.
func startProcessCmd(t *testing.T, bin string, env map[string]string) (string, *exec.Cmd) {
	t.Helper()
	all := map[string]string{"NEARCAST_ADDR": "127.0.0.1:0"}
	for k, v := range env {
		all[k] = v
	}
	url, cmd, err := serverproc.Spawn(bin, all, io.Discard, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := serverproc.Stop(cmd, 20*time.Second); err != nil && cmd.ProcessState == nil {
			t.Errorf("replica: %v", err)
		}
	})
	return url, cmd
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nearcast")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// Two server processes on one redis-server (and on a Redis Cluster, under
// `make cluster-test`): a rule saved through one is in force on the other
// within a second, disabling it likewise, and a budget and a daily cap
// hold across both under hundreds of concurrent pings.
func TestTwoReplicas(t *testing.T) {
	bin := buildBinary(t)
	for _, target := range redisTargets() {
		t.Run(target.name, func(t *testing.T) { twoReplicas(t, bin, target) })
	}
}

func twoReplicas(t *testing.T, bin string, target redisTarget) {
	target.client(t) // a clean database
	env := map[string]string{
		"NEARCAST_REDIS_URL": target.url, "NEARCAST_PUSH": "log",
		"NEARCAST_APP_KEYS": "app", "NEARCAST_ADMIN_KEYS": "admin", "NEARCAST_COUPON_SECRET": "s",
		"NEARCAST_TOKEN_SECRETS": testTokenSecret, "NEARCAST_QUIET_HOURS": "off",
		"NEARCAST_MAX_OFFERS_PER_DAY": "0", "NEARCAST_LOG_LEVEL": "warn",
	}
	a, b := startProcess(t, bin, env), startProcess(t, bin, env)

	const customers = 200
	if s, raw := call(t, "PUT", a+"/v1/stores/s-alex", "admin", e2eStore); s >= 300 {
		t.Fatal(raw)
	}
	tokens := map[string]string{}
	for i := range customers {
		id := fmt.Sprint("c", i)
		body := `{"first_name": "C", "consent": {"location": true, "push": true}, "attributes": {"tier": "gold"}}`
		if s, raw := call(t, "PUT", a+"/v1/customers/"+id, "admin", body); s >= 300 {
			t.Fatal(raw)
		}
		tokens[id] = mintToken(t, []string{a, b}[i%2], "admin", id)
	}
	rule := strings.Replace(e2eRule, `"priority": 10,`, `"priority": 10, "caps": {"total": 50, "per_customer_per_day": 1},`, 1)
	inside := `{"customer_id": "c0", "lat": 52.5220, "lng": 13.4132, "accuracy_m": 5}`
	explains := func(base string) bool {
		_, raw := call(t, "POST", base+"/v1/pings?dry_run=true&explain=true", "admin", inside)
		return strings.Contains(raw, `"rule_id":"flat-white"`)
	}
	saved := time.Now()
	if s, raw := call(t, "PUT", a+"/v1/rules/flat-white", "admin", rule); s != 201 {
		t.Fatal(raw)
	}
	for !explains(b) {
		if time.Since(saved) > time.Second {
			t.Fatal("replica B did not apply the rule saved through A within a second")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("rule in force on the other replica after %v", time.Since(saved).Round(time.Millisecond))

	var mu sync.Mutex
	perCustomer := map[string]int{}
	total := 0
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range customers {
		for k := range 2 {
			wg.Add(1)
			go func(id string, base string, north float64) {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				body := fmt.Sprintf(`{"customer_id": %q, "lat": %.6f, "lng": 13.4132, "accuracy_m": 5}`, id, 52.5219+north/111195)
				s, raw := callAs(t, "POST", base+"/v1/pings", "app", tokens[id], body)
				if s != 200 {
					t.Errorf("ping: %d %s", s, raw)
					return
				}
				var a pingAnswer
				json.Unmarshal([]byte(raw), &a)
				mu.Lock()
				perCustomer[id] += len(a.Offers)
				total += len(a.Offers)
				mu.Unlock()
			}(fmt.Sprint("c", i), []string{a, b}[k], float64(k*5))
		}
	}
	wg.Wait()
	if total != 50 {
		t.Fatalf("%d coupons across both replicas on a budget of 50", total)
	}
	for id, n := range perCustomer {
		if n > 1 {
			t.Fatalf("%s got %d coupons with a daily cap of 1", id, n)
		}
	}

	// Disabled through B: out of force on A within a second.
	disabled := strings.Replace(rule, `"priority": 10,`, `"priority": 10, "enabled": false,`, 1)
	saved = time.Now()
	if s, raw := call(t, "PUT", b+"/v1/rules/flat-white", "admin", disabled); s != 200 {
		t.Fatal(raw)
	}
	for explains(a) {
		if time.Since(saved) > time.Second {
			t.Fatal("replica A still applies the rule disabled through B after a second")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
