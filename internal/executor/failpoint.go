package executor

import (
	"fmt"
	"os"
	"slices"
	"strings"
)

// FailpointEnv names a file; when set, the process exits right after each
// remediation write it has not exited after before (the file lists those),
// before recording it. The crash-safety test uses it to cut every write off
// from its record once. Never set it in production.
const FailpointEnv = "RIPOSTE_FAILPOINT_CRASH_LOG"

var crashLog = os.Getenv(FailpointEnv)

// wrote marks the write named key as made, and exits if the failpoint says so.
func wrote(key string) {
	if crashLog == "" {
		return
	}
	b, _ := os.ReadFile(crashLog)
	if slices.Contains(strings.Split(string(b), "\n"), key) {
		return
	}
	f, err := os.OpenFile(crashLog, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err == nil {
		_, _ = fmt.Fprintln(f, key)
		_ = f.Close()
	}
	fmt.Fprintf(os.Stderr, "failpoint: exiting right after write %s, before recording it\n", key)
	os.Exit(3)
}
