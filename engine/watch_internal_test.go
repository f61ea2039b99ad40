package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nearcast/nearcast/geo"
	"github.com/nearcast/nearcast/rules"
)

// What the watch cache answers for a cell it knows is what a search
// answers there, for iOS's and Android's numbers of regions, from many
// goroutines at once; a new catalog snapshot is searched afresh.
func TestWatchCacheAnswersAsASearch(t *testing.T) {
	city := func(version int64, shift float64) *rules.Snapshot {
		rng := rand.New(rand.NewPCG(1, uint64(version)))
		var stores []*rules.Store
		for i := range 300 {
			lat, lng := 52.52+shift+(rng.Float64()-0.5)*0.05, 13.40+(rng.Float64()-0.5)*0.08
			stores = append(stores, &rules.Store{ID: fmt.Sprintf("s-%03d", i), Name: "S", Lat: &lat, Lng: &lng, RadiusM: 50 + 100*rng.Float64()})
		}
		snap, err := rules.BuildSnapshot(version, stores, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return snap
	}
	// ids is what a watching names, with its wake circle at (lat, lng).
	ids := func(snap *rules.Snapshot, w watching, lat, lng float64) string {
		var out []string
		for _, f := range w.fences {
			out = append(out, snap.Stores[f].ID)
		}
		return fmt.Sprint(out, math.Round(w.wakeAt(lat, lng)))
	}
	rng := rand.New(rand.NewPCG(3, 4))
	points := make([][2]float64, 400)
	for i := range points {
		points[i] = [2]float64{52.52 + (rng.Float64()-0.5)*0.06, 13.40 + (rng.Float64()-0.5)*0.1}
	}
	// One engine for both snapshots: nothing the first left may answer
	// for the second.
	cached := &Engine{}
	for _, snap := range []*rules.Snapshot{city(1, 0), city(2, 0.01)} {
		var wg sync.WaitGroup
		var hits atomic.Int64
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var buf [100]geo.Region
				for i, p := range points {
					for _, k := range []int{monitorRegions["ios"], monitorRegions["android"]} {
						// Each goroutine a point of its own in the same cell:
						// all but the first to come find the cell known.
						lat, lng := p[0]+float64(g)*1e-6, p[1]
						got, table := cached.watch(snap, lat, lng, k, buf[:0])
						if got.lat != lat || got.lng != lng {
							hits.Add(1)
						}
						// What a search answers where the cell's entry was
						// measured, its wake circle seen from here.
						want, _ := (&Engine{}).watch(snap, got.lat, got.lng, k, buf[:0])
						if geo.WatchCell(got.lat, got.lng) != geo.WatchCell(lat, lng) {
							t.Errorf("snapshot %d, point %d: answered from another cell", snap.Version, i)
							return
						}
						if a, b := ids(snap, got, lat, lng), ids(snap, want, lat, lng); a != b {
							t.Errorf("snapshot %d, point %d, k %d: cached %s, searched %s", snap.Version, i, k, a, b)
							return
						}
						for _, f := range got.fences {
							if table[f].json == nil || table[f].storeID != snap.Stores[f].ID {
								t.Errorf("snapshot %d: store %d watched without its region", snap.Version, f)
								return
							}
						}
					}
				}
			}()
		}
		wg.Wait()
		if hits.Load() < int64(len(points)) {
			t.Fatalf("snapshot %d: %d answers from the cache, want most of %d", snap.Version, hits.Load(), 8*len(points))
		}
	}
}
