package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/go-logr/logr"
)

// memoryLimitRefresh is how often the container's memory limit is read
// again: a pod's resources can be resized in place.
const memoryLimitRefresh = time.Minute

// setMemoryLimit gives the Go runtime a soft memory limit of ratio times
// the memory limit limitOf reads (the container's, from its cgroup), kept
// up to date while ctx lasts. Without one the collector lets the heap grow
// to twice what is live before collecting, and a manager with 10,000 pods
// cached would pass a tight container limit and be killed; with one it
// collects sooner as it nears the limit. The runtime does not count the
// binary's own resident pages (about 50 MiB), which the container is
// charged for too. A GOMEMLIMIT set by hand wins, and ratio 0 sets none.
// A limit that cannot be read sets none, and says so in the log. It
// returns the limit in force, math.MaxInt64 for none.
func setMemoryLimit(ctx context.Context, ratio float64, limitOf memlimit.Provider, log logr.Logger) (int64, error) {
	if math.IsNaN(ratio) || ratio < 0 || ratio > 1 {
		return 0, fmt.Errorf("--memory-limit-ratio %v: want a fraction of the container's memory limit from 0 (set no limit) to 1", ratio)
	}
	if ratio == 0 {
		return math.MaxInt64, nil
	}
	limit, err := memlimit.Set(
		memlimit.WithRatio(ratio),
		memlimit.WithProvider(limitOf),
		memlimit.WithRefreshInterval(ctx, memoryLimitRefresh),
		memlimit.WithLogger(slog.New(logr.ToSlogHandler(log))),
	)
	if err != nil {
		// Not fatal: a machine without cgroups (make run on a laptop) runs
		// as Go does by default.
		log.Info("no soft memory limit set: the container's memory limit could not be read", "error", err.Error())
	}
	return limit, nil
}
