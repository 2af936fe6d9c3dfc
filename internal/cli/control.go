package cli

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// undo asks Riposte to undo an incident's remediation, in the caller's name.
// The API server checks the name is the caller's and that they hold the verb
// undo on the incident.
func (c *CLI) undo(ctx context.Context, name, reason string) error {
	user, err := c.WhoAmI(ctx)
	if err != nil {
		return err
	}
	inc := &riposte.Incident{}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: name}, inc); err != nil {
		return fmt.Errorf("reading incident %s/%s: %w", c.Namespace, name, err)
	}
	if inc.Spec.Undo != nil {
		return fmt.Errorf("incident %s/%s: undo was already asked for by %s", c.Namespace, name, inc.Spec.Undo.RequestedBy)
	}
	patch := client.MergeFromWithOptions(inc.DeepCopy(), client.MergeFromWithOptimisticLock{})
	inc.Spec.Undo = &riposte.UndoRequest{RequestedBy: user, Reason: reason}
	if err := c.Client.Patch(ctx, inc, patch); err != nil {
		return fmt.Errorf("asking for the undo of %s/%s: %w", c.Namespace, name, err)
	}
	fmt.Fprintf(c.Out, "undo of incident %s/%s asked for as %s; watch it with: kubectl get incident -n %s %s -w\n", c.Namespace, name, user, c.Namespace, name)
	return nil
}

// escalate keeps an incident's temporary containment in place.
func (c *CLI) escalate(ctx context.Context, name string) error {
	inc := &riposte.Incident{}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: name}, inc); err != nil {
		return fmt.Errorf("reading incident %s/%s: %w", c.Namespace, name, err)
	}
	patch := client.MergeFrom(inc.DeepCopy())
	inc.Spec.Escalated = true
	if err := c.Client.Patch(ctx, inc, patch); err != nil {
		return fmt.Errorf("escalating %s/%s: %w", c.Namespace, name, err)
	}
	fmt.Fprintf(c.Out, "incident %s/%s escalated: its containment stays until undone\n", c.Namespace, name)
	return nil
}

// pause stops every remediation until resume, with a reason people will see
// on every held incident.
func (c *CLI) pause(ctx context.Context, riposteNamespace, reason string) error {
	user, err := c.WhoAmI(ctx)
	if err != nil {
		return err
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: riposte.PauseConfigMapName, Namespace: riposteNamespace},
		Data: map[string]string{"reason": reason + " (paused by " + user + ")"}}
	if err := c.Client.Create(ctx, cm); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("Riposte is already paused (ConfigMap %s/%s)", riposteNamespace, riposte.PauseConfigMapName)
		}
		return fmt.Errorf("pausing: %w", err)
	}
	fmt.Fprintf(c.Out, "Riposte is paused: approved plans wait (condition Held) until kubectl riposte resume\n")
	return nil
}

func (c *CLI) resume(ctx context.Context, riposteNamespace string) error {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: riposte.PauseConfigMapName, Namespace: riposteNamespace}}
	if err := c.Client.Delete(ctx, cm); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("Riposte is not paused")
		}
		return fmt.Errorf("resuming: %w", err)
	}
	fmt.Fprintln(c.Out, "Riposte resumed: held plans run now")
	return nil
}
