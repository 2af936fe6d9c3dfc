// Command kubectl-riposte is the kubectl plugin for Riposte's approval gates:
// install it on your PATH (make install-plugin) and run `kubectl riposte`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
	"github.com/riposte-dev/riposte/internal/cli"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	// Connection flags come first and are shared by every command.
	fs := flag.NewFlagSet("kubectl-riposte", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "path to the kubeconfig file")
	kubeContext := fs.String("context", "", "the kubeconfig context to use")
	fs.Usage = func() { fmt.Fprint(os.Stderr, cli.Usage) }
	rest, err := extract(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 && rest[0] == "test" {
		// The offline check needs no cluster, so no kubeconfig either.
		return offlineCheck(rest[1:])
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = *kubeconfig
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: *kubeContext})
	cfg, err := loader.ClientConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	namespace, _, err := loader.Namespace()
	if err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(riposte.AddToScheme(scheme))
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	return (&cli.CLI{Client: c, Namespace: namespace, Out: os.Stdout}).Run(context.Background(), rest)
}

// extract parses the connection flags wherever they appear and returns the
// other arguments in order.
func extract(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, _, hasValue := cutFlag(a)
		if name == "kubeconfig" || name == "context" {
			if hasValue {
				if err := fs.Parse([]string{a}); err != nil {
					return nil, err
				}
				continue
			}
			if i+1 >= len(args) {
				return nil, fmt.Errorf("--%s needs a value", name)
			}
			if err := fs.Parse([]string{a, args[i+1]}); err != nil {
				return nil, err
			}
			i++
			continue
		}
		rest = append(rest, a)
	}
	return rest, nil
}

func cutFlag(a string) (name, value string, hasValue bool) {
	if len(a) < 2 || a[0] != '-' {
		return "", "", false
	}
	a = a[1:]
	if a[0] == '-' {
		a = a[1:]
	}
	for i := 0; i < len(a); i++ {
		if a[i] == '=' {
			return a[:i], a[i+1:], true
		}
	}
	return a, "", false
}

// offlineCheck runs `kubectl riposte test` and exits with its status.
func offlineCheck(args []string) error {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() { fmt.Fprint(os.Stderr, cli.OfflineUsage) }
	var files stringList
	fs.Var(&files, "f", "a file or folder of manifests, playbooks and Alertmanager payloads (repeatable)")
	ns := fs.String("n", "default", "namespace of objects that name none")
	riposteNS := fs.String("riposte-namespace", "riposte-system", "Riposte's own namespace (its playbooks are cluster-wide)")
	failOnViolation := fs.Bool("fail-on-violation", false, "exit 2 when any object breaks a rule")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("test: unexpected arguments %v\n\n%s", fs.Args(), cli.OfflineUsage)
	}
	result, err := cli.RunOffline(files, *ns, *riposteNS)
	if err != nil {
		return err
	}
	result.Print(os.Stdout)
	if code := result.Failed(*failOnViolation); code != 0 {
		os.Exit(code)
	}
	return nil
}

type stringList []string

func (s *stringList) String() string     { return fmt.Sprint([]string(*s)) }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
