package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The README's 60-second tour, run top to bottom as a newcomer would
// (bash and curl) against the server as `make run` starts it: every
// command in its shell block, on whatever day the test runs (the walk in
// the sandbox is timed from "tomorrow at 07:50", not from a date). Each
// answer the tour's comments promise comes, in order.
func TestREADMETour(t *testing.T) {
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found (make test installs curl): the tour is run with it", tool)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, tour, ok := strings.Cut(string(readme), "## A 60-second tour")
	if ok {
		_, tour, ok = strings.Cut(tour, "```sh\n")
	}
	if ok {
		tour, _, ok = strings.Cut(tour, "```")
	}
	if !ok || !strings.Contains(tour, "http://127.0.0.1:8080") {
		t.Fatal("no shell block with http://127.0.0.1:8080 under the README's tour")
	}
	base, _ := startServer(t, map[string]string{})
	script := "set -euo pipefail\n" + strings.ReplaceAll(tour, "http://127.0.0.1:8080", base)
	out, err := exec.Command("bash", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("the tour failed: %v\n%s", err, out)
	}
	// What the tour's comments say, in the order they say it.
	rest := string(out)
	for _, want := range []string{
		`"type":"enter","store_id":"s-alex"`, `"rule_id":"gold-flat-white"`, `"title":"Hallo Anna!"`, `"monitor":{"id":"`, `"regions":[{"id":"nearcast:s-alex"`, `"next_ping":{`,
		`"pushes":[`, `demo-fcm-token-anna`,
		`"store_id":"s-potsdamer"`, `"result":"untrusted_location"`, `"signals":["impossible_travel"]`,
		`"simulated":true`, `"type":"enter","store_id":"s-potsdamer"`, `"rule_id":"gold-flat-white"`, `"type":"enter","store_id":"s-alex"`, `"rule_id":"welcome-coffee"`,
		`"field":"audience"`,
	} {
		i := strings.Index(rest, want)
		if i < 0 {
			t.Fatalf("the tour does not answer %s where its comments say; it printed:\n%s", want, out)
		}
		rest = rest[i+len(want):]
	}
}
