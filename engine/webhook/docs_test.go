package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nearcast/nearcast/engine/webhook"
	"github.com/nearcast/nearcast/internal/redistest"
)

// docPath is the page for the people who build receivers and workers.
const docPath = "../../docs/webhooks.md"

// docBlocks answers the fenced blocks of docs/webhooks.md that follow the
// comment <!-- marker -->, each without its fences.
func docBlocks(t *testing.T, marker string) []string {
	t.Helper()
	doc, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(doc), "\n")
	var out []string
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "<!-- "+marker+" -->" {
			continue
		}
		j := i + 1
		for j < len(lines) && strings.TrimSpace(lines[j]) == "" {
			j++
		}
		if j == len(lines) || !strings.HasPrefix(lines[j], "```") {
			t.Fatalf("%s:%d: <!-- %s --> is not followed by a fenced block", docPath, i+1, marker)
		}
		var block []string
		k := j + 1
		for ; k < len(lines) && !strings.HasPrefix(lines[k], "```"); k++ {
			block = append(block, lines[k])
		}
		if k == len(lines) {
			t.Fatalf("%s:%d: the block after <!-- %s --> has no end", docPath, j+1, marker)
		}
		out = append(out, strings.Join(block, "\n")+"\n")
		i = k
	}
	if len(out) == 0 {
		t.Fatalf("%s has no block marked <!-- %s -->", docPath, marker)
	}
	return out
}

// verifyCase is a request a receiver's check must accept or refuse.
type verifyCase struct {
	Name    string            `json:"name"`
	Secret  string            `json:"secret"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
	accept  bool
}

// verifyVerdict is what a snippet said of a case.
type verifyVerdict struct {
	Name     string `json:"name"`
	Accepted bool   `json:"accepted"`
	Err      string `json:"err"`
}

// verifyCases are requests signed by webhook.Sign: good ones, and ones
// with a changed body, the wrong secret or a timestamp too far off.
func verifyCases(t *testing.T) []verifyCase {
	t.Helper()
	secret, other := webhook.NewSecret(), webhook.NewSecret()
	body := []byte(`{"id":"evt_d9c1e84591f9d0baf1481f63","type":"enter","customer_id":"c-42","store_id":"s-alex","device_id":"d-1","at":"2026-11-30T07:58:12.418Z"}`)
	id := "evt_d9c1e84591f9d0baf1481f63"
	now := time.Now()
	req := func(name, key string, at time.Time, body []byte, accept bool) verifyCase {
		sig, err := webhook.Sign(key, id, at, body)
		if err != nil {
			t.Fatal(err)
		}
		return verifyCase{Name: name, Secret: secret, Body: string(body), accept: accept, Headers: map[string]string{
			"webhook-id": id, "webhook-timestamp": fmt.Sprint(at.Unix()), "webhook-signature": sig}}
	}
	good := req("good", secret, now, body, true)
	rotated := req("one of several signatures", secret, now, body, true)
	wrong, _ := webhook.Sign(other, id, now, body)
	rotated.Headers["webhook-signature"] = wrong + " " + rotated.Headers["webhook-signature"]
	tampered := good
	tampered.Name, tampered.accept = "tampered body", false
	tampered.Body = strings.Replace(good.Body, "c-42", "c-43", 1)
	unsigned := req("no signature", secret, now, body, false)
	delete(unsigned.Headers, "webhook-signature")
	cases := []verifyCase{good, rotated, tampered, unsigned,
		req("wrong secret", other, now, body, false),
		req("stale timestamp", secret, now.Add(-6*time.Minute), body, false),
		req("timestamp from the future", secret, now.Add(6*time.Minute), body, false),
	}
	// The cases mean what webhook.Verify, the reference, says.
	for _, c := range cases {
		h := http.Header{}
		for k, v := range c.Headers {
			h.Set(k, v)
		}
		if err := webhook.VerifyAt(c.Secret, h, []byte(c.Body), now); (err == nil) != c.accept {
			t.Fatalf("case %q: webhook.Verify says %v, want accept=%v", c.Name, err, c.accept)
		}
	}
	return cases
}

// checkVerdicts compares a snippet's verdicts with the cases.
func checkVerdicts(t *testing.T, snippet string, cases []verifyCase, out []byte) {
	t.Helper()
	got := map[string]verifyVerdict{}
	for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		var v verifyVerdict
		if err := json.Unmarshal(line, &v); err != nil {
			t.Fatalf("%s: output %q: %v", snippet, out, err)
		}
		got[v.Name] = v
	}
	for _, c := range cases {
		v, ok := got[c.Name]
		switch {
		case !ok:
			t.Errorf("%s: no verdict for %q", snippet, c.Name)
		case v.Accepted != c.accept:
			t.Errorf("%s: %q accepted=%v (%s), want %v", snippet, c.Name, v.Accepted, v.Err, c.accept)
		}
	}
}

// The Go check of docs/webhooks.md, compiled and run as it stands there,
// accepts what Nearcast signs and refuses the rest.
func TestDocsVerifyGo(t *testing.T) {
	blocks := docBlocks(t, "verify:go")
	if len(blocks) != 1 {
		t.Fatalf("%d blocks marked verify:go, want 1", len(blocks))
	}
	snippet := blocks[0]
	f, err := parser.ParseFile(token.NewFileSet(), "verify.go", snippet, 0)
	if err != nil {
		t.Fatalf("the Go snippet does not parse: %v", err)
	}
	pkg := f.Name.Name
	dir := t.TempDir()
	files := map[string]string{
		"go.mod":                        "module receivercheck\n\ngo 1.22\n",
		filepath.Join(pkg, "verify.go"): snippet,
		"main.go": `package main

import (
	"encoding/json"
	"net/http"
	"os"

	"receivercheck/` + pkg + `"
)

func main() {
	var cases []struct {
		Name    string            ` + "`json:\"name\"`" + `
		Secret  string            ` + "`json:\"secret\"`" + `
		Headers map[string]string ` + "`json:\"headers\"`" + `
		Body    string            ` + "`json:\"body\"`" + `
	}
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		panic(err)
	}
	out := json.NewEncoder(os.Stdout)
	for _, c := range cases {
		h := http.Header{}
		for k, v := range c.Headers {
			h.Set(k, v)
		}
		err := ` + pkg + `.Verify(c.Secret, h, []byte(c.Body))
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		out.Encode(map[string]any{"name": c.Name, "accepted": err == nil, "err": msg})
	}
}
`,
	}
	for name, text := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases := verifyCases(t)
	in, _ := json.Marshal(cases)
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "run", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local", "GO111MODULE=on")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go run of the Go snippet: %v\n%s", err, stderr.String())
	}
	checkVerdicts(t, "the Go snippet", cases, out)
}

// The Python check of docs/webhooks.md, run as it stands there, accepts
// what Nearcast signs and refuses the rest.
func TestDocsVerifyPython(t *testing.T) {
	blocks := docBlocks(t, "verify:python")
	if len(blocks) != 1 {
		t.Fatalf("%d blocks marked verify:python, want 1", len(blocks))
	}
	python, err := exec.LookPath("python3")
	if err != nil {
		fmt.Println("TestDocsVerifyPython: skipped, python3 is not installed")
		t.Skip("python3 is not installed (make test installs it): the Python snippet of docs/webhooks.md is not checked")
	}
	dir := t.TempDir()
	harness := `import json, sys
from nearcast_verify import verify
for c in json.load(sys.stdin):
    try:
        verify(c["secret"], c["headers"], c["body"].encode())
        print(json.dumps({"name": c["name"], "accepted": True, "err": ""}))
    except Exception as e:
        print(json.dumps({"name": c["name"], "accepted": False, "err": repr(e)}))
`
	for name, text := range map[string]string{"nearcast_verify.py": blocks[0], "harness.py": harness} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases := verifyCases(t)
	in, _ := json.Marshal(cases)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "harness.py")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 with the Python snippet: %v\n%s", err, stderr.String())
	}
	checkVerdicts(t, "the Python snippet", cases, out)
}

// factKeys reads, from the engine's scripts, the keys of the fact each
// one journals (lib/journal.lua), by event type.
func factKeys(t *testing.T) map[string][]string {
	t.Helper()
	paths, err := filepath.Glob("../lua/*.lua")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no engine scripts in ../lua: %v", err)
	}
	call := regexp.MustCompile(`(?s)journal\([^{}]*\{t = '([a-z.]+)'(.*?)\}\)`)
	key := regexp.MustCompile(`,\s*([a-z_]+)\s*=`)
	out := map[string][]string{}
	for _, p := range paths {
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range call.FindAllStringSubmatch(string(src), -1) {
			var keys []string
			for _, k := range key.FindAllStringSubmatch(m[2], -1) {
				keys = append(keys, k[1])
			}
			if prev, ok := out[m[1]]; ok && !slices.Equal(prev, keys) {
				t.Fatalf("%s journals %s with %v and elsewhere with %v", p, m[1], keys, prev)
			}
			out[m[1]] = keys
		}
	}
	return out
}

// fieldsOf is an event's top-level fields, and its data's keys.
func fieldsOf(t *testing.T, e *webhook.Event) (top, data []string) {
	t.Helper()
	doc, _ := json.Marshal(e)
	var m map[string]json.RawMessage
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	for k := range m {
		top = append(top, k)
	}
	for k := range e.Data {
		data = append(data, k)
	}
	slices.Sort(top)
	slices.Sort(data)
	return top, data
}

// The example bodies of docs/webhooks.md are events as Nearcast writes
// them: every type has one, each decodes to an Event with nothing left
// over and encodes back to the same bytes, and each carries the fields
// the engine's script journals for its type (or, for customer.erased and
// webhook.test, the fields the code writes).
func TestDocsEventExamples(t *testing.T) {
	facts := factKeys(t)
	for _, typ := range webhook.EventTypes {
		if _, ok := facts[typ]; !ok && typ != webhook.TypeCustomerErased {
			t.Fatalf("no script journals %s (factKeys misread the scripts?): %v", typ, facts)
		}
	}
	// customer.erased and webhook.test, as the code writes them.
	rdb, _ := redistest.Mini(t)
	ctx := context.Background()
	st := webhook.NewStore(rdb)
	if _, err := st.Put(ctx, &webhook.Subscription{ID: "crm", URL: "https://crm.example.com/hooks/nearcast", Events: []string{"enter"}, Enabled: true}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SendTest(ctx, "crm"); err != nil {
		t.Fatal(err)
	}
	if _, err := webhook.NewEmitter(rdb, 0).EraseCustomer(ctx, "c-42"); err != nil {
		t.Fatal(err)
	}
	written := map[string]webhook.Event{}
	for n := 0; n < webhook.Shards; n++ {
		for _, m := range rdb.XRange(ctx, webhook.StreamKey(n), "-", "+").Val() {
			var e webhook.Event
			if err := json.Unmarshal([]byte(m.Values["event"].(string)), &e); err != nil {
				t.Fatal(err)
			}
			written[e.Type] = e
		}
	}

	idOf := map[string]string{"s": "store_id", "r": "rule_id", "c": "coupon_code", "d": "device_id", "at": "at"}
	seen := map[string]bool{}
	for i, block := range docBlocks(t, "example:event") {
		var compact bytes.Buffer
		if err := json.Compact(&compact, []byte(block)); err != nil {
			t.Fatalf("example %d is not JSON: %v\n%s", i+1, err, block)
		}
		dec := json.NewDecoder(bytes.NewReader(compact.Bytes()))
		dec.DisallowUnknownFields()
		var e webhook.Event
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("example %d is no event: %v\n%s", i+1, err, block)
		}
		if again, _ := json.Marshal(&e); !bytes.Equal(again, compact.Bytes()) {
			t.Errorf("example %d is not as Nearcast writes it:\n doc  %s\n code %s", i+1, compact.Bytes(), again)
		}
		if !webhook.KnownType(e.Type) || e.At.IsZero() || !strings.HasPrefix(e.ID, "evt_") {
			t.Errorf("example %d: type %q, at %v, id %q", i+1, e.Type, e.At, e.ID)
		}
		seen[e.Type] = true
		top, data := fieldsOf(t, &e)
		if keys, journaled := facts[e.Type]; journaled {
			// A fact the engine decided: its id is derived (24 hex digits),
			// its fields those its script journals, device_id optional.
			if len(e.ID) != len("evt_")+24 {
				t.Errorf("example %d (%s): id %q, want evt_ and 24 hex digits", i+1, e.Type, e.ID)
			}
			want := []string{"at", "customer_id", "id", "type"}
			var wantData []string
			for _, k := range keys {
				if f, ok := idOf[k]; ok {
					if f != "at" {
						want = append(want, f)
					}
				} else {
					wantData = append(wantData, k)
				}
			}
			if len(wantData) > 0 {
				want = append(want, "data")
			}
			slices.Sort(want)
			slices.Sort(wantData)
			got := slices.Clone(top)
			if slices.Contains(want, "device_id") && !slices.Contains(got, "device_id") {
				got = append(got, "device_id") // left out when the ping named no device
				slices.Sort(got)
			}
			if !slices.Equal(got, want) || !slices.Equal(data, wantData) {
				t.Errorf("example %d (%s): fields %v and data %v; its script journals %v: fields %v, data %v",
					i+1, e.Type, top, data, keys, want, wantData)
			}
			continue
		}
		real, ok := written[e.Type]
		if !ok {
			t.Errorf("example %d: type %s is neither journaled by a script nor written by the code", i+1, e.Type)
			continue
		}
		if len(e.ID) != len(real.ID) {
			t.Errorf("example %d (%s): id %q, the code makes ids like %q", i+1, e.Type, e.ID, real.ID)
		}
		rtop, rdata := fieldsOf(t, &real)
		if !slices.Equal(top, rtop) || !slices.Equal(data, rdata) {
			t.Errorf("example %d (%s): fields %v and data %v; the code writes %v and %v", i+1, e.Type, top, data, rtop, rdata)
		}
		if e.Type == webhook.TypeTest && e.Data["message"] != real.Data["message"] {
			t.Errorf("example %d: message %q, the code's %q", i+1, e.Data["message"], real.Data["message"])
		}
	}
	for _, typ := range append(slices.Clone(webhook.EventTypes), webhook.TypeTest) {
		if !seen[typ] {
			t.Errorf("docs/webhooks.md has no example of %s", typ)
		}
	}

	// The shards the page names.
	raw, _ := os.ReadFile(docPath)
	doc := strings.Join(strings.Fields(string(raw)), " ")
	for _, claim := range []string{
		fmt.Sprintf("`c-42` is on shard %d", webhook.ShardOf("c-42")),
		fmt.Sprintf("an event without a customer, shard %d", webhook.ShardOf("")),
	} {
		if !strings.Contains(doc, claim) {
			t.Errorf("docs/webhooks.md does not say %q", claim)
		}
	}
}
