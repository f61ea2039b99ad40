package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// testingAllowed are the packages outside this module that the server
// needs and that import the testing framework outside their tests, each
// with why. None is a test double, and the server calls nothing of
// theirs that uses it.
var testingAllowed = map[string]string{
	// utils.AssertEqual (utils/assertions.go) takes a testing.TB; Fiber
	// itself calls it only from its tests.
	"github.com/gofiber/fiber/v2/utils": "Fiber's AssertEqual helper",
}

// The server binary carries no test code: no package of this module that
// is a test helper (a name ending in test, such as internal/redistest and
// internal/fcmtest, or under testdata), no net/http/httptest nor any
// testing/... helper, and the testing framework only where a library the
// server needs imports it (testingAllowed). The load bench, which uses
// the test doubles, is a binary of its own (cmd/nearcast-bench).
func TestServerCarriesNoTestCode(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if root := os.Getenv("GOROOT"); err != nil && root != "" {
		goCmd, err = exec.LookPath(filepath.Join(root, "bin", "go"))
	}
	if err != nil {
		t.Skipf("no go command on PATH or in $GOROOT/bin to list the server's packages: %v", err)
	}
	const module = "github.com/nearcast/nearcast"
	list := exec.Command(goCmd, "list", "-deps", "-f", "{{.ImportPath}}\t{{join .Imports \" \"}}", module+"/cmd/nearcast")
	list.Stderr = os.Stderr
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	var importers []string // of testing
	n := 0
	for line := range strings.Lines(string(out)) {
		path, imports, _ := strings.Cut(strings.TrimSpace(line), "\t")
		n++
		ours := path == module || strings.HasPrefix(path, module+"/")
		switch {
		case ours && (strings.HasSuffix(path, "test") || strings.Contains(path+"/", "/testdata/")),
			ours && (strings.HasPrefix(path, module+"/internal/redistest") || strings.HasPrefix(path, module+"/internal/fcmtest")):
			t.Errorf("the server imports %s, a test helper", path)
		case path == "net/http/httptest", strings.HasPrefix(path, "testing/"):
			t.Errorf("the server imports %s", path)
		}
		if slices.Contains(strings.Fields(imports), "testing") {
			importers = append(importers, path)
		}
	}
	if n < 100 || !strings.Contains(string(out), module+"/api\t") {
		t.Fatalf("go list -deps listed %d packages, without %s/api:\n%s", n, module, out)
	}
	for _, p := range importers {
		if _, ok := testingAllowed[p]; !ok {
			t.Errorf("%s imports testing, and is in the server", p)
		}
	}
	for p, why := range testingAllowed {
		if !slices.Contains(importers, p) {
			t.Errorf("testingAllowed lists %s (%s), which imports testing in the server no longer: remove it", p, why)
		}
	}
	if t.Failed() {
		t.Logf("packages that import testing: %v", importers)
	}
}
