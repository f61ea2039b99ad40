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

// watchCity is a snapshot of 300 stores around Berlin's centre, moved
// north by shift degrees: another snapshot of the same ids, in other
// places.
func watchCity(t *testing.T, version int64, shift float64) *rules.Snapshot {
	t.Helper()
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

// watchPoints are fixes across the cities of watchCity.
func watchPoints() [][2]float64 {
	rng := rand.New(rand.NewPCG(3, 4))
	points := make([][2]float64, 400)
	for i := range points {
		points[i] = [2]float64{52.52 + (rng.Float64()-0.5)*0.06, 13.40 + (rng.Float64()-0.5)*0.1}
	}
	return points
}

// watchedAs is what an answer of watch names, as its block would give it
// (the regions its table holds), with the wake circle seen from (lat,
// lng).
func watchedAs(w watching, table []fenceRegion, at []int32, lat, lng float64) string {
	var out []string
	for _, i := range at {
		fr := table[i]
		out = append(out, fmt.Sprintf("%s@%.5f,%.5f/%d:%s", fr.storeID, fr.lat, fr.lng, fr.radiusM, fr.json))
	}
	return fmt.Sprint(out, math.Round(w.wakeAt(lat, lng)))
}

// checkWatch runs watch on e for every point, from four goroutines at
// once (each a point of its own in the same cell), on the snapshots given
// in turn by point, and compares each answer with a search's where the
// answer's cell entry was measured. It answers how many came from the
// cache.
func checkWatch(t *testing.T, e *Engine, snaps []*rules.Snapshot) int64 {
	t.Helper()
	var wg sync.WaitGroup
	var hits atomic.Int64
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf [100]geo.Region
			for i, p := range watchPoints() {
				snap := snaps[(i+g)%len(snaps)]
				for _, k := range []int{monitorRegions["ios"], monitorRegions["android"]} {
					lat, lng := p[0]+float64(g)*1e-6, p[1]
					got, table, at := e.watch(snap, lat, lng, k, buf[:0])
					if got.lat != lat || got.lng != lng {
						hits.Add(1)
					}
					if geo.WatchCell(got.lat, got.lng) != geo.WatchCell(lat, lng) {
						t.Errorf("snapshot %d, point %d: answered from another cell", snap.Version, i)
						return
					}
					want, wtable, wat := (&Engine{}).watch(snap, got.lat, got.lng, k, buf[:0])
					if a, b := watchedAs(got, table, at, lat, lng), watchedAs(want, wtable, wat, lat, lng); a != b {
						t.Errorf("snapshot %d, point %d, k %d: cached %s, searched %s", snap.Version, i, k, a, b)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	return hits.Load()
}

// What the watch cache answers for a cell it knows is what a search
// answers there (the regions, as the block encodes them, and the wake
// circle), for iOS's and Android's numbers of regions, from many
// goroutines at once; a new catalog snapshot is searched afresh.
func TestWatchCacheAnswersAsASearch(t *testing.T) {
	e := &Engine{}
	for _, snap := range []*rules.Snapshot{watchCity(t, 1, 0), watchCity(t, 2, 0.01)} {
		if hits := checkWatch(t, e, []*rules.Snapshot{snap}); hits < int64(len(watchPoints())) {
			t.Fatalf("snapshot %d: %d answers from the cache, want most of %d", snap.Version, hits, 8*len(watchPoints()))
		}
	}
}

// currentSnap is a Snapshots that answers the snapshot it holds.
type currentSnap struct {
	snap atomic.Pointer[rules.Snapshot]
}

func (c *currentSnap) Current() *rules.Snapshot { return c.snap.Load() }

// While a new catalog takes over, pings on the old snapshot and on the new
// one interleave: each is answered its own snapshot's regions, never an
// empty or another snapshot's region from the cache, which follows the
// engine's current snapshot. A catalog whose version went down (restored,
// or failed over before its last count) is followed all the same.
func TestWatchCacheAcrossASnapshotChange(t *testing.T) {
	cur := &currentSnap{}
	e := &Engine{snaps: cur}
	v1, v2, v2again := watchCity(t, 1, 0), watchCity(t, 2, 0.01), watchCity(t, 2, -0.01)
	cur.snap.Store(v2)
	checkWatch(t, e, []*rules.Snapshot{v1, v2, v1})
	if e.watched.snap != v2 {
		t.Fatalf("the cache follows snapshot %d, want the current one, 2", e.watched.snap.Version)
	}
	// The same version number again, other stores: a new snapshot.
	cur.snap.Store(v2again)
	checkWatch(t, e, []*rules.Snapshot{v2again})
	if e.watched.snap != v2again {
		t.Fatal("the cache kept the first snapshot numbered 2")
	}
	cur.snap.Store(v1)
	checkWatch(t, e, []*rules.Snapshot{v2again, v1})
	if e.watched.snap != v1 {
		t.Fatal("the cache did not follow the catalog back to version 1")
	}
	// With no current snapshot to follow, every snapshot is current: the
	// cache goes back and forth, and each answer stays its snapshot's.
	for range 3 {
		checkWatch(t, &Engine{}, []*rules.Snapshot{v1, v2, v1, v2again})
	}
}
