package drift

import (
	"sync"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Judgments remembers what judging each object found and what it was
// judged on, so that the periodic re-evaluation judges again only the
// objects whose inputs changed. A rule is a pure function of the object, its
// Namespace, its lookups and (for a workload) its owner: the same inputs
// give the same verdict. Judging every one of 10,000 unchanged pods again
// on each pass cost a core for a second and most of the manager's garbage,
// and every alert and violation in that second waited behind it.
//
// What a remembered judgment stands for is checked, never assumed: the
// object's resourceVersion, the rules in force (the caller's registry,
// replaced whole whenever a rule changes) and the stamp of the views of
// every kind judging it may read. A judgment that could not evaluate a rule
// is not remembered.
type Judgments struct {
	mu       sync.Mutex
	byObject map[ObjectKey]remembered
}

// ObjectKey names one judged object.
type ObjectKey struct {
	GVK             schema.GroupVersionKind
	Namespace, Name string
}

// Inputs are what one judgment was made on.
type Inputs struct {
	ResourceVersion string
	// Rules is the identity of the rules in force, compared with ==.
	Rules any
	// Stamp is Views.Stamp of the kinds the judgment may read, taken before
	// it read them.
	Stamp uint64
}

type remembered struct {
	Inputs
	findings   []Finding
	unselected []string
}

// Lookup returns the judgment made on exactly these inputs, if one is remembered.
func (j *Judgments) Lookup(key ObjectKey, in Inputs) (Judgement, bool) {
	j.mu.Lock()
	r, ok := j.byObject[key]
	j.mu.Unlock()
	if !ok || r.Inputs != in || in.ResourceVersion == "" {
		return Judgement{}, false
	}
	out := Judgement{Findings: r.findings}
	if len(r.unselected) > 0 {
		out.Unselected = make(map[string]bool, len(r.unselected))
		for _, k := range r.unselected {
			out.Unselected[k] = true
		}
	}
	return out, true
}

// Remember keeps a judgment made on in; one with errors is forgotten
// instead, so the next pass evaluates it again.
func (j *Judgments) Remember(key ObjectKey, in Inputs, judged Judgement) {
	if len(judged.Errors) > 0 || len(judged.Failed) > 0 || in.ResourceVersion == "" {
		j.Forget(key)
		return
	}
	r := remembered{Inputs: in, findings: judged.Findings}
	for k := range judged.Unselected {
		r.unselected = append(r.unselected, k) // the rules' own strings
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.byObject == nil {
		j.byObject = map[ObjectKey]remembered{}
	}
	j.byObject[key] = r
}

// Forget drops an object's judgment (it is gone, or was judged with errors).
func (j *Judgments) Forget(key ObjectKey) {
	j.mu.Lock()
	defer j.mu.Unlock()
	delete(j.byObject, key)
}

// Reset drops every judgment: the rules changed, so none can be reused,
// and objects of kinds no longer judged would otherwise stay remembered.
func (j *Judgments) Reset() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.byObject = nil
}
