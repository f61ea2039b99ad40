package api

import (
	"io"
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type specDoc struct {
	Paths map[string]map[string]any `yaml:"paths"`
}

var param = regexp.MustCompile(`(\{[^}]+\}|:[A-Za-z_]+)`)

func normalise(path string) string { return param.ReplaceAllString(path, "{}") }

// The spec and the server agree: every route is documented, every
// documented operation not marked planned is served, and every error
// response uses the one Error shape.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var spec specDoc
	if err := yaml.Unmarshal(OpenAPI, &spec); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	app := New(Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	served := map[string]bool{}
	for _, r := range app.GetRoutes(true) {
		if r.Method == "HEAD" || r.Path == "/v1/openapi.yaml" {
			continue
		}
		key := r.Method + " " + normalise(r.Path)
		served[key] = true
	}
	documented := map[string]bool{}
	for path, item := range spec.Paths {
		planned := item["x-nearcast-status"] == "planned"
		for method, op := range item {
			if method == "parameters" || strings.HasPrefix(method, "x-") {
				continue
			}
			key := strings.ToUpper(method) + " " + normalise(path)
			documented[key] = true
			if !planned && !served[key] {
				t.Errorf("the spec documents %s, the server does not serve it", key)
			}
			responses, _ := op.(map[string]any)["responses"].(map[string]any)
			for code, resp := range responses {
				if code[0] != '4' && code[0] != '5' {
					continue
				}
				ref, _ := resp.(map[string]any)["$ref"].(string)
				if !strings.HasPrefix(ref, "#/components/responses/") {
					t.Errorf("%s %s: error %s does not use a shared error response", key, path, code)
				}
			}
		}
	}
	if len(served) < 15 || len(documented) < 15 {
		t.Fatalf("only %d routes served and %d documented: the check would prove nothing", len(served), len(documented))
	}
	for key := range served {
		if !documented[key] {
			t.Errorf("the server serves %s, the spec does not document it", key)
		}
	}
}
