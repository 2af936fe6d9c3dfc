package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/chat"
)

// runSlackBridge is `riposte slack-bridge`: it receives Slack's button
// clicks and writes each decision as the Kubernetes user the clicker maps
// to, running as its own ServiceAccount (allowed to impersonate only the
// mapped users), never as the manager.
func runSlackBridge(args []string) error {
	fs := flag.NewFlagSet("riposte slack-bridge", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "The bridge's own kubeconfig (default: the pod's ServiceAccount, $KUBECONFIG or ~/.kube/config).")
	secretFile := fs.String("signing-secret-file", "", "File holding the Slack app's signing secret (mounted from a Secret).")
	users := fs.String("users-configmap", "riposte-system/riposte-chat-users", "NAMESPACE/NAME of the ConfigMap mapping Slack users (keys TEAM.USER) to Kubernetes user names.")
	addr := fs.String("listen", ":8443", "Address of the interactivity endpoint (the Slack app's Request URL).")
	certFile := fs.String("tls-cert-file", "", "Serve HTTPS with this certificate (Slack requires HTTPS; a TLS-terminating ingress may stand in front instead).")
	keyFile := fs.String("tls-key-file", "", "The key of --tls-cert-file.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	secret, err := os.ReadFile(*secretFile)
	if err != nil || strings.TrimSpace(string(secret)) == "" {
		return fmt.Errorf("--signing-secret-file: the Slack app's signing secret is needed: %v", err)
	}
	ns, name, ok := strings.Cut(*users, "/")
	if !ok || ns == "" || name == "" {
		return fmt.Errorf("--users-configmap %q: want NAMESPACE/NAME", *users)
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = *kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return fmt.Errorf("the bridge's kubeconfig: %w", err)
	}
	own, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	bridge := &chat.Bridge{
		SigningSecret: strings.TrimSpace(string(secret)),
		Users:         own, UsersMap: types.NamespacedName{Namespace: ns, Name: name},
		As:      impersonating(cfg, own),
		Respond: &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
	mux := http.NewServeMux()
	mux.Handle("/slack/interactions", bridge)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(os.Stderr, "riposte slack-bridge: serving /slack/interactions on %s\n", *addr)
	return serve(ctx, srv, *certFile, *keyFile)
}

var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(riposte.AddToScheme(s))
	return s
}()

// impersonating makes clients acting as a user, by the bridge's own
// identity: the API server allows it only for the users its RBAC names.
// They share the bridge's own RESTMapper: discovery is done as the bridge.
func impersonating(cfg *rest.Config, own client.Client) func(string) (client.Client, error) {
	return func(user string) (client.Client, error) {
		as := rest.CopyConfig(cfg)
		as.Impersonate = rest.ImpersonationConfig{UserName: user}
		return client.New(as, client.Options{Scheme: scheme, Mapper: own.RESTMapper()})
	}
}
