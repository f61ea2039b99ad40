package engine

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"testing"
)

// The monitor block's hand-made encoding is encoding/json's, byte for
// byte: plain ids, ids that need escaping, coordinates of every size, a
// wake circle or none; an unchanged block is its id alone.
func TestMonitorJSON(t *testing.T) {
	type plain Monitor // encoding/json's own way: no MarshalJSON
	rng := rand.New(rand.NewPCG(1, 2))
	ids := []string{"s-alex", "a.b_c-d:e@f+g", `q"uote`, "back\\slash", "<tag>&", "ünï", "tab\t"}
	for n := range 200 {
		m := Monitor{Regions: []Region{}} // as pacing makes it: never null
		for i := range n % 7 {
			id := ids[(n+i)%len(ids)]
			lat := (rng.Float64()*180 - 90) * []float64{1, 1e-7, 1e-3}[i%3]
			m.Regions = append(m.Regions, Region{ID: RegionIDPrefix + id, StoreID: id, Lat: lat, Lng: rng.Float64()*360 - 180, RadiusM: rng.IntN(50000)})
		}
		if n%2 == 0 {
			m.Wake = &Region{ID: WakeRegionID, Lat: rng.Float64()*180 - 90, Lng: rng.Float64()*360 - 180, RadiusM: rng.IntN(27000)}
			m.ID = monitorID(int64(n), 19, m.Wake.Lat, m.Wake.Lng, m.Wake.RadiusM)
		}
		if n%5 == 4 {
			m = Monitor{ID: m.ID, Unchanged: true}
		}
		want, err := json.Marshal((*plain)(&m))
		if m.Unchanged { // regions and wake left out
			want, err = json.Marshal(struct {
				ID        string `json:"id"`
				Unchanged bool   `json:"unchanged"`
			}{m.ID, true})
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := json.Marshal(&m)
		if err != nil || string(got) != string(want) {
			t.Fatalf("encoded\n%s\nencoding/json\n%s", got, want)
		}
		if m.Unchanged {
			continue
		}
		tm := tabled(m)
		if got, _ := json.Marshal(&tm); string(got) != string(want) {
			t.Fatalf("with the regions encoded beforehand:\n%s\nwant\n%s", got, want)
		}
		if got := tm.RegionList(); !slices.Equal(got, m.Regions) {
			t.Fatalf("RegionList %+v, want %+v", got, m.Regions)
		}
	}
}

// tabled is m as pacing makes it: its regions left to a table of stores
// encoded beforehand, in another order than the regions'.
func tabled(m Monitor) Monitor {
	n := len(m.Regions)
	m.table = make([]fenceRegion, n)
	m.fences = make([]int32, n)
	for i, r := range m.Regions {
		m.fences[i] = int32(n - 1 - i)
		m.table[n-1-i] = fenceRegion{json: r.appendJSON(nil), storeID: r.StoreID, lat: r.Lat, lng: r.Lng, radiusM: r.RadiusM}
	}
	m.Regions = nil
	return m
}
