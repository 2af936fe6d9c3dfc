package incident

import (
	"fmt"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/enrich"
	"github.com/riposte-dev/riposte/internal/executor"
	"github.com/riposte-dev/riposte/internal/impersonation"
)

// DefaultRemediator is the account cluster-wide playbooks (those in Riposte's
// namespace) run as when they name none.
const DefaultRemediator = impersonation.DefaultRemediator

// Impersonation makes clients that act as a playbook's service account, one
// per account, reused across incidents.
type Impersonation struct {
	Config *rest.Config
	Mapper meta.RESTMapper

	mu      sync.Mutex
	clients map[string]client.Client
}

// ClientFor returns a client that authenticates as Riposte and acts as user.
func (i *Impersonation) ClientFor(user string, opts client.Options) (client.Client, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if c, ok := i.clients[user]; ok {
		return c, nil
	}
	cfg := rest.CopyConfig(i.Config)
	// The API server adds the account's groups (system:serviceaccounts and
	// system:serviceaccounts:<namespace>) itself when none are given.
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	opts.Mapper = i.Mapper
	c, err := client.New(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("building a client for %s: %w", user, err)
	}
	if i.clients == nil {
		i.clients = map[string]client.Client{}
	}
	i.clients[user] = c
	return c, nil
}

// RunsAs names the identity a playbook's writes use: its own service
// account, or Riposte's default remediator for a cluster-wide playbook that
// names none. A namespaced playbook that names none is refused: it must not
// borrow an identity its namespace does not own. Riposte's own account is
// refused too, even where the admission policy that refuses it is missing.
// Whether Riposte may impersonate the account is the API server's call.
func RunsAs(pb *riposte.Playbook, operatorNamespace string) (string, error) {
	name := impersonation.Account(pb.Namespace, pb.Spec.ServiceAccountName, operatorNamespace)
	if name == "" {
		return "", fmt.Errorf("playbook %s/%s names no serviceAccountName; a playbook outside %s must name the service account, in its own namespace, that its remediation runs as",
			pb.Namespace, pb.Name, operatorNamespace)
	}
	if impersonation.IsManager(pb.Namespace, name, operatorNamespace) {
		return "", fmt.Errorf("playbook %s/%s names Riposte's own account %s/%s; no playbook may run as it",
			pb.Namespace, pb.Name, pb.Namespace, name)
	}
	return "system:serviceaccount:" + pb.Namespace + ":" + name, nil
}

// impersonationRefused stalls the incident, under condition, when err is
// the API server refusing to let Riposte act as the playbook's account: the
// author sees the grant that is missing and the command that gives it,
// rather than a bare 403. nil for any other error.
func (r *Reconciler) impersonationRefused(condition string, pb *riposte.Playbook, err error) error {
	if !impersonation.Refused(err) {
		return nil
	}
	account := impersonation.Account(pb.Namespace, pb.Spec.ServiceAccountName, r.OperatorNamespace)
	return stalled(condition, riposte.ReasonImpersonationNotGranted, impersonation.NotGrantedMessage(pb.Namespace, account, r.OperatorNamespace)+
		" (the API server answered: "+err.Error()+")")
}

// executorFor is the executor that acts as the playbook's account.
func (r *Reconciler) executorFor(pb *riposte.Playbook) (*executor.Executor, error) {
	user, err := RunsAs(pb, r.OperatorNamespace)
	if err != nil {
		return nil, err
	}
	return r.executorAs(user)
}

func (r *Reconciler) executorAs(user string) (*executor.Executor, error) {
	w, err := r.Impersonation.ClientFor(user, client.Options{Scheme: r.Scheme()})
	if err != nil {
		return nil, err
	}
	return &executor.Executor{Reader: r.Client, Writer: w, Scheme: r.Scheme(), Mapper: r.Impersonation.Mapper, Post: r.Post, Cached: r.cached, Silences: r.Silences}, nil
}

// cached reports whether the manager watches gvk (and may: its RBAC lists
// and watches exactly these), so reads of it come from the cache.
func (r *Reconciler) cached(gvk schema.GroupVersionKind) bool {
	r.cachedOnce.Do(func() {
		r.cachedKinds = map[schema.GroupVersionKind]bool{}
		kinds := append(enrich.CachedKinds(), &corev1.Node{}, &corev1.PersistentVolumeClaim{},
			&appsv1.DaemonSet{}, &batchv1.Job{}, &batchv1.CronJob{})
		for _, obj := range kinds {
			if k, err := apiutil.GVKForObject(obj, r.Scheme()); err == nil {
				r.cachedKinds[k] = true
			}
		}
	})
	return r.cachedKinds[gvk]
}
