// Command kubectl-riposte is the kubectl plugin for Riposte's approval gates:
// install it on your PATH (make install-plugin) and run `kubectl riposte`.
package main

import (
	"errors"
	"fmt"
	"os"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/riposte-dev/riposte/internal/cli"
)

func main() {
	os.Exit(run())
}

// run executes the command line and returns the exit status; every error
// is printed here, once.
func run() int {
	cmd := cli.NewCommand(genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	err := cmd.Execute()
	var exit *cli.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		// The command's output already said why.
		return exit.Code
	default:
		fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
}
