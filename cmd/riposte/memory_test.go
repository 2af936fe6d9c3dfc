package main

import (
	"context"
	"errors"
	"math"
	"os"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/go-logr/logr"
)

func TestSetMemoryLimit(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		name         string
		ratio        float64
		gomemlimit   string
		automemlimit string
		limitOf      memlimit.Provider
		want         int64
		wantErr      string
	}{
		{name: "a fraction of the container's limit", ratio: 0.9, limitOf: memlimit.Limit(200 * mib), want: 180 * mib},
		{name: "all of it", ratio: 1, limitOf: memlimit.Limit(160 * mib), want: 160 * mib},
		{name: "no container limit sets none", ratio: 0.9, limitOf: func() (uint64, error) { return 0, memlimit.ErrNoLimit }, want: math.MaxInt64},
		{name: "no cgroup sets none", ratio: 0.9, limitOf: func() (uint64, error) { return 0, memlimit.ErrNoCgroup }, want: math.MaxInt64},
		{name: "ratio 0 sets none", ratio: 0, limitOf: memlimit.Limit(200 * mib), want: math.MaxInt64},
		{name: "GOMEMLIMIT set by hand wins", ratio: 0.9, gomemlimit: "100MiB", limitOf: memlimit.Limit(200 * mib), want: 100 * mib},
		{name: "an unreadable limit sets none", ratio: 0.9, limitOf: func() (uint64, error) { return 0, errors.New("permission denied") }, want: math.MaxInt64},
		{name: "a ratio over 1 is refused", ratio: 1.5, limitOf: memlimit.Limit(200 * mib), wantErr: "--memory-limit-ratio 1.5: want a fraction"},
		{name: "a negative ratio is refused", ratio: -0.1, limitOf: memlimit.Limit(200 * mib), wantErr: "--memory-limit-ratio -0.1"},
		{name: "NaN is refused", ratio: math.NaN(), limitOf: memlimit.Limit(200 * mib), wantErr: "--memory-limit-ratio NaN"},
		{name: "AUTOMEMLIMIT, which would replace the flag, is refused", ratio: 0.9, automemlimit: "0.5", limitOf: memlimit.Limit(200 * mib), wantErr: `AUTOMEMLIMIT="0.5" is set: use --memory-limit-ratio`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := debug.SetMemoryLimit(math.MaxInt64) // whatever GOMEMLIMIT the test binary started with
			t.Cleanup(func() { debug.SetMemoryLimit(before) })
			t.Setenv("AUTOMEMLIMIT", tc.automemlimit) // restored after the test
			if tc.automemlimit == "" {
				_ = os.Unsetenv("AUTOMEMLIMIT")
			}
			t.Setenv("GOMEMLIMIT", tc.gomemlimit)
			if tc.gomemlimit != "" {
				debug.SetMemoryLimit(100 * mib) // what the runtime read from GOMEMLIMIT at start
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			got, err := setMemoryLimit(ctx, tc.ratio, tc.limitOf, logr.Discard())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("limit %d, want %d", got, tc.want)
			}
			if inForce := debug.SetMemoryLimit(-1); inForce != tc.want {
				t.Errorf("the runtime's limit is %d, want %d", inForce, tc.want)
			}
		})
	}
}
