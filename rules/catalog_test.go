package rules

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nearcast/nearcast/internal/redistest"
)

var srv *redistest.Server

func TestMain(m *testing.M) { redistest.Main(m, &srv) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestRuleVersions(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			ctx := context.Background()
			rdb := be.New(t)
			cat := NewCatalog(rdb)
			for want := int64(1); want <= 3; want++ {
				r := goodRule()
				r.Priority = int(want)
				if err := cat.PutRule(ctx, r, false); err != nil {
					t.Fatal(err)
				}
				if r.Version != want {
					t.Fatalf("version %d, want %d", r.Version, want)
				}
			}
			// A dry run validates and names the version it would make, but saves nothing.
			r := goodRule()
			if err := cat.PutRule(ctx, r, true); err != nil || r.Version != 4 {
				t.Fatalf("dry run: %v, version %d", err, r.Version)
			}
			got, err := cat.GetRule(ctx, "latte")
			if err != nil || got.Version != 3 || got.Priority != 3 {
				t.Fatalf("GetRule = %+v, %v", got, err)
			}
			if n, _ := rdb.LLen(ctx, keyRuleHistory+"latte").Result(); n != 3 {
				t.Fatalf("history holds %d versions, want 3", n)
			}
			// Deleting keeps the history; saving again continues the numbering.
			if err := cat.DeleteRule(ctx, "latte"); err != nil {
				t.Fatal(err)
			}
			if _, err := cat.GetRule(ctx, "latte"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("deleted rule: %v", err)
			}
			if err := cat.DeleteRule(ctx, "latte"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("deleting twice: %v", err)
			}
			r = goodRule()
			if err := cat.PutRule(ctx, r, false); err != nil || r.Version != 4 {
				t.Fatalf("re-created: %v, version %d", err, r.Version)
			}
			// An invalid rule changes nothing.
			bad := goodRule()
			bad.Audience = "customer.nope"
			if err := cat.PutRule(ctx, bad, false); err == nil {
				t.Fatal("invalid rule saved")
			}
			if got, _ := cat.GetRule(ctx, "latte"); got.Version != 4 {
				t.Fatalf("invalid save changed the rule: %+v", got)
			}
		})
	}
}

func TestStorePaging(t *testing.T) {
	ctx := context.Background()
	cat := NewCatalog(srv.Client(t))
	for i := 0; i < 250; i++ {
		lat, lng := 52.0+float64(i)/1000, 13.0
		s := &Store{ID: "s" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Name: "x", Lat: &lat, Lng: &lng}
		if _, err := cat.PutStore(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		page, next, err := cat.ListStores(ctx, cursor, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range page {
			seen[s.ID] = true
		}
		if next == "" {
			break
		}
		if pages > 50 {
			t.Fatal("paging does not end")
		}
		cursor = next
	}
	if len(seen) != 250 {
		t.Fatalf("pages listed %d stores, want 250", len(seen))
	}
}

// A change saved through one replica is in force on another within a
// second, through pub/sub.
func TestLiveFollowsChangesAcrossReplicas(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rdb := srv.Client(t)
	writer, reader := NewLive(rdb, quiet), NewLive(srv.Client(t), quiet)
	reader.PollEvery = time.Hour // only pub/sub can deliver the change in time
	if err := reader.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { reader.Run(ctx); close(done) }()
	time.Sleep(100 * time.Millisecond) // let the subscription start

	lat, lng := 52.5219, 13.4132
	start := time.Now()
	if _, err := writer.Catalog().PutStore(ctx, &Store{ID: "s-alex", Name: "Alex", Lat: &lat, Lng: &lng}); err != nil {
		t.Fatal(err)
	}
	for {
		if snap := reader.Current(); snap != nil && snap.Index.Len() == 1 {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatal("the other replica did not see the new store within a second")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if hits := reader.Current().Index.Near(lat, lng, nil); len(hits) != 1 || !hits[0].Inside {
		t.Fatalf("new store not in the index: %+v", hits)
	}
	cancel()
	<-done
}
