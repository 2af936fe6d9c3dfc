package executor

import "testing"

func TestContains(t *testing.T) {
	live := map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": "web", "labels": map[string]any{"app": "web", "riposte.dev/quarantine": "deny-all"}},
		"spec":     map[string]any{"policyTypes": []any{"Ingress", "Egress"}, "port": int64(53)},
	}
	cases := []struct {
		reason string
		want   map[string]any
		holds  bool
	}{
		{reason: "a label already set", want: map[string]any{"kind": "Pod", "metadata": map[string]any{"labels": map[string]any{"riposte.dev/quarantine": "deny-all"}}}, holds: true},
		{reason: "a label with another value", want: map[string]any{"metadata": map[string]any{"labels": map[string]any{"riposte.dev/quarantine": "allow-dns"}}}},
		{reason: "a missing label", want: map[string]any{"metadata": map[string]any{"labels": map[string]any{"x": "y"}}}},
		{reason: "lists compare whole", want: map[string]any{"spec": map[string]any{"policyTypes": []any{"Ingress"}}}},
		{reason: "the same list", want: map[string]any{"spec": map[string]any{"policyTypes": []any{"Ingress", "Egress"}}}, holds: true},
		{reason: "numbers of different Go types", want: map[string]any{"spec": map[string]any{"port": 53}}, holds: true},
		{reason: "a map where a value is", want: map[string]any{"spec": map[string]any{"port": map[string]any{"a": 1}}}},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			if got := contains(live, tc.want); got != tc.holds {
				t.Errorf("contains = %v, want %v", got, tc.holds)
			}
		})
	}
}
