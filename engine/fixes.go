package engine

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/nearcast/nearcast/geo"
	"github.com/nearcast/nearcast/rules"
)

// Phones gather fixes while offline or asleep and send them together. A
// batch of one device's fixes is applied in time order, each as a ping:
// the late-fix and out-of-order rules hold per fix, each counts against
// the call limits, and a visit the batch shows already ended gets no
// offer (the customer has left the door the coupon was for).

// MaxBatchFixes is the most fixes a batch may hold.
const MaxBatchFixes = 100

// What became of each fix of a batch.
const (
	// FixApplied: evaluated as a ping (one older than the newest seen is
	// applied and changes nothing, as a ping would).
	FixApplied = "applied"
	// FixDuplicate: the same time as an earlier fix of the batch.
	FixDuplicate = "duplicate"
	// FixRateLimited: over a call limit; it changed nothing, nor did the
	// fixes after it.
	FixRateLimited = "rate_limited"
)

// FixResult is what one fix of a batch caused.
type FixResult struct {
	TS     time.Time     `json:"ts"`
	Status string        `json:"status"`
	Events []Event       `json:"events"`
	Offers []IssuedOffer `json:"offers"`
	// Explain, with Options.Explain, says why each rule did or did not fire.
	Explain []Explanation `json:"explain,omitempty"`
}

// BatchResult is what a batch of fixes caused: each fix's, in time order,
// all events and offers, and the pacing of the newest fix applied.
type BatchResult struct {
	Fixes    []FixResult   `json:"fixes"`
	Events   []Event       `json:"events"`
	Offers   []IssuedOffer `json:"offers"`
	Monitor  *Monitor      `json:"monitor,omitempty"`
	NextPing *NextPing     `json:"next_ping,omitempty"`
}

// EvaluateBatch applies one device's fixes (each a Ping of the same
// customer and device, each with its TS) in time order. A fix over a call
// limit stops the batch there; when it is the first, the answer is the
// *RateLimitError alone.
func (e *Engine) EvaluateBatch(ctx context.Context, fixes []Ping, opt Options) (*BatchResult, error) {
	snap := e.snaps.Current()
	if snap == nil {
		return nil, ErrNoSnapshot
	}
	fixes = slices.Clone(fixes)
	slices.SortStableFunc(fixes, func(a, b Ping) int { return a.TS.Compare(b.TS) })
	out := &BatchResult{Fixes: make([]FixResult, len(fixes)), Events: []Event{}, Offers: []IssuedOffer{}}
	ended := visitsEnded(snap, fixes)
	limited := false
	for i, p := range fixes {
		fr := &out.Fixes[i]
		*fr = FixResult{TS: p.TS.UTC(), Status: FixApplied, Events: []Event{}, Offers: []IssuedOffer{}}
		switch {
		case limited:
			fr.Status = FixRateLimited
			continue
		case i > 0 && p.TS.Equal(fixes[i-1].TS):
			fr.Status = FixDuplicate
			continue
		}
		o := opt
		o.ended, o.limitScale = ended[i], BatchLimitFactor
		res, err := e.Evaluate(ctx, p, o)
		var rl *RateLimitError
		if errors.As(err, &rl) && i > 0 {
			limited, fr.Status = true, FixRateLimited
			continue
		}
		if err != nil {
			return nil, err
		}
		fr.Events, fr.Offers, fr.Explain = res.Events, res.Offers, res.Explain
		out.Events = append(out.Events, res.Events...)
		out.Offers = append(out.Offers, res.Offers...)
		if res.Monitor != nil || res.NextPing != nil {
			out.Monitor, out.NextPing = res.Monitor, res.NextPing
		}
	}
	return out, nil
}

// visitsEnded answers, for each fix, the stores it may hold that a later
// fix of the batch no longer holds: a visit there has ended by the end
// of the batch. A fix too unsure to move presence shows nothing.
func visitsEnded(snap *rules.Snapshot, fixes []Ping) []map[int32]bool {
	held := make([]map[int32]bool, len(fixes))
	var buf [16]geo.Hit
	for i, p := range fixes {
		if p.AccuracyM > MaxFixAccuracyM {
			continue
		}
		held[i] = map[int32]bool{}
		for _, h := range snap.Index.Near(p.Lat, p.Lng, buf[:0]) {
			if h.Held(p.AccuracyM) {
				held[i][h.Fence] = true
			}
		}
	}
	ended := make([]map[int32]bool, len(fixes))
	for i := range fixes {
		for store := range held[i] {
			for j := i + 1; j < len(fixes); j++ {
				if held[j] != nil && !held[j][store] {
					if ended[i] == nil {
						ended[i] = map[int32]bool{}
					}
					ended[i][store] = true
					break
				}
			}
		}
	}
	return ended
}
