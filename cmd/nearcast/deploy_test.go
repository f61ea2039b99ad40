package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// settingsRead lists every environment variable `nearcast serve` reads.
func settingsRead() map[string]bool {
	asked := map[string]bool{}
	loadConfig(func(k string) string { asked[k] = true; return "" })
	return asked
}

// envNames walks a YAML document and collects the environment variables
// it sets: compose's "environment" maps and Kubernetes' "env" lists.
func envNames(n *yaml.Node, out map[string]bool) {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			switch {
			case k.Value == "environment" && v.Kind == yaml.MappingNode:
				for j := 0; j+1 < len(v.Content); j += 2 {
					out[v.Content[j].Value] = true
				}
			case k.Value == "env" && v.Kind == yaml.SequenceNode:
				for _, e := range v.Content {
					var item struct{ Name string }
					if e.Decode(&item) == nil && item.Name != "" {
						out[item.Name] = true
					}
				}
			}
		}
	}
	for _, c := range n.Content {
		envNames(c, out)
	}
}

// The compose file and the Kubernetes manifests set only settings the
// server reads (a misspelt one would be ignored in silence), and the
// secrets they reference exist.
func TestDeployFilesUseTheServersSettings(t *testing.T) {
	known := settingsRead()
	if len(known) < 20 || !known["NEARCAST_REDIS_URL"] || !known["GOOGLE_APPLICATION_CREDENTIALS"] {
		t.Fatalf("settings read: %v", known)
	}
	files, _ := filepath.Glob("../../deploy/k8s/*.yaml")
	files = append(files, "../../deploy/docker-compose.yml")
	secretKeys := map[string]bool{}
	var referenced []string
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(raw)))
		for {
			var doc yaml.Node
			if err := dec.Decode(&doc); err != nil {
				break
			}
			names := map[string]bool{}
			envNames(&doc, names)
			for name := range names {
				if !known[name] {
					t.Errorf("%s sets %s, which nearcast does not read", f, name)
				}
			}
			var obj struct {
				Kind       string
				StringData map[string]string `yaml:"stringData"`
			}
			if doc.Decode(&obj) == nil && obj.Kind == "Secret" {
				for k := range obj.StringData {
					secretKeys[k] = true
				}
			}
		}
		for _, line := range strings.Split(string(raw), "\n") {
			if i := strings.Index(line, "secretKeyRef: {name: nearcast, key: "); i >= 0 {
				referenced = append(referenced, strings.TrimSuffix(strings.Fields(line[i+len("secretKeyRef: {name: nearcast, key: "):])[0], "}}}"))
			}
		}
	}
	if len(referenced) == 0 {
		t.Fatal("the deployment references no secret")
	}
	for _, k := range referenced {
		if !secretKeys[k] {
			t.Errorf("the deployment reads secret key %s, which the secret does not have (has %v)", k, secretKeys)
		}
	}
	compose, _ := os.ReadFile("../../deploy/docker-compose.yml")
	if !slices.ContainsFunc(strings.Split(string(compose), "\n"), func(l string) bool { return strings.Contains(l, `"--hash-max-listpack-value", "1024"`) }) {
		t.Error("the compose file's Redis does not keep customer hashes compact (hash-max-listpack-value 1024)")
	}
}
