package executor

import (
	"testing"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/actions"
)

func TestSelfRecording(t *testing.T) {
	hold := riposte.ChangeRecord{Method: string(actions.MergePatch), Operation: riposte.OperationPatch, Undo: riposte.UndoRelease, Restore: "shop/am-1"}
	sharedPolicy := riposte.ChangeRecord{Method: string(actions.Apply), Operation: riposte.OperationCreate, Undo: riposte.UndoKeep}
	inPlace := riposte.ChangeRecord{Method: string(actions.MergePatch), Operation: riposte.OperationUnchanged, Done: true, Undo: riposte.UndoNone}
	cases := []struct {
		reason  string
		changes []riposte.ChangeRecord
		want    bool
	}{
		{"IsolatePod: a shared policy and a hold named on the pod", []riposte.ChangeRecord{sharedPolicy, hold}, true},
		{"a change already in place writes nothing", []riposte.ChangeRecord{inPlace, hold}, true},
		{"a label's prior value exists only in the record",
			[]riposte.ChangeRecord{{Method: string(actions.MergePatch), Operation: riposte.OperationPatch, Undo: riposte.UndoRestore, Restore: `{"metadata":{"labels":{"a":null}}}`}}, false},
		{"an object Riposte creates is deleted by undo only if recorded",
			[]riposte.ChangeRecord{{Method: string(actions.Apply), Operation: riposte.OperationCreate, Undo: riposte.UndoDelete}}, false},
		{"a deletion destroys what undo re-creates",
			[]riposte.ChangeRecord{{Method: string(actions.Delete), Operation: riposte.OperationDelete, Undo: riposte.UndoRecreate}}, false},
		{"an eviction leaves no trace to plan from again",
			[]riposte.ChangeRecord{{Method: string(actions.Evict), Operation: riposte.OperationEvict, Undo: riposte.UndoNone}}, false},
		{"a message is sent once per record",
			[]riposte.ChangeRecord{{Method: string(actions.Send), Operation: riposte.OperationSend, Undo: riposte.UndoNone}}, false},
		{"a release restore that is not a merge patch is no hold",
			[]riposte.ChangeRecord{{Method: string(actions.Apply), Operation: riposte.OperationPatch, Undo: riposte.UndoRelease}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			records := []riposte.StepRecord{{Name: "s", Changes: tc.changes}}
			if got := SelfRecording(records); got != tc.want {
				t.Errorf("SelfRecording = %v, want %v", got, tc.want)
			}
		})
	}
	if !SelfRecording(nil) {
		t.Error("no records: nothing to lose")
	}
}
