// Package controllers builds Riposte's manager (NewManager) and wires its
// reconcilers into it.
package controllers

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	authorizationclient "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/controllers/approvalgate"
	"github.com/riposte-dev/riposte/controllers/drift"
	"github.com/riposte-dev/riposte/controllers/incident"
	"github.com/riposte-dev/riposte/controllers/playbook"
	"github.com/riposte-dev/riposte/controllers/retention"
	"github.com/riposte-dev/riposte/internal/approval"
	driftrules "github.com/riposte-dev/riposte/internal/drift"
	"github.com/riposte-dev/riposte/internal/enrich"
	"github.com/riposte-dev/riposte/internal/executor"
	"github.com/riposte-dev/riposte/internal/expr"
	"github.com/riposte-dev/riposte/internal/guard"
	"github.com/riposte-dev/riposte/internal/notify"
	"github.com/riposte-dev/riposte/internal/priority"
	"github.com/riposte-dev/riposte/internal/record"
	"github.com/riposte-dev/riposte/internal/silence"
)

// Options configure every reconciler.
type Options struct {
	// OperatorNamespace is where cluster-wide playbooks live.
	OperatorNamespace string
	// ProtectedNamespaces are never acted in.
	ProtectedNamespaces []string
	// MaxConcurrentReconciles per controller; writes are not throttled
	// client-side, so this is what uses the cores.
	MaxConcurrentReconciles int
	// NotifyURL, when set, receives a JSON message for every gate that waits
	// for people. The admin chose it, so it needs no listing.
	NotifyURL string
	// NotifyButtons adds Slack approve, reject and show-the-plan buttons
	// to that message, for the chat bridge.
	NotifyButtons bool
	// NotifyAllowedDestinations are where Notify steps may post (see
	// notify.ParseDestinations); empty allows none.
	NotifyAllowedDestinations []string
	// Budget is the cluster-wide limit on remediation.
	Budget guard.Budget
	// AlertmanagerURL, when set, is where Silence steps create silences.
	AlertmanagerURL string
	// DriftResync is how often every object drift rules watch is judged
	// again; 0 means every 10 minutes.
	DriftResync time.Duration
	// IncidentRetention is how long a closed incident is kept before it is
	// deleted; 0 keeps every incident.
	IncidentRetention time.Duration
	// Lanes, when set, is shared with intake, whose writes go first.
	Lanes *priority.Lanes
	// Records, when set, stores the signed record of every incident
	// milestone in a sink; nil keeps none beyond Events and the log.
	Records *Records
}

// Records configure the tamper-evident trail.
type Records struct {
	Sink record.Sink
	// Key signs every record.
	Key ed25519.PrivateKey
	// Cluster names the chain.
	Cluster string
	// Previous are the public keys Key replaced: records they signed are
	// built on, as the manager's own.
	Previous map[string]ed25519.PublicKey
}

var decisionPolicyOnly = fields.OneTermEqualSelector("metadata.name", approval.DecisionPolicyName)

// cacheOptions configure the manager's cache: managed fields are never read,
// so they are dropped to keep the cache small, Events keep only what the
// timeline reads, and ConfigMaps (the pause switch) are watched in
// Riposte's own namespace only.
func cacheOptions(operatorNamespace string) cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Event{}:     {Transform: enrich.TrimEvent},
			&corev1.ConfigMap{}: {Namespaces: map[string]cache.Config{operatorNamespace: {}}},
			// Only the decision policy, which is all Riposte may read of them.
			&admissionv1.ValidatingAdmissionPolicy{}:        {Field: decisionPolicyOnly},
			&admissionv1.ValidatingAdmissionPolicyBinding{}: {Field: decisionPolicyOnly},
		},
	}
}

// clientOptions configure the manager's client. Reads from the cache wait
// until the cache has seen this process's own writes, so a reconcile never
// acts on a status older than the one it just wrote (which would repeat a
// step and its Events). Writes of unstructured objects opt out, so they do
// not start a second, unstructured cache of the same kinds.
func clientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{
		EnableReadYourWritesConsistency: ptr.To(true),
		// Optional APIs (the Gateway API's routes) are read as unstructured
		// objects; serve those from the cache too, not a list per incident.
		Unstructured: true,
	}}
}

// setup registers the Incident, ApprovalGate and Playbook reconcilers and
// the drift detector.
func setup(mgr ctrl.Manager, opts Options) error {
	exprs := &expr.Cache{}
	authorization, err := authorizationclient.NewForConfig(mgr.GetConfig())
	if err != nil {
		return err
	}
	resolver := &driftrules.Resolver{
		Mapper:            mgr.GetRESTMapper(),
		CanWatch:          canWatch(authorization),
		OperatorNamespace: opts.OperatorNamespace,
	}
	if err := (&playbook.Reconciler{
		Client:            mgr.GetClient(),
		Exprs:             exprs,
		Drift:             resolver,
		CanImpersonate:    canImpersonate(authorization),
		OperatorNamespace: opts.OperatorNamespace,
	}).SetupWithManager(mgr, opts.MaxConcurrentReconciles); err != nil {
		return err
	}
	for _, ix := range enrich.Indexes() {
		if err := mgr.GetFieldIndexer().IndexField(context.Background(), ix.Object, ix.Field, ix.Extract); err != nil {
			return err
		}
	}
	if err := setupDrift(mgr, opts, resolver); err != nil {
		return err
	}
	gates := &approvalgate.Reconciler{
		Client:            mgr.GetClient(),
		APIReader:         mgr.GetAPIReader(),
		Recorder:          mgr.GetEventRecorder("riposte-approvalgate"),
		OperatorNamespace: opts.OperatorNamespace,
	}
	if opts.NotifyURL != "" {
		gates.Notifier = &notify.Webhook{URL: opts.NotifyURL}
		gates.ChatButtons = opts.NotifyButtons
	}
	if err := gates.SetupWithManager(mgr, opts.MaxConcurrentReconciles); err != nil {
		return err
	}
	for _, c := range append(drift.Collectors(), approvalgate.NewPendingCollector(mgr.GetClient()), incident.NewIncidentCollector(mgr.GetClient()), incident.NewDriftOpenCollector(mgr.GetClient())) {
		if err := metrics.Registry.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return err
			}
		}
	}
	// Start every informer enrichment reads before the first alert, so the
	// first incident does not pay for listing the cluster.
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		for _, obj := range enrich.CachedKinds() {
			if _, err := mgr.GetCache().GetInformer(ctx, obj); err != nil {
				return fmt.Errorf("starting the informer for %T: %w", obj, err)
			}
		}
		return nil
	})); err != nil {
		return err
	}
	if opts.IncidentRetention > 0 {
		if err := (&retention.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), After: opts.IncidentRetention, Workers: opts.MaxConcurrentReconciles}).SetupWithManager(mgr); err != nil {
			return err
		}
	}
	destinations, err := notify.ParseDestinations(opts.NotifyAllowedDestinations)
	if err != nil {
		return err
	}
	messages := &notify.Webhook{Attempts: 4, Destinations: destinations}
	var silences executor.Silences
	if opts.AlertmanagerURL != "" {
		silences = &silence.Client{URL: opts.AlertmanagerURL}
	}
	var records *record.Writer
	if opts.Records != nil {
		records = &record.Writer{Sink: opts.Records.Sink, Signer: record.Signer{Key: opts.Records.Key, Cluster: opts.Records.Cluster}, Trusted: opts.Records.Previous}
		if err := mgr.Add(records); err != nil {
			return err
		}
	}
	return (&incident.Reconciler{
		Records:             records,
		Lanes:               opts.Lanes,
		Silences:            silences,
		Client:              mgr.GetClient(),
		APIReader:           mgr.GetAPIReader(),
		Recorder:            mgr.GetEventRecorder("riposte-incident"),
		Exprs:               exprs,
		OperatorNamespace:   opts.OperatorNamespace,
		ProtectedNamespaces: opts.ProtectedNamespaces,
		Impersonation:       &incident.Impersonation{Config: mgr.GetConfig(), Mapper: mgr.GetRESTMapper()},
		Budget:              opts.Budget,
		Post: func(ctx context.Context, url string, body any, key string) error {
			w := *messages
			w.URL = url
			return w.Post(ctx, body, key)
		},
	}).SetupWithManager(mgr, opts.MaxConcurrentReconciles)
}

// setupDrift adds the drift detector, which runs on the leader only.
func setupDrift(mgr ctrl.Manager, opts Options, resolver *driftrules.Resolver) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &riposte.Incident{}, driftrules.IndexSource, drift.IndexOpenBySource); err != nil {
		return err
	}
	keep := map[schema.GroupVersionKind]bool{}
	for _, obj := range append(enrich.CachedKinds(), &corev1.Pod{}, &corev1.ConfigMap{}, &riposte.Incident{}, &riposte.Playbook{}, &riposte.ApprovalGate{}) {
		gvk, err := apiutil.GVKForObject(obj, mgr.GetScheme())
		if err != nil {
			return err
		}
		keep[gvk] = true
	}
	// The detector writes and reads its incidents through a client of its
	// own. Its reads still wait until the cache shows its own writes (so it
	// never opens or resolves an incident twice), but not for the status
	// writes of the incident reconciler: through the manager's client, every
	// judgment's List of incidents waited for whatever incident was being
	// remediated at the time (a median 11 ms and a p99 of 100 ms in the
	// drift bench), and nothing the detector decides reads those writes.
	copts := clientOptions()
	copts.Scheme, copts.Mapper, copts.HTTPClient = mgr.GetScheme(), mgr.GetRESTMapper(), mgr.GetHTTPClient()
	copts.Cache.Reader = mgr.GetCache()
	own, err := client.New(mgr.GetConfig(), copts)
	if err != nil {
		return err
	}
	return mgr.Add(&drift.Detector{
		Client:   own,
		Cache:    mgr.GetCache(),
		Scheme:   mgr.GetScheme(),
		Resolver: resolver,
		Resync:   opts.DriftResync,
		Workers:  max(opts.MaxConcurrentReconciles, 1),
		Keep:     keep,
		Recorder: mgr.GetEventRecorder("riposte-drift"),
	})
}

// canWatch asks the API server whether Riposte itself may list and watch a
// resource in every namespace, so a rule naming a kind it may not read is
// reported on its playbook instead of failing quietly in an informer.
func canWatch(c authorizationclient.SelfSubjectAccessReviewsGetter) func(ctx context.Context, gvr schema.GroupVersionResource) error {
	return func(ctx context.Context, gvr schema.GroupVersionResource) error {
		for _, verb := range []string{"list", "watch"} {
			review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
				ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb, Group: gvr.Group, Resource: gvr.Resource},
			}}
			review, err := c.SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("checking whether Riposte may %s %s: %w", verb, gvr.GroupResource(), err)
			}
			if !review.Status.Allowed {
				return fmt.Errorf("Riposte's service account may not %s %s in every namespace; grant it get, list and watch on them (a ClusterRole bound to riposte-controller-manager) to use this rule", verb, gvr.GroupResource())
			}
		}
		return nil
	}
}

// canImpersonate asks the API server whether Riposte itself may impersonate
// a service account: the same check (verb impersonate on the core resource
// serviceaccounts, by namespace and name) that the API server's
// impersonation filter makes on every request Riposte sends as a playbook.
func canImpersonate(c authorizationclient.SelfSubjectAccessReviewsGetter) func(ctx context.Context, namespace, account string) (bool, error) {
	return func(ctx context.Context, namespace, account string) (bool, error) {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "impersonate", Resource: "serviceaccounts", Namespace: namespace, Name: account},
		}}
		review, err := c.SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		return review.Status.Allowed, nil
	}
}
