package push

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nearcast/nearcast/engine"
)

// Log is the development sender: it logs each push and keeps the newest
// ones in memory, for GET /v1/dev/pushes.
type Log struct {
	// Now is the clock; time.Now unless a test sets it.
	Now func() time.Time

	log  *slog.Logger
	mu   sync.Mutex
	ring []engine.Push
	next int // where the next push goes once the ring is full
}

var _ engine.Sender = (*Log)(nil)

// NewLog keeps the last capacity pushes.
func NewLog(capacity int, log *slog.Logger) *Log {
	if capacity < 1 {
		capacity = 1
	}
	return &Log{Now: time.Now, log: log, ring: make([]engine.Push, 0, capacity)}
}

// Send keeps the push. Like FCM, it refuses one that has expired.
func (l *Log) Send(_ context.Context, p engine.Push) error {
	now := l.Now()
	if !now.Before(p.ExpiresAt) {
		return &engine.PermanentError{Reason: "EXPIRED", Err: fmt.Errorf("push %s expired", p.ID)}
	}
	p.SentAt = now.UTC()
	l.mu.Lock()
	if len(l.ring) < cap(l.ring) {
		l.ring = append(l.ring, p)
	} else {
		l.ring[l.next] = p
		l.next = (l.next + 1) % len(l.ring)
	}
	l.mu.Unlock()
	// Its text (the customer's name, often) stays out of the log, which
	// an erasure cannot reach.
	l.log.Info("push (log sender)", "push", p.ID, "customer_id", p.CustomerID, "device_id", p.DeviceID)
	return nil
}

// Forget drops the kept pushes of a customer, who was erased.
func (l *Log) Forget(customerID string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.ring)
	kept := make([]engine.Push, 0, cap(l.ring))
	for i := 0; i < n; i++ {
		if p := l.ring[(l.next+i)%n]; p.CustomerID != customerID {
			kept = append(kept, p)
		}
	}
	l.ring, l.next = kept, 0
}

// Pushes lists the kept pushes of a customer, or of everyone when
// customerID is empty, oldest first.
func (l *Log) Pushes(customerID string) []engine.Push {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []engine.Push{}
	n := len(l.ring)
	for i := 0; i < n; i++ {
		p := l.ring[(l.next+i)%n]
		if customerID == "" || p.CustomerID == customerID {
			out = append(out, p)
		}
	}
	return out
}
