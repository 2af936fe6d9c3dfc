package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/go-logr/logr"
)

// memoryLimitRefresh is how often the container's memory limit is read
// again: a pod's resources can be resized in place.
const memoryLimitRefresh = time.Minute

// checkMemoryLimitRatio refuses a ratio that is not a fraction, and the
// library's own AUTOMEMLIMIT, which would silently replace the flag.
func checkMemoryLimitRatio(ratio float64) error {
	if math.IsNaN(ratio) || ratio < 0 || ratio > 1 {
		return fmt.Errorf("--memory-limit-ratio %v: want a fraction of the container's memory limit from 0 (set no limit) to 1", ratio)
	}
	if v, set := os.LookupEnv("AUTOMEMLIMIT"); set {
		return fmt.Errorf("AUTOMEMLIMIT=%q is set: use --memory-limit-ratio (0 sets no limit) or GOMEMLIMIT instead", v)
	}
	return nil
}

// setMemoryLimit gives the Go runtime a soft memory limit of ratio times
// the memory limit limitOf reads (the container's, from its cgroup), kept
// up to date while ctx lasts. Without one the collector lets the heap grow
// to twice what is live before collecting, and a manager with 10,000 pods
// cached would pass a tight container limit and be killed; with one it
// collects sooner as it nears the limit. The runtime does not count the
// binary's own resident pages (about 50 MiB), which the container is
// charged for too. A GOMEMLIMIT set by hand wins, and ratio 0 sets none.
// A process in no cgroup sets none; a limit that cannot be read sets none
// and says so in the log. It returns the limit in force, math.MaxInt64 for
// none.
func setMemoryLimit(ctx context.Context, ratio float64, limitOf memlimit.Provider, log logr.Logger) (int64, error) {
	if err := checkMemoryLimitRatio(ratio); err != nil {
		return 0, err
	}
	if ratio == 0 {
		return debug.SetMemoryLimit(-1), nil
	}
	noCgroupIsNoLimit := func() (uint64, error) {
		limit, err := limitOf()
		if errors.Is(err, memlimit.ErrNoCgroup) || errors.Is(err, memlimit.ErrCgroupsNotSupported) {
			// make run on a laptop: nothing to read, every minute.
			return 0, memlimit.ErrNoLimit
		}
		return limit, err
	}
	limit, err := memlimit.Set(
		memlimit.WithRatio(ratio),
		memlimit.WithProvider(noCgroupIsNoLimit),
		memlimit.WithRefreshInterval(ctx, memoryLimitRefresh),
		memlimit.WithLogger(slog.New(logr.ToSlogHandler(log))),
	)
	if err != nil {
		// Not fatal: the runtime goes on as Go does by default, and the
		// limit is read again every minute.
		log.Info("no soft memory limit set: the container's memory limit could not be read", "error", err.Error())
	}
	return limit, nil
}
