package console

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"
)

// The console works offline: no file names another origin to load from
// (an XML namespace is a name, not a download).
func TestNoExternalOrigins(t *testing.T) {
	url := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	files := 0
	err := fs.WalkDir(Files(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		b, err := fs.ReadFile(Files(), path)
		if err != nil {
			return err
		}
		for _, m := range url.FindAllString(string(b), -1) {
			if strings.HasSuffix(m, "//www.w3.org") {
				continue
			}
			t.Errorf("%s names another origin: %s", path, m)
		}
		if strings.Contains(string(b), " style=") || strings.Contains(string(b), "<script>") {
			t.Errorf("%s has an inline style or script, which the Content-Security-Policy refuses", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 5 {
		t.Fatalf("only %d files embedded", files)
	}
}
