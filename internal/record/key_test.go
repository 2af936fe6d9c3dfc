package record

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Replicas started together with --record-create-signing-key on one
// volume: each must load the one key made, never a file half written (a
// fault test's second replica once failed with "not a PEM PRIVATE KEY").
func TestLoadKeyCreatedByReplicasAtOnce(t *testing.T) {
	for round := range 50 {
		path := filepath.Join(t.TempDir(), "keys", "ed25519.key")
		const replicas = 8
		keys := make([][]byte, replicas)
		errs := make([]error, replicas)
		var start, done sync.WaitGroup
		start.Add(1)
		for i := range replicas {
			done.Add(1)
			go func() {
				defer done.Done()
				start.Wait()
				k, err := LoadKey(path, true)
				keys[i], errs[i] = k, err
			}()
		}
		start.Done()
		done.Wait()
		for i := range replicas {
			if errs[i] != nil {
				t.Fatalf("round %d, replica %d: %v", round, i, errs[i])
			}
			if string(keys[i]) != string(keys[0]) {
				t.Fatalf("round %d: replica %d loaded another key than replica 0", round, i)
			}
		}
		entries, err := os.ReadDir(filepath.Dir(path))
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			t.Fatalf("round %d: %d files in the key's directory, want the key alone", round, len(entries))
		}
	}
}
