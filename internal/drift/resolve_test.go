package drift

import (
	"context"
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// Which report formats are read follows what the API server serves and
// what Riposte may watch: a format it may not watch is said, and never
// stops the others from being read.
func TestReportKinds(t *testing.T) {
	policyReports := []schema.GroupVersionKind{
		PolicyReportKind.WithVersion("v1alpha2"), ClusterPolicyReportKind.WithVersion("v1alpha2")}
	openReports := []schema.GroupVersionKind{
		OpenReportKind.WithVersion("v1alpha1"), ClusterOpenReportKind.WithVersion("v1alpha1")}
	cases := []struct {
		reason    string
		served    []schema.GroupVersionKind
		forbidden string // a resource group Riposte may not watch
		wantKinds int
		wantSays  []string
		wantErr   string
	}{
		{reason: "both served and watchable", served: append(policyReports, openReports...), wantKinds: 4,
			wantSays: []string{"PolicyReport", "OpenReports"}},
		{reason: "only PolicyReports served", served: policyReports, wantKinds: 2, wantSays: []string{"OpenReports (openreports.io) is not installed"}},
		{reason: "OpenReports may not be watched: PolicyReports are still read", served: append(policyReports, openReports...),
			forbidden: OpenReportsGroup, wantKinds: 2, wantSays: []string{"Riposte may not watch OpenReports"}},
		{reason: "the only format served may not be watched", served: policyReports, forbidden: PolicyReportGroup, wantErr: riposte.ReasonWatchForbidden},
		{reason: "none served", wantErr: riposte.ReasonNotInstalled},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			mapper := meta.NewDefaultRESTMapper([]schema.GroupVersion{policyReports[0].GroupVersion(), openReports[0].GroupVersion()})
			for _, gvk := range tc.served {
				scope := meta.RESTScopeNamespace
				if strings.HasPrefix(gvk.Kind, "Cluster") {
					scope = meta.RESTScopeRoot
				}
				mapper.Add(gvk, scope)
			}
			r := &Resolver{Mapper: mapper, CanWatch: func(_ context.Context, gvr schema.GroupVersionResource) error {
				if gvr.Group == tc.forbidden {
					return errors.New("riposte may not watch " + gvr.Resource)
				}
				return nil
			}}
			kinds, says, problem := r.ReportKinds(context.Background())
			if tc.wantErr != "" {
				if problem == nil || problem.Reason != tc.wantErr {
					t.Fatalf("problem %+v, want reason %s", problem, tc.wantErr)
				}
				return
			}
			if problem != nil {
				t.Fatalf("problem %+v", problem)
			}
			if len(kinds) != tc.wantKinds {
				t.Errorf("kinds %v, want %d", kinds, tc.wantKinds)
			}
			for _, w := range tc.wantSays {
				if !strings.Contains(says, w) {
					t.Errorf("says %q, want it to contain %q", says, w)
				}
			}
		})
	}
}
