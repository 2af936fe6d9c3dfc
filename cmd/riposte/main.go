// Command riposte is the Riposte manager: the controllers and the
// Alertmanager intake endpoint. main wires; the work lives in controllers/
// and internal/.
package main

import (
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/controllers"
	"github.com/riposte-dev/riposte/internal/guard"
	"github.com/riposte-dev/riposte/internal/intake"
	"github.com/riposte-dev/riposte/internal/priority"
	"github.com/riposte-dev/riposte/internal/record"
)

type options struct {
	namespace           string
	metricsAddr         string
	metricsSecure       bool
	probeAddr           string
	leaderElect         bool
	leaseDuration       time.Duration
	renewDeadline       time.Duration
	retryPeriod         time.Duration
	intakeAddr          string
	intakeTokenFile     string
	intakeTokenSecret   string
	intakeTLSCert       string
	intakeTLSKey        string
	intakeMaxAlerts     int
	protectedNamespaces string
	concurrency         int
	memoryLimitRatio    float64
	passesWhileStoring  int
	notifyURL           string
	notifyButtons       bool
	notifyDestinations  string
	stepsPerMinute      int
	alertmanagerURL     string
	maxWorkloadFraction float64
	driftResync         time.Duration
	incidentRetention   time.Duration
	pprofAddr           string
	clusterName         string
	recordDir           string
	recordS3            record.S3Options
	recordKey           string
	recordCreateKey     bool
	recordPreviousKeys  fileList
}

// fileList is a repeatable flag naming files.
type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(v string) error { *f = append(*f, v); return nil }

func main() {
	if len(os.Args) > 1 {
		sub := map[string]func([]string) error{"mcp": runMCP, "slack-bridge": runSlackBridge}[os.Args[1]]
		if sub != nil {
			if err := sub(os.Args[2:]); err != nil {
				fmt.Fprintf(os.Stderr, "riposte %s: %v\n", os.Args[1], err)
				os.Exit(1)
			}
			return
		}
	}
	var o options
	defaultNS := os.Getenv("POD_NAMESPACE")
	if defaultNS == "" {
		defaultNS = "riposte-system"
	}
	flag.StringVar(&o.namespace, "namespace", defaultNS, "Riposte's own namespace: playbooks here are cluster-wide, and incidents with no namespace of their own go here.")
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "Address of the metrics endpoint; 0 disables it.")
	flag.BoolVar(&o.metricsSecure, "metrics-secure", false, "Serve metrics over HTTPS, only to callers the API server authenticates and authorizes (get on /metrics).")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address of the health and readiness probes.")
	flag.StringVar(&o.pprofAddr, "pprof-bind-address", "", "Address of Go's profiling endpoints (/debug/pprof), for measuring CPU and memory; empty (the default) serves none. Bind it to loopback: profiles show what the manager holds.")
	flag.BoolVar(&o.leaderElect, "leader-elect", false, "Elect a leader so only one replica reconciles; intake serves on every replica.")
	flag.DurationVar(&o.leaseDuration, "leader-elect-lease-duration", 15*time.Second, "How long a leader's Lease holds without renewal: a leader that dies is replaced after at most this long.")
	flag.DurationVar(&o.renewDeadline, "leader-elect-renew-deadline", 10*time.Second, "How long a leader keeps trying to renew its Lease (the API server unreachable) before it stops reconciling and exits; shorter than the lease duration.")
	flag.DurationVar(&o.retryPeriod, "leader-elect-retry-period", 2*time.Second, "How often a replica tries to take or renew the Lease.")
	flag.StringVar(&o.intakeAddr, "intake-bind-address", ":8090", "Address of the Alertmanager webhook endpoint (POST /webhook/alertmanager).")
	flag.StringVar(&o.intakeTokenFile, "intake-token-file", "", "File holding the bearer token Alertmanager must send.")
	flag.StringVar(&o.intakeTokenSecret, "intake-token-secret", "", "namespace/name of a Secret whose key 'token' holds the bearer token.")
	flag.StringVar(&o.intakeTLSCert, "intake-tls-cert-file", "", "TLS certificate for the intake endpoint.")
	flag.StringVar(&o.intakeTLSKey, "intake-tls-key-file", "", "TLS key for the intake endpoint.")
	flag.IntVar(&o.intakeMaxAlerts, "intake-max-alerts", intake.DefaultMaxAlerts, "Most alerts one notification may carry; a larger one is answered 413 before it is decoded. Keep the Alertmanager receiver's max_alerts at or below it.")
	flag.StringVar(&o.protectedNamespaces, "protected-namespaces", "kube-system,kube-public", "Namespaces Riposte never acts in; its own namespace is always added.")
	flag.Float64Var(&o.memoryLimitRatio, "memory-limit-ratio", 0.9, "Give the Go runtime a soft memory limit of this fraction of the container's memory limit (read from its cgroup, again every minute), so that it collects garbage sooner as it nears the limit instead of being killed; 0 sets none, and neither does a container without a limit. GOMEMLIMIT, when set, wins; AUTOMEMLIMIT is refused. The runtime does not count the binary's own resident pages (about 50 MiB), which the container is charged for too: under a small limit, lower the fraction.")
	flag.IntVar(&o.concurrency, "concurrency", 8, "Concurrent reconciles per controller.")
	flag.IntVar(&o.passesWhileStoring, "remediation-passes-while-storing", 1, "Incident passes that may run while intake is storing alerts (at least 1; a pass waits at most 1s): intake's writes go first in a storm. At --concurrency or more, intake's writes do not go first.")
	flag.Float64Var(&o.maxWorkloadFraction, "budget-max-workload-fraction", 0, "Cluster-wide budget: at most this fraction (0 to 1) of one workload's pods isolated, deleted or evicted at once, counting those already out; a plan over it waits. 0 is no budget (isolating a single-replica workload's only pod is then allowed).")
	flag.StringVar(&o.alertmanagerURL, "alertmanager-url", "", "Alertmanager's base URL (for example http://alertmanager.monitoring:9093), where Silence steps create silences; empty refuses Silence steps.")
	flag.IntVar(&o.stepsPerMinute, "budget-steps-per-minute", 0, "Cluster-wide budget: at most this many remediation steps start in any minute, over all playbooks; 0 is no budget.")
	flag.DurationVar(&o.driftResync, "drift-resync-interval", 10*time.Minute, "How often every object drift rules watch is judged again, to catch anything a watch missed; changes are judged as they happen.")
	flag.DurationVar(&o.incidentRetention, "incident-retention", 30*24*time.Hour, "How long a closed incident (Resolved, Undone, Rejected, Cancelled, DryRun, Unmatched) is kept before it is deleted, with its gates; 0 keeps every incident. An alert's or drift finding's incident goes only once its source resolved it (a Failed one whose alert resolves is Resolved, and goes too); open incidents and those whose remediation is still in place are never deleted by retention; the deletion of one that did something writes its record out first (Events and the log).")
	flag.StringVar(&o.notifyDestinations, "notify-allowed-destinations", "", "Comma-separated list of where Notify steps may post: hosts (hooks.slack.com: HTTPS, any port), wildcards (*.example.com: HTTPS to its subdomains) or URL prefixes (http://chat.internal:8065/hooks/). Empty refuses every Notify step. Loopback, link-local and cloud metadata addresses are reached only when listed by number.")
	flag.StringVar(&o.notifyURL, "approval-notify-url", os.Getenv("RIPOSTE_APPROVAL_NOTIFY_URL"), "Optional webhook (JSON with a Slack-compatible text field) told about every gate that waits for people; by default $RIPOSTE_APPROVAL_NOTIFY_URL, which the chart sets from a Secret.")
	flag.BoolVar(&o.notifyButtons, "approval-notify-slack-buttons", false, "Add Slack Block Kit approve, reject and show-the-plan buttons to that message; the Slack app's interactivity URL must reach `riposte slack-bridge`.")
	zapOpts := zap.Options{}
	flag.StringVar(&o.clusterName, "cluster-name", "default", "This cluster's name in its records: each cluster's records are one chain, and an S3 sink keeps them under this prefix unless --record-s3-prefix says otherwise.")
	flag.StringVar(&o.recordDir, "record-dir", "", "Directory (a PersistentVolume) where the signed, hash-chained record of every decided incident is stored; a deleted incident waits until its record is. Empty, with no --record-s3-bucket, keeps no record beyond Events and the log.")
	flag.StringVar(&o.recordS3.Bucket, "record-s3-bucket", "", "S3 bucket where records are stored (instead of --record-dir); credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.")
	flag.StringVar(&o.recordS3.Endpoint, "record-s3-endpoint", "", "URL of an S3-compatible API (MinIO, SeaweedFS, Ceph); empty is AWS's.")
	flag.StringVar(&o.recordS3.Region, "record-s3-region", "us-east-1", "Region of the record bucket.")
	flag.StringVar(&o.recordS3.Prefix, "record-s3-prefix", "", "Folder in the bucket for this cluster's records; empty is --cluster-name.")
	flag.BoolVar(&o.recordS3.PathStyle, "record-s3-path-style", false, "Address the bucket in the URL path (most S3-compatible servers), not as a host name.")
	flag.DurationVar(&o.recordS3.ObjectLock, "record-s3-object-lock", 0, "Keep each record under S3 Object Lock in compliance mode for this long (the bucket must have Object Lock enabled); 0 sets no lock.")
	flag.StringVar(&o.recordKey, "record-signing-key", "", "File holding the ed25519 private key (PKCS #8 PEM) that signs records: a Secret's key, mounted. Required with a record sink.")
	flag.BoolVar(&o.recordCreateKey, "record-create-signing-key", false, "Create the signing key file if it is missing (for make run; in a cluster the key is a Secret).")
	flag.Var(&o.recordPreviousKeys, "record-previous-public-key", "File holding a public key (PEM) that signed this cluster's records before --record-signing-key replaced it; repeatable. The manager builds its chain only on records signed by its own key or one of these: any other record in the sink is skipped, logged and counted (riposte_records_untrusted_total).")
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	if err := run(o); err != nil {
		ctrl.Log.Error(err, "riposte stopped")
		os.Exit(1)
	}
}

// Secure metrics ask the API server who the caller is and whether it may read them.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// The intake token Secret is read directly (no cluster-wide Secret cache), and
// only that one Secret in Riposte's namespace.
// +kubebuilder:rbac:groups="",namespace=riposte-system,resources=secrets,verbs=get,resourceNames=riposte-intake-token

func run(o options) error {
	if err := checkMemoryLimitRatio(o.memoryLimitRatio); err != nil {
		return err
	}
	if o.maxWorkloadFraction < 0 || o.maxWorkloadFraction > 1 {
		return fmt.Errorf("--budget-max-workload-fraction %v: want a fraction from 0 (no budget) to 1", o.maxWorkloadFraction)
	}
	if o.driftResync < time.Second {
		return fmt.Errorf("--drift-resync-interval %s: want at least 1s", o.driftResync)
	}
	if o.passesWhileStoring < 1 {
		return fmt.Errorf("--remediation-passes-while-storing %d: want at least 1, so that remediation goes on while intake stores", o.passesWhileStoring)
	}
	if o.incidentRetention < 0 {
		return fmt.Errorf("--incident-retention %s: want 0 (keep every incident) or more", o.incidentRetention)
	}
	lease := controllers.LeaseTiming{LeaseDuration: o.leaseDuration, RenewDeadline: o.renewDeadline, RetryPeriod: o.retryPeriod}
	if err := lease.Validate(); err != nil {
		return fmt.Errorf("--leader-elect-lease-duration, --leader-elect-renew-deadline, --leader-elect-retry-period: %w", err)
	}
	if o.stepsPerMinute < 0 {
		return fmt.Errorf("--budget-steps-per-minute %d: want 0 (no budget) or more", o.stepsPerMinute)
	}
	if o.intakeTokenFile == "" && o.intakeTokenSecret == "" {
		return errors.New("the intake endpoint needs a bearer token: set --intake-token-file or --intake-token-secret")
	}
	records, err := recordOptions(o)
	if err != nil {
		return err
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	ctx := ctrl.SetupSignalHandler()
	if _, err := setMemoryLimit(ctx, o.memoryLimitRatio, memlimit.FromCgroup, ctrl.Log.WithName("memory")); err != nil {
		return err
	}
	if err := waitForAPIServer(ctx, cfg, o.probeAddr, ctrl.Log.WithName("setup")); errors.Is(err, errStoppedWaiting) {
		return nil
	} else if err != nil {
		return err
	}
	protected := []string{o.namespace}
	for _, ns := range strings.Split(o.protectedNamespaces, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			protected = append(protected, ns)
		}
	}
	// Intake's writes go before remediation's: an alert not stored yet is
	// one Alertmanager may have to send again.
	lanes := &priority.Lanes{Passes: o.passesWhileStoring}
	mgr, err := newManager(ctx, cfg, controllers.ManagerOptions{
		Options: controllers.Options{
			OperatorNamespace:         o.namespace,
			ProtectedNamespaces:       protected,
			MaxConcurrentReconciles:   o.concurrency,
			NotifyURL:                 o.notifyURL,
			NotifyButtons:             o.notifyButtons,
			NotifyAllowedDestinations: strings.Split(o.notifyDestinations, ","),
			Budget:                    guard.Budget{StepsPerMinute: o.stepsPerMinute, MaxWorkloadFraction: o.maxWorkloadFraction},
			AlertmanagerURL:           o.alertmanagerURL,
			DriftResync:               o.driftResync,
			IncidentRetention:         o.incidentRetention,
			Records:                   records,
			Lanes:                     lanes,
		},
		Metrics:                metricsOptions(o),
		HealthProbeBindAddress: o.probeAddr,
		PprofBindAddress:       o.pprofAddr,
		LeaderElection:         o.leaderElect,
		LeaderElectionTiming:   lease,
	})
	if errors.Is(err, errStoppedWaiting) {
		return nil
	} else if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}

	var token intake.TokenSource = &intake.FileToken{Path: o.intakeTokenFile}
	if o.intakeTokenSecret != "" {
		ns, name, ok := strings.Cut(o.intakeTokenSecret, "/")
		if !ok {
			return fmt.Errorf("--intake-token-secret %q: want namespace/name", o.intakeTokenSecret)
		}
		// Read the Secret directly rather than caching every Secret in the cluster.
		token = &intake.SecretToken{Reader: mgr.GetAPIReader(), Key: types.NamespacedName{Namespace: ns, Name: name}}
	}
	intakeMetrics, err := intake.NewPrometheusMetrics(metrics.Registry)
	if err != nil {
		return fmt.Errorf("registering intake metrics: %w", err)
	}
	store := &intake.ApplyStore{Client: mgr.GetClient(), FieldOwner: "riposte-intake", DefaultNamespace: o.namespace,
		Seen: mgr.GetClient(), Deduplicated: intakeMetrics.Deduplicated(), Lanes: lanes}
	// A deleted incident is stored again by the next notification, even
	// one that repeats what intake applied moments before.
	incidents, err := mgr.GetCache().GetInformer(ctx, &riposte.Incident{})
	if err != nil {
		return fmt.Errorf("watching incidents for intake: %w", err)
	}
	if _, err := incidents.AddEventHandler(toolscache.ResourceEventHandlerFuncs{DeleteFunc: store.ForgetDeleted}); err != nil {
		return err
	}
	if err := mgr.Add(&intake.Server{
		Addr:     o.intakeAddr,
		CertFile: o.intakeTLSCert,
		KeyFile:  o.intakeTLSKey,
		Log:      ctrl.Log.WithName("intake"),
		Handler: &intake.Handler{
			Store:            store,
			Token:            token,
			DefaultNamespace: o.namespace,
			MaxAlerts:        o.intakeMaxAlerts,
			Log:              ctrl.Log.WithName("intake"),
			Metrics:          intakeMetrics,
			// Events go through the manager's broadcaster, off the answer's path.
			Recorder: mgr.GetEventRecorder("riposte-intake"),
		},
	}); err != nil {
		return fmt.Errorf("adding intake endpoint: %w", err)
	}

	ctrl.Log.Info("starting riposte", "namespace", o.namespace, "intake", o.intakeAddr, "protectedNamespaces", protected)
	return mgr.Start(ctx)
}

// metricsOptions serves metrics in plain HTTP for local runs, or behind
// the API server's authentication and authorization in a cluster.
func metricsOptions(o options) metricsserver.Options {
	opts := metricsserver.Options{BindAddress: o.metricsAddr}
	if o.metricsSecure {
		opts.SecureServing = true
		opts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	return opts
}

// recordOptions builds the record sink the flags name, if any.
func recordOptions(o options) (*controllers.Records, error) {
	var sink record.Sink
	switch {
	case o.recordDir != "" && o.recordS3.Bucket != "":
		return nil, errors.New("--record-dir and --record-s3-bucket: records go to one sink; choose one")
	case o.recordDir != "":
		sink = record.Dir{Path: o.recordDir}
	case o.recordS3.Bucket != "":
		if o.recordS3.Prefix == "" {
			o.recordS3.Prefix = o.clusterName
		}
		s3, err := record.NewS3(o.recordS3)
		if err != nil {
			return nil, fmt.Errorf("--record-s3-bucket: %w", err)
		}
		sink = s3
	case o.recordKey != "":
		return nil, errors.New("--record-signing-key without a sink: set --record-dir or --record-s3-bucket")
	default:
		return nil, nil
	}
	if o.recordKey == "" {
		return nil, fmt.Errorf("records to %s need a signing key: set --record-signing-key", sink)
	}
	key, err := record.LoadKey(o.recordKey, o.recordCreateKey)
	if err != nil {
		return nil, fmt.Errorf("--record-signing-key: %w", err)
	}
	previous := map[string]ed25519.PublicKey{}
	for _, f := range o.recordPreviousKeys {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--record-previous-public-key: %w", err)
		}
		pub, err := record.ParsePublicKey(data)
		if err != nil {
			return nil, fmt.Errorf("--record-previous-public-key %s: %w", f, err)
		}
		previous[record.KeyID(pub)] = pub
	}
	return &controllers.Records{Sink: sink, Key: key, Cluster: o.clusterName, Previous: previous}, nil
}
