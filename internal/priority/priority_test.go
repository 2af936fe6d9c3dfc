package priority

import (
	"context"
	"errors"
	"testing"
	"time"
)

// stillWaiting is how long a pass that must wait is watched not to start.
const stillWaiting = 50 * time.Millisecond

// start asks for a pass in the background; the channel yields its done
// func once it may run.
func start(t *testing.T, ctx context.Context, l *Lanes) <-chan func() {
	t.Helper()
	started := make(chan func(), 1)
	go func() {
		done, err := l.Pass(ctx)
		if err != nil {
			return
		}
		started <- done
	}()
	return started
}

func mustStart(t *testing.T, started <-chan func(), why string) func() {
	t.Helper()
	select {
	case done := <-started:
		return done
	case <-time.After(5 * time.Second):
		t.Fatalf("the pass did not start %s", why)
		return nil
	}
}

func mustWait(t *testing.T, started <-chan func(), why string) {
	t.Helper()
	select {
	case done := <-started:
		done()
		t.Fatalf("the pass started %s", why)
	case <-time.After(stillWaiting):
	}
}

func TestPassesRunFreelyWhileIntakeIsIdle(t *testing.T) {
	for _, l := range []*Lanes{nil, {}, {Passes: 2}} {
		var done []func()
		for range 5 {
			d, err := l.Pass(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			done = append(done, d)
		}
		for _, d := range done {
			d()
		}
	}
}

func TestWhileIntakeStoresOnlyPassesRunAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name      string
		lanes     *Lanes
		runBeside int // passes that start beside intake's write
	}{
		{name: "zero value: one", lanes: &Lanes{}, runBeside: 1},
		{name: "Passes 0 is one", lanes: &Lanes{Passes: 0}, runBeside: 1},
		{name: "Passes 3", lanes: &Lanes{Passes: 3}, runBeside: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			stored := tc.lanes.Storing()
			var running []func()
			for range tc.runBeside {
				running = append(running, mustStart(t, start(t, ctx, tc.lanes), "beside intake's write, within Passes"))
			}
			next := start(t, ctx, tc.lanes)
			mustWait(t, next, "while intake stores and Passes passes run")
			// One pass ending lets the next one start, intake storing or not.
			running[0]()
			running = append(running[1:], mustStart(t, next, "once a running pass ended"))
			last := start(t, ctx, tc.lanes)
			mustWait(t, last, "while intake stores and Passes passes run")
			// Intake idle: everything waiting starts.
			stored()
			running = append(running, mustStart(t, last, "once intake's write ended"))
			for _, d := range running {
				d()
			}
		})
	}
}

func TestAPassWaitsForEveryWriteInFlight(t *testing.T) {
	l := &Lanes{}
	first, second := l.Storing(), l.Storing()
	running := mustStart(t, start(t, context.Background(), l), "though intake stores: one pass always may")
	next := start(t, context.Background(), l)
	first()
	mustWait(t, next, "while one of intake's writes is still in flight")
	second()
	mustStart(t, next, "once every write ended")()
	running()
}

func TestAWaitingPassEndsWithItsContext(t *testing.T) {
	l := &Lanes{}
	defer l.Storing()()
	running, err := l.Pass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer running()
	ctx, cancel := context.WithTimeout(context.Background(), stillWaiting)
	defer cancel()
	if _, err := l.Pass(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Pass = %v, want the context's deadline", err)
	}
}

// A pass held up (a slow webhook in its step, a flood of alerts) holds the
// next one back for MaxWait at most.
func TestNoPassWaitsLongerThanMaxWait(t *testing.T) {
	for _, tc := range []struct {
		name    string
		lanes   *Lanes
		atLeast time.Duration
		atMost  time.Duration
	}{
		{name: "MaxWait", lanes: &Lanes{MaxWait: 200 * time.Millisecond}, atLeast: 200 * time.Millisecond, atMost: 2 * time.Second},
		{name: "0 is DefaultMaxWait", lanes: &Lanes{}, atLeast: DefaultMaxWait, atMost: DefaultMaxWait + 2*time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer tc.lanes.Storing()()
			held, err := tc.lanes.Pass(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			asked := time.Now()
			next, err := tc.lanes.Pass(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			waited := time.Since(asked)
			if waited < tc.atLeast || waited > tc.atMost {
				t.Errorf("the next pass started after %s, want between %s and %s", waited, tc.atLeast, tc.atMost)
			}
			// It holds a place like any other: a third waits for both.
			third := start(t, context.Background(), tc.lanes)
			mustWait(t, third, "while two passes run beside intake's write")
			held()
			mustWait(t, third, "while the late pass still runs beside intake's write")
			next()
			mustStart(t, third, "once both ended")()
		})
	}
}
