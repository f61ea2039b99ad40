package webhook

import (
	"slices"
	"strings"
	"sync/atomic"
)

// Wanted is the event types the subscriptions ask for, in the form the
// engine's journal reads (engine.Events): "" when there is none, else
// ",type,type,". A disabled subscription counts: its events wait in the
// stream until it is enabled again. customer.erased is not among them:
// an erasure reaches every subscription anyway, and is not journaled.
func (s *Snapshot) Wanted() string {
	if s == nil {
		return ""
	}
	var types []string
	for _, sub := range s.Subs {
		for _, t := range sub.Events {
			if t != TypeCustomerErased && !slices.Contains(types, t) {
				types = append(types, t)
			}
		}
	}
	if len(types) == 0 {
		return ""
	}
	slices.Sort(types)
	return "," + strings.Join(types, ",") + ","
}

// WantedBy answers, on each call, the Wanted of the snapshot l has in
// force, worked out once per snapshot: the engine asks on every decision.
func WantedBy(l *Live) func() string {
	type cached struct {
		snap   *Snapshot
		wanted string
	}
	var last atomic.Pointer[cached]
	return func() string {
		snap := l.Current()
		if c := last.Load(); c != nil && c.snap == snap {
			return c.wanted
		}
		c := &cached{snap: snap, wanted: snap.Wanted()}
		last.Store(c)
		return c.wanted
	}
}
