package rules

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/geo"
)

// StoreEntry is a store in a snapshot, with its opening hours compiled.
type StoreEntry struct {
	*Store
	sched schedule
}

// OpenAt reports whether the store is open at t; a store without opening
// hours is always open.
func (s *StoreEntry) OpenAt(t time.Time) bool { return s.sched.openAt(t) }

// Location is the store's time zone, UTC when none is set.
func (s *StoreEntry) Location() *time.Location { return s.sched.loc }

// Snapshot is one immutable, compiled view of the catalog: the geo index
// and the rules in force by store and trigger. Pings read it without locks;
// a change builds a new one.
type Snapshot struct {
	Version int64
	BuiltAt time.Time
	Index   *geo.Index
	// Stores is in index order: Stores[h.Fence] is the store of a geo.Hit.
	Stores []*StoreEntry
	Rules  map[string]*Compiled
	// byTrigger[on][store position] lists the enabled rules that fire
	// there on that trigger, best first.
	byTrigger map[string][][]*Compiled
	storePos  map[string]int32
	tags      map[string]bool
	// dwell[store position] lists the dwell_s of the dwell rules there,
	// ascending, without repeats.
	dwell [][]int
}

// DwellThresholds lists the dwell times, in seconds, that rules at a store
// wait for, ascending.
func (s *Snapshot) DwellThresholds(store int32) []int {
	if int(store) >= len(s.dwell) {
		return nil
	}
	return s.dwell[store]
}

// Candidates lists the enabled rules for a store and trigger, best first:
// higher priority, then rule id.
func (s *Snapshot) Candidates(store int32, on string) []*Compiled {
	lists := s.byTrigger[on]
	if int(store) >= len(lists) {
		return nil
	}
	return lists[store]
}

// StoreRefFaults names each store id and tag a rule selects that no store
// in the snapshot has: most likely a typo, which would make the rule fire
// nowhere.
func (s *Snapshot) StoreRefFaults(r *Rule) []Fault {
	sel := r.Trigger.Stores
	if sel == nil {
		return nil
	}
	var fs faults
	for i, id := range sel.IDs {
		if _, ok := s.storePos[id]; !ok {
			fs.addPrecondition(fmt.Sprintf("trigger.stores.ids[%d]", i), "no store has the id %q", id)
		}
	}
	for i, tag := range sel.Tags {
		if !s.tags[tag] {
			fs.addPrecondition(fmt.Sprintf("trigger.stores.tags[%d]", i), "no store carries the tag %q", tag)
		}
	}
	return fs
}

// StoreByID finds a store's position.
func (s *Snapshot) StoreByID(id string) (int32, bool) {
	p, ok := s.storePos[id]
	return p, ok
}

// BuildSnapshot compiles stores and rules. A document that no longer
// compiles is left out and reported to skip, never failing the rest.
func BuildSnapshot(version int64, stores []*Store, rules []*Rule, skip func(kind, id string, err error)) (*Snapshot, error) {
	slices.SortFunc(stores, func(a, b *Store) int { return cmp.Compare(a.ID, b.ID) })
	snap := &Snapshot{
		Version:   version,
		BuiltAt:   time.Now(),
		Rules:     make(map[string]*Compiled, len(rules)),
		byTrigger: map[string][][]*Compiled{},
		storePos:  make(map[string]int32, len(stores)),
	}
	fences := make([]geo.Fence, 0, len(stores))
	byTag := map[string][]int32{}
	snap.tags = map[string]bool{}
	schedules := map[string]schedule{} // stores with the same hours share theirs
	// The entries in one array (never grown, so the pointers hold): one
	// object for the garbage collector to mark, not one a store.
	entries := make([]StoreEntry, 0, len(stores))
	for _, s := range stores {
		if err := s.Normalize(); err != nil {
			skip("store", s.ID, err)
			continue
		}
		pos := int32(len(snap.Stores))
		entries = append(entries, StoreEntry{Store: s, sched: sharedSchedule(schedules, s)})
		snap.Stores = append(snap.Stores, &entries[pos])
		snap.storePos[s.ID] = pos
		fences = append(fences, s.Fence())
		for _, t := range s.Tags {
			byTag[t] = append(byTag[t], pos)
			snap.tags[t] = true
		}
	}
	ix, err := geo.NewIndex(fences)
	if err != nil {
		return nil, fmt.Errorf("build geo index: %w", err)
	}
	snap.Index = ix

	for _, r := range rules {
		c, err := compile(r, false)
		if err != nil {
			skip("rule", r.ID, err)
			continue
		}
		snap.Rules[r.ID] = c
		if !r.IsEnabled() {
			continue
		}
		lists := snap.byTrigger[r.Trigger.On]
		if lists == nil {
			lists = make([][]*Compiled, len(snap.Stores))
			snap.byTrigger[r.Trigger.On] = lists
		}
		for _, pos := range snap.selectStores(r.Trigger.Stores, byTag) {
			lists[pos] = append(lists[pos], c)
		}
	}
	if lists := snap.byTrigger[OnDwell]; lists != nil {
		snap.dwell = dwellLists(lists)
	}
	for _, lists := range snap.byTrigger {
		for _, l := range lists {
			slices.SortFunc(l, func(a, b *Compiled) int {
				if a.Rule.Priority != b.Rule.Priority {
					return cmp.Compare(b.Rule.Priority, a.Rule.Priority)
				}
				return cmp.Compare(a.Rule.ID, b.Rule.ID)
			})
		}
		shareLists(lists)
	}
	return snap, nil
}

// shareLists has the stores whose lists hold the same rules share one (a
// chain's stores, a category's: most of them), clipped so that nothing
// can append to it. Each list is an object and each of its rules a
// pointer that every garbage collection reads: a list per store per
// trigger was 100,000 objects under the bench, and a ping waits out
// every collection.
func shareLists(lists [][]*Compiled) {
	seen := map[string][]*Compiled{}
	var key []byte
	for pos, l := range lists {
		if len(l) == 0 {
			continue
		}
		key = key[:0]
		for _, c := range l {
			key = append(append(key, c.Rule.ID...), 0)
		}
		if shared, ok := seen[string(key)]; ok {
			lists[pos] = shared
			continue
		}
		lists[pos] = slices.Clip(l)
		seen[string(key)] = lists[pos]
	}
}

func (s *Snapshot) selectStores(sel *StoreSelector, byTag map[string][]int32) []int32 {
	if sel == nil {
		all := make([]int32, len(s.Stores))
		for i := range all {
			all[i] = int32(i)
		}
		return all
	}
	seen := map[int32]bool{}
	var out []int32
	add := func(p int32) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, id := range sel.IDs {
		if p, ok := s.storePos[id]; ok {
			add(p)
		}
	}
	for _, t := range sel.Tags {
		for _, p := range byTag[t] {
			add(p)
		}
	}
	return out
}

// Live keeps the current snapshot of the catalog and replaces it when the
// catalog changes: at once on a pub/sub notice, and by a version check
// every PollEvery as a safety net for a missed notice.
type Live struct {
	cat       *Catalog
	rdb       redis.UniversalClient
	log       *slog.Logger
	PollEvery time.Duration

	cur atomic.Pointer[Snapshot]
	mu  sync.Mutex // one rebuild at a time
}

// NewLive returns a Live over the catalog; call Refresh before serving.
func NewLive(rdb redis.UniversalClient, log *slog.Logger) *Live {
	l := &Live{cat: NewCatalog(rdb), rdb: rdb, log: log, PollEvery: 2 * time.Second}
	l.cat.storeRefs = func(ctx context.Context, r *Rule) []Fault {
		// The stores as they are now, not as this replica last heard: a
		// store saved through another replica a moment ago counts.
		if err := l.Refresh(ctx); err != nil {
			l.log.Warn("rule checked against the snapshot in force", "err", err)
		}
		if snap := l.Current(); snap != nil {
			return snap.StoreRefFaults(r)
		}
		return nil
	}
	return l
}

// Catalog is the repository the snapshot is built from.
func (l *Live) Catalog() *Catalog { return l.cat }

// Current is the snapshot in force; nil before the first Refresh.
func (l *Live) Current() *Snapshot { return l.cur.Load() }

// Refresh builds a new snapshot if the catalog's version moved.
func (l *Live) Refresh(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, err := l.cat.Version(ctx)
	if err != nil {
		return err
	}
	if cur := l.cur.Load(); cur != nil && cur.Version == v {
		return nil
	}
	version, storeDocs, ruleDocs, err := l.cat.load(ctx)
	if err != nil {
		return err
	}
	skip := func(kind, id string, err error) {
		l.log.Warn("left out of snapshot", "kind", kind, "id", id, "err", err)
	}
	stores := compactStores(decodeAll[Store]("store", storeDocs, skip))
	rules := decodeAll[Rule]("rule", ruleDocs, skip)
	start := time.Now()
	snap, err := BuildSnapshot(version, stores, rules, skip)
	if err != nil {
		return err
	}
	l.cur.Store(snap)
	l.log.Info("snapshot built", "version", version, "stores", len(snap.Stores), "rules", len(snap.Rules), "took", time.Since(start).Round(time.Microsecond))
	return nil
}

// Run follows catalog changes until ctx ends.
func (l *Live) Run(ctx context.Context) error {
	Follow(ctx, l.rdb, ChannelChanged, l.PollEvery, l.Refresh, l.log, "snapshot refresh failed")
	return nil
}

// Follow calls refresh whenever a notice comes on channel, and every
// every should a notice be lost (Pub/Sub delivers at most once), until
// ctx ends; a failed refresh is logged as failed and tried again on the
// next notice or tick. Whatever a replica keeps in step with Redis
// (the catalog, the webhook subscriptions) follows it this way.
func Follow(ctx context.Context, rdb redis.UniversalClient, channel string, every time.Duration, refresh func(context.Context) error, log *slog.Logger, failed string) {
	sub := rdb.Subscribe(ctx, channel)
	defer sub.Close()
	msgs := sub.Channel()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-msgs:
		case <-tick.C:
		}
		if err := refresh(ctx); err != nil && ctx.Err() == nil {
			log.Warn(failed, "err", err)
		}
	}
}

// dwellLists lists each store's dwell thresholds, ascending, without
// repeats, all in one array (a store's list is a slice of it, of its own
// length and capacity).
func dwellLists(lists [][]*Compiled) [][]int {
	var all []int
	ends := make([]int, len(lists))
	for pos, l := range lists {
		start := len(all)
		for _, c := range l {
			all = append(all, c.Rule.Trigger.DwellS)
		}
		slices.Sort(all[start:])
		all = all[:start+len(slices.Compact(all[start:]))]
		ends[pos] = len(all)
	}
	out := make([][]int, len(lists))
	start := 0
	for pos, end := range ends {
		if end > start {
			out[pos] = all[start:end:end]
		}
		start = end
	}
	return out
}

// compactStores makes stores just decoded cheaper for the garbage
// collector, which marks every object of the catalog at each cycle (and
// each cycle is a stall of the pings): it answers the same stores in one
// array; their ids and names in one string; their tags in one array,
// the same time zone or tag one string for all the stores that carry it,
// the same opening hours one map (some 20 objects a store: nothing
// changes a store's hours once decoded); the coordinates of them all one
// array, not two objects a store. Some 200,000 objects for 20,000 stores
// become a few thousand. The stores given are nobody else's yet.
func compactStores(stores []*Store) []*Store {
	seen := map[string]string{}
	hours := map[string]map[string][]string{}
	intern := func(v string) string {
		if s, ok := seen[v]; ok {
			return s
		}
		seen[v] = v
		return v
	}
	var names strings.Builder
	nTags := 0
	for _, s := range stores {
		names.WriteString(s.ID)
		names.WriteString(s.Name)
		nTags += len(s.Tags)
	}
	all := names.String()
	// None of these is ever grown: the pointers and slices into them stay.
	slab := make([]Store, len(stores))
	coords := make([]float64, 0, 2*len(stores))
	tags := make([]string, 0, nTags)
	out := make([]*Store, len(stores))
	at := 0
	for i, s := range stores {
		slab[i] = *s
		c := &slab[i]
		out[i] = c
		c.ID, c.Name = all[at:at+len(s.ID)], all[at+len(s.ID):at+len(s.ID)+len(s.Name)]
		at += len(s.ID) + len(s.Name)
		c.Timezone = intern(s.Timezone)
		if len(s.OpeningHours) > 0 {
			k := hoursKey(s.OpeningHours)
			if h, ok := hours[k]; ok {
				c.OpeningHours = h
			} else {
				hours[k] = s.OpeningHours
			}
		}
		if s.Tags != nil {
			start := len(tags)
			for _, t := range s.Tags {
				tags = append(tags, intern(t))
			}
			c.Tags = tags[start:len(tags):len(tags)]
		}
		if s.Lat != nil && s.Lng != nil {
			coords = append(coords, *s.Lat, *s.Lng)
			c.Lat, c.Lng = &coords[len(coords)-2], &coords[len(coords)-1]
		}
	}
	return out
}

// decodeAll decodes a hash of JSON documents, reporting any that fail.
func decodeAll[T any](kind string, docs map[string]string, skip func(kind, id string, err error)) []*T {
	out := make([]*T, 0, len(docs))
	for id, doc := range docs {
		var v T
		if err := json.Unmarshal([]byte(doc), &v); err != nil {
			skip(kind, id, err)
			continue
		}
		out = append(out, &v)
	}
	return out
}
