// Package luascript loads the Lua scripts a package keeps in its lua/
// folder (embedded with go:embed), so that editors and linters read them
// as Lua, and lists them for the tests that must cover each.
package luascript

import (
	"io/fs"
	"path"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Load reads lua/<name>.lua from fsys, after the shared pieces it names
// (lua/lib/<lib>.lua, each defining local functions), as one script. A
// missing file is a build mistake, which every test catches: it panics.
func Load(fsys fs.FS, name string, libs ...string) *redis.Script {
	return redis.NewScript(Source(fsys, name, libs...))
}

// Source is the text of the script Load makes.
func Source(fsys fs.FS, name string, libs ...string) string {
	var src strings.Builder
	for _, lib := range libs {
		src.Write(read(fsys, "lua/lib/"+lib+".lua"))
		src.WriteByte('\n')
	}
	src.Write(read(fsys, "lua/"+name+".lua"))
	return src.String()
}

func read(fsys fs.FS, name string) []byte {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		panic(err)
	}
	return b
}

// Uncovered compares the scripts in fsys's lua/ with the names a test
// covers: the scripts it misses, and the names it gives twice or that are
// no script.
func Uncovered(fsys fs.FS, covered []string) (missed, wrong []string) {
	files, _ := fs.Glob(fsys, "lua/*.lua")
	seen := map[string]int{}
	for _, c := range covered {
		seen[c]++
	}
	for _, f := range files {
		name := strings.TrimSuffix(path.Base(f), ".lua")
		if seen[name] == 0 {
			missed = append(missed, name)
		}
		if seen[name] > 1 {
			wrong = append(wrong, name+" (twice)")
		}
		delete(seen, name)
	}
	for name := range seen {
		wrong = append(wrong, name+" (no such script)")
	}
	return missed, wrong
}

// Reporter is what CheckCovered reports to: a *testing.T.
type Reporter interface {
	Errorf(format string, args ...any)
}

// CheckCovered reports each script of fsys's lua/ that covered does not
// name, and each name given twice or that is no script: a test calls it
// with the scripts its cases check, so that a new script comes with its
// test.
func CheckCovered(t Reporter, fsys fs.FS, covered []string) {
	if len(covered) == 0 {
		t.Errorf("no cases")
	}
	missed, wrong := Uncovered(fsys, covered)
	for _, name := range missed {
		t.Errorf("lua/%s.lua has no case in TestScripts", name)
	}
	for _, w := range wrong {
		t.Errorf("a case of TestScripts names %s", w)
	}
}
