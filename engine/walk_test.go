package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/internal/redistest"
	"github.com/nearcast/nearcast/rules"
)

// A walk is a customer's fixes around some stores, with the presence
// events and the number of offers each fix must cause. Positions are
// metres north and east of a point in Berlin.
type walkFile struct {
	Description string `json:"description"`
	Stores      []struct {
		ID       string       `json:"id"`
		NorthM   float64      `json:"north_m"`
		EastM    float64      `json:"east_m"`
		RadiusM  float64      `json:"radius_m"`
		PolygonM [][2]float64 `json:"polygon_m"`
	} `json:"stores"`
	Rules []struct {
		ID     string `json:"id"`
		On     string `json:"on"`
		DwellS int    `json:"dwell_s"`
	} `json:"rules"`
	Fixes []struct {
		AtS       int      `json:"at_s"`
		LateS     int      `json:"late_s"`
		NorthM    float64  `json:"north_m"`
		EastM     float64  `json:"east_m"`
		AccuracyM float64  `json:"accuracy_m"`
		SpeedMps  *float64 `json:"speed_mps"`
		Expect    []string `json:"expect"`
		Offers    *int     `json:"offers"`
	} `json:"fixes"`
}

const walkLat, walkLng = 52.5200, 13.4050

func walkPoint(north, east float64) (float64, float64) {
	return walkLat + north/111194.9, walkLng + east/(111194.9*0.60876) // cos(52.52°)
}

func loadWalk(t *testing.T, path string) walkFile {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var w walkFile
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return w
}

// TestWalks replays every walk in testdata/walks on miniredis and on
// redis-server. Each store gets an "enter" rule without caps (so every
// enter may fire an offer), plus the walk's own rules.
func TestWalks(t *testing.T) {
	files, _ := filepath.Glob("../testdata/walks/*.json")
	if len(files) == 0 {
		t.Fatal("no walks in testdata/walks")
	}
	for _, path := range files {
		w := loadWalk(t, path)
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		for _, be := range redistest.Backends(srv) {
			t.Run(name+"/"+be.Name, func(t *testing.T) {
				replayWalk(t, be.New(t), w)
			})
		}
	}
}

func replayWalk(t *testing.T, rdb redis.UniversalClient, w walkFile) {
	ctx := context.Background()
	live := rules.NewLive(rdb, quiet)
	cat := live.Catalog()
	for _, s := range w.Stores {
		st := &rules.Store{ID: s.ID, Name: s.ID, RadiusM: s.RadiusM, Timezone: "Europe/Berlin"}
		if s.PolygonM != nil {
			for _, p := range s.PolygonM {
				lat, lng := walkPoint(p[0], p[1])
				st.Polygon = append(st.Polygon, [2]float64{lat, lng})
			}
		} else {
			lat, lng := walkPoint(s.NorthM, s.EastM)
			st.Lat, st.Lng = &lat, &lng
		}
		if _, err := cat.PutStore(ctx, st); err != nil {
			t.Fatalf("store %s: %v", s.ID, err)
		}
	}
	text := rules.Offer{Title: rules.Texts{{Lang: "en", Template: "Hi"}}, Body: rules.Texts{{Lang: "en", Template: "{{.store.name}}"}}}
	all := []rules.Rule{{ID: "hello", Name: "Hello", Trigger: rules.Trigger{On: rules.OnEnter}, Offer: text}}
	for _, r := range w.Rules {
		all = append(all, rules.Rule{ID: r.ID, Name: r.ID, Trigger: rules.Trigger{On: r.On, DwellS: r.DwellS}, Offer: text})
	}
	for _, r := range all {
		if err := cat.PutRule(ctx, &r, false); err != nil {
			t.Fatalf("rule %s: %v", r.ID, err)
		}
	}
	if err := live.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	cust := engine.NewCustomers(rdb)
	if _, err := cust.Put(ctx, &rules.Customer{ID: "walker", Consent: rules.Consent{Location: true, Push: true}}); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	clk := &clock{t: start}
	eng := engine.New(rdb, live, engine.NewCodeSigner([]byte("k")), engine.DefaultConfig(), quiet, clk.Now)
	for i, f := range w.Fixes {
		clk.mu.Lock()
		clk.t = start.Add(time.Duration(f.AtS) * time.Second)
		clk.mu.Unlock()
		lat, lng := walkPoint(f.NorthM, f.EastM)
		res, err := settled(eng).Evaluate(ctx, engine.Ping{
			CustomerID: "walker", Lat: lat, Lng: lng, AccuracyM: f.AccuracyM, SpeedMps: f.SpeedMps,
			TS: clk.Now().Add(-time.Duration(f.LateS) * time.Second),
		}, engine.Options{Explain: true})
		if err != nil {
			t.Fatalf("fix %d: %v", i, err)
		}
		var got []string
		for _, e := range res.Events {
			s := e.Type + " " + e.StoreID
			switch {
			case e.VisitS != nil:
				s += fmt.Sprint(" ", *e.VisitS)
			case e.DwellS != nil:
				s += fmt.Sprint(" ", *e.DwellS)
			}
			got = append(got, s)
		}
		slices.Sort(got)
		want := slices.Clone(f.Expect)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("fix %d (t=%ds, %vm N, %vm E, ±%vm): events %q, want %q", i, f.AtS, f.NorthM, f.EastM, f.AccuracyM, got, want)
		}
		wantOffers := 0
		if f.Offers != nil {
			wantOffers = *f.Offers
		}
		if len(res.Offers) != wantOffers {
			t.Fatalf("fix %d: %d offers, want %d (explain %+v)", i, len(res.Offers), wantOffers, res.Explain)
		}
	}
}
