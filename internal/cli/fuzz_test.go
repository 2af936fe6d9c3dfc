package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzOfflineFile gives `kubectl riposte test` any file. It must never
// panic: a file it cannot read is an error naming the file, and one it
// reads is checked (playbooks, objects, saved notifications or alert lists)
// with every problem reported.
func FuzzOfflineFile(f *testing.F) {
	for _, pattern := range []string{"../../config/samples/policies/*.yaml", "../../config/samples/cluster/*.yaml", "../../config/samples/*.json"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			if raw, err := os.ReadFile(file); err == nil {
				f.Add(raw)
			}
		}
	}
	f.Add([]byte(`[{"labels":{"alertname":"A","namespace":"shop","pod":"web-1"}}]`))
	f.Add([]byte("apiVersion: v1\nkind: Pod\nmetadata: {name: web, annotations: {riposte.dev/expect-violations: \"no-privileged-containers\"}}\nspec: {containers: [{name: a, image: x}]}\n---\n- 1\n"))
	f.Add([]byte(`{"alerts": [{"labels": {}}], "version": "4"}`))
	f.Fuzz(func(t *testing.T, content []byte) {
		file := filepath.Join(t.TempDir(), "input.yaml")
		if err := os.WriteFile(file, content, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := RunOffline([]string{file}, "default", "riposte-system")
		if err != nil {
			if !strings.Contains(err.Error(), "input.yaml") && !strings.Contains(err.Error(), "playbook") {
				t.Fatalf("an error that names no file: %v", err)
			}
			return
		}
		var b strings.Builder
		out.Print(&b)
		_ = out.Failed(true)
	})
}
