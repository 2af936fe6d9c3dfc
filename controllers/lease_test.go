package controllers_test

import (
	"strings"
	"testing"
	"time"

	"github.com/riposte-dev/riposte/controllers"
)

func TestLeaseTiming(t *testing.T) {
	cases := []struct {
		reason  string
		timing  controllers.LeaseTiming
		wantErr string
	}{
		{reason: "the defaults", timing: controllers.LeaseTiming{}},
		{reason: "the fault suite's short lease", timing: controllers.LeaseTiming{LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 250 * time.Millisecond}},
		{reason: "a renew deadline as long as the lease: two leaders could act at once", timing: controllers.LeaseTiming{LeaseDuration: 10 * time.Second}, wantErr: "the lease duration 10s must be longer than the renew deadline 10s"},
		{reason: "a retry period too close to the renew deadline", timing: controllers.LeaseTiming{RetryPeriod: 9 * time.Second}, wantErr: "longer than 1.2 times the retry period 9s"},
		{reason: "a negative value is not taken for the default", timing: controllers.LeaseTiming{RetryPeriod: -time.Second}, wantErr: "none may be negative"},
		{reason: "a lease the Lease object would store shorter (whole seconds) than the renew deadline", timing: controllers.LeaseTiming{LeaseDuration: 2900 * time.Millisecond, RenewDeadline: 2500 * time.Millisecond, RetryPeriod: 500 * time.Millisecond}, wantErr: "must be a whole number of seconds"},
		{reason: "a lease under a second, stored as none", timing: controllers.LeaseTiming{LeaseDuration: 900 * time.Millisecond, RenewDeadline: 600 * time.Millisecond, RetryPeriod: 100 * time.Millisecond}, wantErr: "must be a whole number of seconds"},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			err := tc.timing.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want it to say %q", err, tc.wantErr)
			}
		})
	}
}
