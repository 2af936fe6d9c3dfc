package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	riposte "github.com/riposte-dev/riposte/api/v1alpha1"
)

// ExitError ends the program with Code once the command's own output has
// said why (kubectl riposte test's violations and problems).
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// UsageError is a command line the plugin cannot run: a missing name or
// reason. Its message says what to type instead.
type UsageError struct{ Message string }

func (e *UsageError) Error() string { return e.Message }

// Scheme knows the kinds the plugin reads and prints.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(riposte.AddToScheme(s))
	return s
}

// connector gives a command its client and the namespace it defaults to.
// It is called only by commands that need the cluster, so help, completion
// scripts and the offline check work without a kubeconfig.
type connector func(cmd *cobra.Command) (client.Client, string, error)

// NewCommand is `kubectl riposte` with kubectl's own connection flags
// (--kubeconfig, --context, -n, --as, --token, --server ...).
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	flags := genericclioptions.NewConfigFlags(true).WithWarningPrinter(streams)
	scheme := Scheme()
	connect := func(*cobra.Command) (client.Client, string, error) {
		if err := configured(flags); err != nil {
			return nil, "", err
		}
		cfg, err := flags.ToRESTConfig()
		if err != nil {
			return nil, "", fmt.Errorf("loading kubeconfig: %w", err)
		}
		ns, _, err := flags.ToRawKubeConfigLoader().Namespace()
		if err != nil {
			return nil, "", fmt.Errorf("loading kubeconfig: %w", err)
		}
		c, err := client.New(cfg, client.Options{Scheme: scheme})
		if err != nil {
			return nil, "", fmt.Errorf("connecting to the API server: %w", err)
		}
		return c, ns, nil
	}
	root := newRoot(streams, flags.Namespace, connect)
	flags.AddFlags(root.PersistentFlags())
	return root
}

// ErrNoKubeconfig says no cluster was named: no kubeconfig, no --server, and
// not in a pod.
var ErrNoKubeconfig = errors.New("loading kubeconfig: no configuration has been provided: give --kubeconfig, set KUBECONFIG, or --server")

// configured refuses to go on without a cluster named anywhere, where
// kubectl's loader would quietly try http://localhost:8080.
func configured(flags *genericclioptions.ConfigFlags) error {
	if *flags.APIServer != "" {
		return nil
	}
	raw, err := flags.ToRawKubeConfigLoader().RawConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	if len(raw.Clusters) > 0 {
		return nil
	}
	if _, err := rest.InClusterConfig(); err == nil {
		return nil
	}
	return ErrNoKubeconfig
}

// Run executes one command line (without the program name) with c's client;
// -n overrides c.Namespace. The connection flags are not offered: the client
// is already made (tests give each person's).
func (c *CLI) Run(ctx context.Context, args []string) error {
	namespace := ""
	streams := genericiooptions.IOStreams{Out: c.Out, ErrOut: c.Out}
	connect := func(cmd *cobra.Command) (client.Client, string, error) {
		if f := cmd.Flag("namespace"); f != nil && f.Changed {
			return c.Client, namespace, nil
		}
		return c.Client, c.Namespace, nil
	}
	root := newRoot(streams, &namespace, connect)
	root.PersistentFlags().StringVarP(&namespace, "namespace", "n", "", "the namespace of the gate or incident")
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

func newRoot(streams genericiooptions.IOStreams, namespace *string, connect connector) *cobra.Command {
	o := &options{streams: streams, namespace: namespace, connect: connect, scheme: Scheme()}
	root := &cobra.Command{
		Use:   "kubectl-riposte",
		Short: "Decide Riposte's remediations, and test playbooks offline",
		Long: `kubectl riposte: decide Riposte's remediations.

kubectl's flags and kubeconfig give the credentials (--context, --as,
--token ...); the API server says who they name (SelfSubjectReview), records
that name with a decision and checks it again when the decision is written.`,
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl riposte"},
		// Errors are printed once, by the caller; a usage dump would bury
		// an API server's refusal.
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	root.PersistentFlags().StringVar(&o.riposteNamespace, "riposte-namespace", "riposte-system", "Riposte's own namespace (the pause switch, cluster-wide playbooks)")
	root.AddCommand(
		o.gatesCommand(),
		o.namedCommand("show GATE", "The plan, its dry-run result and the decisions", gateNames, true, "",
			func(ctx context.Context, c *CLI, name, _ string) error { return c.show(ctx, name) }),
		o.namedCommand("approve GATE --reason TEXT", "Approve a gate as yourself", gateNames, false, "it is recorded with your decision",
			func(ctx context.Context, c *CLI, name, reason string) error {
				return c.decide(ctx, name, riposte.DecisionApprove, reason)
			}),
		o.namedCommand("reject GATE --reason TEXT", "Reject a gate as yourself", gateNames, false, "it is recorded with your decision",
			func(ctx context.Context, c *CLI, name, reason string) error {
				return c.decide(ctx, name, riposte.DecisionReject, reason)
			}),
		o.namedCommand("describe INCIDENT", "What an incident touches, may do and reach, its timeline and steps", incidentNames, true, "",
			func(ctx context.Context, c *CLI, name, _ string) error { return c.describe(ctx, name) }),
		o.namedCommand("undo INCIDENT --reason TEXT", "Put back what the remediation changed", incidentNames, false, "it is recorded with your request",
			func(ctx context.Context, c *CLI, name, reason string) error { return c.undo(ctx, name, reason) }),
		o.namedCommand("escalate INCIDENT", "Keep temporary containment in place", incidentNames, false, "",
			func(ctx context.Context, c *CLI, name, _ string) error { return c.escalate(ctx, name) }),
		o.pauseCommand(),
		o.resumeCommand(),
		o.whoamiCommand(),
		o.testCommand(),
		o.verifyCommand(),
		o.reportCommand(),
		optionsCommand(),
	)
	// As kubectl does: a command's help shows its own flags, and points to
	// `options` for the connection flags every command takes.
	global := "{{if .HasAvailableInheritedFlags}}\n\nGlobal Flags:\n{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}"
	pointer := "{{if .HasAvailableInheritedFlags}}\n\nUse \"kubectl riposte options\" for the flags every command takes (--kubeconfig, --context, --as, --token, --server ...).{{end}}"
	if tmpl := root.UsageTemplate(); strings.Contains(tmpl, global) {
		for _, c := range root.Commands() {
			if c.Name() != "options" {
				c.SetUsageTemplate(strings.Replace(tmpl, global, pointer, 1))
			}
		}
	}
	return root
}

// optionsCommand lists the flags every command takes, as `kubectl options`.
func optionsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "options",
		Short: "The flags every command takes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), "The following options can be passed to any command:")
			fmt.Fprintln(cmd.OutOrStdout())
			fmt.Fprintln(cmd.OutOrStdout(), strings.TrimRight(cmd.InheritedFlags().FlagUsages(), " \n"))
			return nil
		},
	}
}

type options struct {
	streams          genericiooptions.IOStreams
	namespace        *string
	riposteNamespace string
	connect          connector
	scheme           *runtime.Scheme
}

// cli connects and returns the commands' runner.
func (o *options) cli(cmd *cobra.Command) (*CLI, error) {
	c, ns, err := o.connect(cmd)
	if err != nil {
		return nil, err
	}
	return &CLI{Client: c, Namespace: ns, Out: o.streams.Out}, nil
}

// printFlags adds -o to a command that shows objects; without -o the
// command prints for a person.
func (o *options) printFlags(cmd *cobra.Command) *genericclioptions.PrintFlags {
	p := genericclioptions.NewPrintFlags("").WithTypeSetter(o.scheme)
	p.AddFlags(cmd)
	return p
}

// wantsObject reports whether -o was given: print the object, not the
// person's view.
func wantsObject(p *genericclioptions.PrintFlags) bool { return p != nil && *p.OutputFormat != "" }

// print writes obj as -o asks.
func (o *options) print(p *genericclioptions.PrintFlags, obj runtime.Object) error {
	printer, err := p.ToPrinter()
	if err != nil {
		return &UsageError{Message: err.Error()}
	}
	return printer.PrintObj(obj, o.streams.Out)
}

// names lists what a name argument may complete to.
type names func(ctx context.Context, c *CLI) ([]string, error)

func gateNames(ctx context.Context, c *CLI) ([]string, error) {
	var list riposte.ApprovalGateList
	if err := c.Client.List(ctx, &list, client.InNamespace(c.Namespace)); err != nil {
		return nil, err
	}
	var out []string
	for i := range list.Items {
		if pending(&list.Items[i]) {
			out = append(out, list.Items[i].Name)
		}
	}
	return out, nil
}

func incidentNames(ctx context.Context, c *CLI) ([]string, error) {
	var list riposte.IncidentList
	if err := c.Client.List(ctx, &list, client.InNamespace(c.Namespace)); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(list.Items))
	for _, inc := range list.Items {
		out = append(out, inc.Name)
	}
	return out, nil
}

// complete offers the names in the namespace for a command's one argument.
func (o *options) complete(list names) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := o.cli(cmd)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		all, err := list(cmd.Context(), c)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var out []cobra.Completion
		for _, n := range all {
			if strings.HasPrefix(n, toComplete) {
				out = append(out, n)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// namedCommand is a command on one gate or incident. reasonWhy, when set,
// makes --reason required and says why; shows adds -o, printing the object
// the command reads.
func (o *options) namedCommand(use, short string, list names, shows bool, reasonWhy string,
	run func(ctx context.Context, c *CLI, name, reason string) error) *cobra.Command {
	verb := strings.Fields(use)[0]
	var reason string
	cmd := &cobra.Command{
		Use:               use,
		Short:             short,
		ValidArgsFunction: o.complete(list),
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return &UsageError{Message: fmt.Sprintf("%s takes exactly one name, got %d", verb, len(args))}
			}
			return nil
		},
	}
	if reasonWhy != "" {
		cmd.Flags().StringVar(&reason, "reason", "", "why you decide so (required: "+reasonWhy+")")
	}
	var p *genericclioptions.PrintFlags
	if shows {
		p = o.printFlags(cmd)
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if reasonWhy != "" && strings.TrimSpace(reason) == "" {
			return &UsageError{Message: fmt.Sprintf("%s: --reason is required: %s", verb, reasonWhy)}
		}
		c, err := o.cli(cmd)
		if err != nil {
			return err
		}
		if wantsObject(p) {
			obj, err := o.read(cmd.Context(), c, verb, args[0])
			if err != nil {
				return err
			}
			return o.print(p, obj)
		}
		return run(cmd.Context(), c, args[0], reason)
	}
	return cmd
}

// read returns the object a showing command prints for -o.
func (o *options) read(ctx context.Context, c *CLI, verb, name string) (runtime.Object, error) {
	if verb == "show" {
		return c.get(ctx, name)
	}
	inc := &riposte.Incident{}
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: name}, inc); err != nil {
		return nil, fmt.Errorf("reading incident %s/%s: %w", c.Namespace, name, err)
	}
	return inc, nil
}

func (o *options) gatesCommand() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "gates [-A | -n NAMESPACE]",
		Short: "Gates waiting for a decision",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "the gates of every namespace")
	p := o.printFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := o.cli(cmd)
		if err != nil {
			return err
		}
		if !wantsObject(p) {
			return c.gates(cmd.Context(), all)
		}
		list, err := c.pendingGates(cmd.Context(), all)
		if err != nil {
			return err
		}
		return o.print(p, list)
	}
	return cmd
}

func (o *options) pauseCommand() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "pause --reason TEXT",
		Short: "Hold every remediation (ConfigMap riposte-pause in --riposte-namespace)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.TrimSpace(reason) == "" {
				return &UsageError{Message: "pause: --reason is required: every held incident shows it"}
			}
			c, err := o.cli(cmd)
			if err != nil {
				return err
			}
			return c.pause(cmd.Context(), o.riposteNamespace, reason)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (required: every held incident shows it)")
	return cmd
}

func (o *options) resumeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "resume",
		Short: "Let held remediations run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.cli(cmd)
			if err != nil {
				return err
			}
			return c.resume(cmd.Context(), o.riposteNamespace)
		},
	}
}

func (o *options) whoamiCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Who the API server says you are: the name your decisions are recorded under",
		Args:  cobra.NoArgs,
	}
	p := o.printFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := o.cli(cmd)
		if err != nil {
			return err
		}
		review, err := c.selfReview(cmd.Context())
		if err != nil {
			return err
		}
		if wantsObject(p) {
			return o.print(p, review)
		}
		_, err = fmt.Fprintln(o.streams.Out, review.Status.UserInfo.Username)
		return err
	}
	return cmd
}

func (o *options) testCommand() *cobra.Command {
	var files []string
	var failOnViolation bool
	cmd := &cobra.Command{
		Use:   "test -f PATH [-f PATH ...] [-n NAMESPACE] [--fail-on-violation]",
		Short: "Judge manifests and Alertmanager alerts against the playbooks in the files, without a cluster",
		// OfflineUsage's first line is a usage line; cobra prints its own.
		Long: OfflineUsage[strings.Index(OfflineUsage, "\n\n")+2:],
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ns := *o.namespace
			if ns == "" {
				ns = "default"
			}
			result, err := RunOffline(files, ns, o.riposteNamespace)
			if err != nil {
				return err
			}
			result.Print(o.streams.Out)
			if code := result.Failed(failOnViolation); code != 0 {
				return &ExitError{Code: code}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "a file or folder of manifests, playbooks and Alertmanager alerts (repeatable)")
	cmd.Flags().BoolVar(&failOnViolation, "fail-on-violation", false, "exit 2 when any object breaks a rule")
	_ = cmd.MarkFlagFilename("filename", "yaml", "yml", "json")
	return cmd
}
