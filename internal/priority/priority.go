// Package priority lets intake's writes go before remediation's when both
// want the same API server and the same cores: during an alert storm an
// alert not yet stored is one Alertmanager may have to send again, while a
// stored one is remediated a moment later, in order and on the record.
//
// Remediation is slowed, never stopped: while intake has writes in flight,
// passes run at most Passes at a time instead of the controllers' full
// concurrency, and as many as there are workers once intake is idle; and
// no pass waits longer than MaxWait, so neither a flood of alerts nor a
// pass held up by a slow webhook holds the others back for long.
package priority

import (
	"context"
	"sync"
	"time"
)

// DefaultMaxWait bounds a pass's wait when MaxWait is 0: a storm's alerts
// already wait seconds in the queue, so a second more is small beside it,
// and it is short beside a timed containment's end.
const DefaultMaxWait = time.Second

// Lanes is shared by intake and the incident reconciler. The zero value lets
// one pass run beside intake's writes; a nil *Lanes holds nothing back.
type Lanes struct {
	// Passes is how many remediation passes may run while intake writes; 0
	// means 1. At least one always may, so remediation never starves.
	Passes int
	// MaxWait is the longest a pass waits before it runs anyway; 0 means
	// DefaultMaxWait.
	MaxWait time.Duration

	mu      sync.Mutex
	storing int
	running int
	changed chan struct{}
}

// Storing marks one intake write in flight until done is called.
func (l *Lanes) Storing() (done func()) {
	if l == nil {
		return func() {}
	}
	l.mu.Lock()
	l.storing++
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.storing--
		if l.storing == 0 {
			l.wake()
		}
	}
}

// Pass waits until a remediation pass may run, or MaxWait has passed, then
// holds its place until done is called. It returns ctx's error if ctx ends
// first.
func (l *Lanes) Pass(ctx context.Context) (done func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	var waited <-chan time.Time // started only once a pass has to wait
	for {
		l.mu.Lock()
		if l.storing == 0 || l.running < max(l.Passes, 1) {
			l.running++
			l.mu.Unlock()
			return l.release, nil
		}
		if l.changed == nil {
			l.changed = make(chan struct{})
		}
		changed := l.changed
		l.mu.Unlock()
		if waited == nil {
			wait := l.MaxWait
			if wait <= 0 {
				wait = DefaultMaxWait
			}
			timer := time.NewTimer(wait)
			defer timer.Stop()
			waited = timer.C
		}
		select {
		case <-changed:
		case <-waited:
			l.mu.Lock()
			l.running++
			l.mu.Unlock()
			return l.release, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (l *Lanes) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.running--
	l.wake()
}

// wake tells every waiting pass to look again; l.mu is held.
func (l *Lanes) wake() {
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
}
