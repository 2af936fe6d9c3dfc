package executor

import (
	"encoding/json"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

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

func TestContainsTreatsNullAsAbsent(t *testing.T) {
	live := map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": "web"}}}
	if !contains(live, map[string]any{"metadata": map[string]any{"labels": map[string]any{"gone": nil}}}) {
		t.Error("a merge patch removing an absent key should already hold")
	}
	if contains(live, map[string]any{"metadata": map[string]any{"labels": map[string]any{"app": nil}}}) {
		t.Error("a merge patch removing a present key does not hold yet")
	}
}

func TestPrior(t *testing.T) {
	live := map[string]any{
		"metadata": map[string]any{"labels": map[string]any{"app": "web", "tier": "front"}},
		"spec":     map[string]any{"replicas": int64(3), "taints": []any{"a"}},
	}
	cases := []struct {
		reason string
		want   map[string]any
		prior  string
	}{
		{reason: "a changed value is put back", want: map[string]any{"spec": map[string]any{"replicas": 0}}, prior: `{"spec":{"replicas":3}}`},
		{reason: "an added key is removed", want: map[string]any{"metadata": map[string]any{"labels": map[string]any{"q": "x"}}}, prior: `{"metadata":{"labels":{"q":null}}}`},
		{reason: "a removed key comes back", want: map[string]any{"metadata": map[string]any{"labels": map[string]any{"tier": nil}}}, prior: `{"metadata":{"labels":{"tier":"front"}}}`},
		{reason: "a whole map that was absent is removed key by key, keeping others' keys", want: map[string]any{"metadata": map[string]any{"annotations": map[string]any{"a": "1"}}}, prior: `{"metadata":{"annotations":{"a":null}}}`},
		{reason: "a list is put back whole", want: map[string]any{"spec": map[string]any{"taints": []any{"a", "b"}}}, prior: `{"spec":{"taints":["a"]}}`},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			b, _ := json.Marshal(prior(live, tc.want))
			if string(b) != tc.prior {
				t.Errorf("prior = %s, want %s", b, tc.prior)
			}
		})
	}
}

func TestRecreatableDropsWhatTheServerAssigns(t *testing.T) {
	ref := &unstructured.Unstructured{}
	ref.SetAPIVersion("rbac.authorization.k8s.io/v1")
	ref.SetKind("RoleBinding")
	live := map[string]any{
		"metadata": map[string]any{"name": "b", "namespace": "shop", "uid": "u", "resourceVersion": "9", "creationTimestamp": "t",
			"managedFields": []any{}, "labels": map[string]any{"team": "a"}},
		"subjects": []any{"x"}, "status": map[string]any{"y": 1},
	}
	b, _ := json.Marshal(recreatable(live, ref))
	want := `{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"labels":{"team":"a"},"name":"b","namespace":"shop"},"subjects":["x"]}`
	if string(b) != want {
		t.Errorf("recreatable = %s\nwant %s", b, want)
	}
}
