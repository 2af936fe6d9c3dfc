package drift

import (
	"errors"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// A remembered judgment is given back only for exactly the inputs it was
// made on; one that could not evaluate a rule, or of an object without a
// resourceVersion, is never given back.
func TestJudgments(t *testing.T) {
	podKey := ObjectKey{GVK: schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "team", Name: "web"}
	rules, otherRules := &struct{ int }{1}, &struct{ int }{2}
	made := Inputs{ResourceVersion: "7", Rules: rules, Stamp: 3}
	violation := Judgement{Findings: []Finding{{Rule: "no-debug", Message: "debug is on"}}, Evaluated: 1,
		Unselected: map[string]bool{"team/other\x00r": true}}
	tests := []struct {
		name    string
		judged  Judgement
		made    Inputs
		asked   Inputs
		wantHit bool
	}{
		{name: "the same inputs", judged: violation, made: made, asked: made, wantHit: true},
		{name: "the object changed", judged: violation, made: made, asked: Inputs{ResourceVersion: "8", Rules: rules, Stamp: 3}},
		{name: "the rules changed", judged: violation, made: made, asked: Inputs{ResourceVersion: "7", Rules: otherRules, Stamp: 3}},
		{name: "something it reads changed", judged: violation, made: made, asked: Inputs{ResourceVersion: "7", Rules: rules, Stamp: 4}},
		{name: "a rule could not be evaluated", made: made, asked: made,
			judged: Judgement{Errors: []error{errors.New("no such key: debug")}, Failed: map[string]bool{"team/p\x00no-debug": true}}},
		{name: "no resourceVersion to tell changes by", judged: violation,
			made: Inputs{Rules: rules}, asked: Inputs{Rules: rules}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var j Judgments
			j.Remember(podKey, tt.made, tt.judged)
			got, hit := j.Lookup(podKey, tt.asked)
			if hit != tt.wantHit {
				t.Fatalf("reused %v, want %v", hit, tt.wantHit)
			}
			if !hit {
				return
			}
			if len(got.Findings) != 1 || got.Findings[0].Message != "debug is on" || !got.Unselected["team/other\x00r"] || len(got.Failed) != 0 {
				t.Errorf("reused %+v, want the judgment remembered", got)
			}
		})
	}
}

// A judgment is dropped with its object, and all of them when the rules change.
func TestJudgmentsForgetAndReset(t *testing.T) {
	a := ObjectKey{GVK: schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "team", Name: "a"}
	b := ObjectKey{GVK: a.GVK, Namespace: "team", Name: "b"}
	in := Inputs{ResourceVersion: "1", Rules: 1}
	var j Judgments
	j.Remember(a, in, Judgement{})
	j.Remember(b, in, Judgement{})
	j.Forget(a)
	if _, hit := j.Lookup(a, in); hit {
		t.Error("a forgotten judgment was reused")
	}
	if _, hit := j.Lookup(b, in); !hit {
		t.Error("forgetting one object dropped another's judgment")
	}
	j.Reset()
	if _, hit := j.Lookup(b, in); hit {
		t.Error("a judgment was reused after Reset")
	}
}

// A stamp changes exactly when an event of one of its kinds came in.
func TestViewsStamp(t *testing.T) {
	var v Views
	kinds := map[schema.GroupVersionKind]bool{nsKind: true, roleKind: true}
	before := v.Stamp(kinds)
	v.Forget(schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, "team", "web")
	if v.Stamp(kinds) != before {
		t.Error("an event of a kind not read changed the stamp")
	}
	v.Forget(roleKind, "team", "reader")
	afterRole := v.Stamp(kinds)
	if afterRole == before {
		t.Error("an event of a looked-up kind left the stamp unchanged")
	}
	v.ForgetKind(nsKind)
	if v.Stamp(kinds) == afterRole {
		t.Error("a kind's watch restarting left the stamp unchanged")
	}
}
