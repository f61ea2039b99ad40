package codeshape

import (
	"cmp"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fzipp/gocyclo"
)

// Limits of issue 15.
const (
	// maxComplexity bounds a function's cyclomatic complexity, anywhere.
	maxComplexity = 30
	// maxEngineLines bounds the length of a function in engineDir, from
	// its func line to its closing brace, its doc comment not counted.
	maxEngineLines = 80
	// engineDir is the package directory whose functions' length is
	// bounded, its subdirectories included.
	engineDir = "engine"
)

// offender is a function past a limit, at its func line. measure is a
// format for its value, such as "is %d lines long".
type offender struct {
	pos     token.Position // Filename relative to the module root
	name    string
	measure string
	value   int
	limit   int
}

func (o offender) String() string {
	return fmt.Sprintf("%s:%d: %s %s, over the limit of %d",
		o.pos.Filename, o.pos.Line, o.name, fmt.Sprintf(o.measure, o.value), o.limit)
}

// TestCodeShape fails, naming each offender with file:line, for every
// function of the module's non-test code whose cyclomatic complexity is
// over maxComplexity, and every function of the engine longer than
// maxEngineLines.
func TestCodeShape(t *testing.T) {
	root := moduleRoot(t)
	fset := token.NewFileSet()
	var complex, long []offender
	for _, rel := range sourceFiles(t, root) {
		// Comments are not parsed, so that a //gocyclo:ignore directive
		// cannot exempt a function: the issue wants none over the limit.
		f, err := parser.ParseFile(fset, filepath.Join(root, rel), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("parse %s: %v", rel, err)
		}
		complex = append(complex, tooComplex(f, fset, root)...)
		if inEngine(rel) {
			long = append(long, tooLong(f, fset, root)...)
		}
	}
	t.Run("complexity", func(t *testing.T) { report(t, complex) })
	t.Run("engine_length", func(t *testing.T) { report(t, long) })
}

// moduleRoot is the module's directory, two levels above this package's,
// where go test runs the test.
func moduleRoot(t *testing.T) string {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !strings.Contains(string(mod), "module github.com/nearcast/nearcast\n") {
		t.Fatalf("%s is not the root of module github.com/nearcast/nearcast (go.mod: %v)", root, err)
	}
	return root
}

// sourceFiles lists the module's non-test Go files, relative to root and
// with forward slashes, in lexical order. It skips vendor and testdata
// directories, hidden ones, and any nested module, whose code is not
// this module's.
func sourceFiles(t *testing.T, root string) []string {
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && skipDir(path, name) {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go") {
			rel, err := filepath.Rel(root, path)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	if len(files) == 0 {
		t.Fatalf("no Go files under %s", root)
	}
	return files
}

// skipDir reports whether the walk leaves out a directory below the root.
func skipDir(path, name string) bool {
	if name == "vendor" || name == "testdata" || strings.HasPrefix(name, ".") {
		return true
	}
	_, err := os.Stat(filepath.Join(path, "go.mod"))
	return err == nil
}

// inEngine reports whether a file, relative to the module root, is in
// engineDir or below it.
func inEngine(rel string) bool {
	return strings.HasPrefix(rel, engineDir+"/")
}

// tooComplex lists a file's functions whose cyclomatic complexity, as
// gocyclo measures it (closures counted in the function that holds
// them), is over maxComplexity.
func tooComplex(f *ast.File, fset *token.FileSet, root string) []offender {
	var out []offender
	for _, s := range gocyclo.AnalyzeASTFile(f, fset, nil) {
		if s.Complexity > maxComplexity {
			out = append(out, offender{pos: relative(s.Pos, root), name: s.FuncName,
				measure: "has cyclomatic complexity %d", value: s.Complexity, limit: maxComplexity})
		}
	}
	return out
}

// tooLong lists a file's functions longer than maxEngineLines, counted
// from the line of the func keyword to that of the closing brace.
func tooLong(f *ast.File, fset *token.FileSet, root string) []offender {
	var out []offender
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Body == nil {
			continue
		}
		start := fset.Position(fd.Type.Func)
		lines := fset.Position(fd.Body.Rbrace).Line - start.Line + 1
		if lines > maxEngineLines {
			out = append(out, offender{pos: relative(start, root), name: funcName(fd),
				measure: "is %d lines long", value: lines, limit: maxEngineLines})
		}
	}
	return out
}

// funcName names a function as gocyclo does: Name, or (T).Name and
// (*T).Name for a method, without type parameters.
func funcName(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return fd.Name.Name
	}
	return "(" + recvType(fd.Recv.List[0].Type) + ")." + fd.Name.Name
}

// recvType writes a method's receiver type: T or *T.
func recvType(x ast.Expr) string {
	switch t := x.(type) {
	case *ast.StarExpr:
		return "*" + recvType(t.X)
	case *ast.IndexExpr:
		return recvType(t.X)
	case *ast.IndexListExpr:
		return recvType(t.X)
	case *ast.Ident:
		return t.Name
	}
	return "?"
}

// relative makes a position's file name relative to the module root,
// with forward slashes, so that failures read the same on every machine.
func relative(p token.Position, root string) token.Position {
	if rel, err := filepath.Rel(root, p.Filename); err == nil {
		p.Filename = filepath.ToSlash(rel)
	}
	return p
}

// report fails the test once for each offender, in file and line order.
func report(t *testing.T, offenders []offender) {
	t.Helper()
	slices.SortFunc(offenders, func(a, b offender) int {
		return cmp.Or(cmp.Compare(a.pos.Filename, b.pos.Filename), cmp.Compare(a.pos.Line, b.pos.Line))
	})
	for _, o := range offenders {
		t.Errorf("%s", o)
	}
}
