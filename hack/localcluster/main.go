// Command localcluster starts the local control plane `make run` uses when no
// cluster is reachable: kube-apiserver and etcd (built by
// hack/build-testbins.sh) with Riposte's CRDs and admission policies
// installed and the given manifests applied. It writes two kubeconfigs, one
// for you (cluster admin) and one for the manager (its service account with
// exactly the shipped RBAC), and runs until interrupted. etcd keeps its data
// in DIR/etcd, so what you stored survives a restart; the manifests are
// applied on the first start only, so your edits to them survive too.
// Remove DIR/etcd (make run-clean) to start from nothing.
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

	"github.com/riposte-dev/riposte/internal/testenv"
)

func main() {
	dir := flag.String("dir", "bin/local", "Where to write kubeconfig (yours) and manager.kubeconfig.")
	apply := flag.String("apply", "", "Comma-separated folders or files of YAML manifests to apply once the control plane is up.")
	flag.Parse()
	if err := run(*dir, *apply); err != nil {
		fmt.Fprintln(os.Stderr, "localcluster:", err)
		os.Exit(1)
	}
}

func run(dir, apply string) error {
	ctx := context.Background()
	data := filepath.Join(dir, "etcd")
	_, err := os.Stat(filepath.Join(data, "member"))
	fresh := os.IsNotExist(err)
	env, err := testenv.StartKeeping(data)
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	admin := filepath.Join(dir, "kubeconfig")
	if err := env.WriteKubeconfig(admin, "riposte-admin", "system:masters"); err != nil {
		return err
	}
	if err := env.WriteManagerKubeconfig(ctx, filepath.Join(dir, "manager.kubeconfig")); err != nil {
		return err
	}
	if apply != "" && fresh {
		for _, path := range strings.Split(apply, ",") {
			if err := testenv.ApplyDir(ctx, env.Config, path); err != nil {
				return err
			}
		}
	}
	abs, _ := filepath.Abs(admin)
	if !fresh {
		fmt.Printf("kept the data of the last run in %s (make run-clean starts from nothing)\n", data)
	}
	fmt.Printf("local control plane ready: KUBECONFIG=%s\n", abs)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	fmt.Println("stopping the local control plane")
	return nil
}
