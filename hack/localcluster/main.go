// Command localcluster starts the local control plane `make run` uses when no
// cluster is reachable: kube-apiserver and etcd (built by
// hack/build-testbins.sh) through controller-runtime's envtest, with Riposte's
// CRDs installed and the given manifests applied. It writes an admin
// kubeconfig and runs until interrupted.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/riposte-dev/riposte/internal/testenv"
)

func main() {
	kubeconfigOut := flag.String("kubeconfig-out", "bin/local/kubeconfig", "Where to write the admin kubeconfig.")
	apply := flag.String("apply", "", "Comma-separated folders of YAML manifests to apply once the control plane is up.")
	flag.Parse()
	if err := run(*kubeconfigOut, *apply); err != nil {
		fmt.Fprintln(os.Stderr, "localcluster:", err)
		os.Exit(1)
	}
}

func run(kubeconfigOut, apply string) error {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = "bin/k8s/1.37.2"
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{"config/crd/bases"},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("starting the control plane from %s: %w", assets, err)
	}
	defer func() { _ = env.Stop() }()

	user, err := env.AddUser(envtest.User{Name: "riposte-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(kubeconfigOut), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(kubeconfigOut, kc, 0o600); err != nil {
		return err
	}

	if apply != "" {
		for _, dir := range strings.Split(apply, ",") {
			if err := testenv.ApplyDir(context.Background(), cfg, dir); err != nil {
				return err
			}
		}
	}
	abs, _ := filepath.Abs(kubeconfigOut)
	fmt.Printf("local control plane ready: KUBECONFIG=%s\n", abs)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	fmt.Println("stopping the local control plane")
	return nil
}
