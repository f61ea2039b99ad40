package engine

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// AppendJSON writes what encoding/json writes, byte for byte, for results
// of every shape: lists nil, empty or not, each optional field set or not,
// strings that need every kind of escaping, times of any precision and
// zone, coordinates of any size, monitor blocks of every kind. It appends:
// what the buffer held stays in front.
func TestResultJSONMatchesEncodingJSON(t *testing.T) {
	type plain Result // encoding/json's own way: no AppendJSON in the way
	g := resultGen{rand.New(rand.NewPCG(3, 5))}
	var buf []byte
	for n := range 4000 {
		r := g.result()
		want, err := json.Marshal((*plain)(r))
		if err != nil {
			t.Fatalf("result %d: encoding/json: %v", n, err)
		}
		prefix := []string{"", "[", `{"results":[`}[n%3]
		buf = r.AppendJSON(append(buf[:0], prefix...))
		got, ok := strings.CutPrefix(string(buf), prefix)
		if !ok {
			t.Fatalf("result %d: the buffer's %q was overwritten: %q", n, prefix, buf)
		}
		if i := firstDiff(got, string(want)); i >= 0 {
			t.Fatalf("result %d: byte %d differs:\nAppendJSON    %s\nencoding/json %s", n, i, around(got, i), around(string(want), i))
		}
	}
	if got, want := string((*Result)(nil).AppendJSON(nil)), "null"; got != want {
		t.Fatalf("a nil result: %s, want %s", got, want)
	}
}

// firstDiff is the offset of the first byte where a and b differ, -1 when
// they are the same.
func firstDiff(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) == len(b) {
		return -1
	}
	return min(len(a), len(b))
}

// around shows s near offset i, quoted so that control bytes and invalid
// UTF-8 can be told apart.
func around(s string, i int) string {
	lo, hi := max(0, i-40), min(len(s), i+40)
	return fmt.Sprintf("…%q…", s[lo:hi])
}

// resultGen makes random results, from a seeded generator so that a
// failure can be replayed.
type resultGen struct{ rng *rand.Rand }

// genPieces are what strings are made of: plain ids, ASCII bytes of each
// kind encoding/json escapes (short escapes and \u00XX alike), HTML's
// special characters, U+2028 and U+2029 and their neighbours, umlauts,
// the euro sign, emoji, U+FFFD as it is, and invalid UTF-8: a lone byte,
// a cut sequence, an encoded surrogate, an overlong encoding. A random
// byte now and then covers the rest.
var genPieces = []string{
	"s-alex", "K7QM2XPA9F3D", "Ein Flat White für dich", "Grüße aus Köln", "nur 2,50 €",
	`"`, `\`, "/", "\x00", "\x01", "\x1f", "\b", "\f", "\n", "\r", "\t", "\x7f", " ",
	"<", ">", "&", "</script>", "\u2028", "\u2029", "\u2027\u202a",
	"ä", "Ö", "ß", "€", "😀", "👩‍👩‍👧", "\ufffd", "日本",
	"\xff", "\xc3", "\xe2\x82", "\xed\xa0\x80", "\xc0\xaf", "\x80\x80",
}

func (g resultGen) str() string {
	if g.rng.IntN(4) == 0 {
		return ""
	}
	var sb strings.Builder
	for range g.rng.IntN(6) + 1 {
		if g.rng.IntN(8) == 0 {
			sb.WriteByte(byte(g.rng.IntN(256))) // any byte at all
		} else {
			sb.WriteString(genPieces[g.rng.IntN(len(genPieces))])
		}
	}
	return sb.String()
}

func (g resultGen) intPtr() *int {
	if g.rng.IntN(2) == 0 {
		return nil
	}
	n := []int{0, -1, 1, 86400, math.MaxInt64, math.MinInt64, g.rng.IntN(100000)}[g.rng.IntN(7)]
	return &n
}

// genZones are fixed offsets, east and west, whole hours and not, and one
// with seconds (Berlin's local mean time), which RFC 3339 cuts to minutes.
var genZones = []*time.Location{
	time.UTC, time.FixedZone("CEST", 2*3600), time.FixedZone("NST", -(3*3600 + 30*60)),
	time.FixedZone("ACWST", 8*3600+45*60), time.FixedZone("LMT", 53*60+28), time.FixedZone("", -12*3600),
}

func (g resultGen) time() time.Time {
	switch g.rng.IntN(8) {
	case 0:
		return time.Time{}
	case 1:
		return time.Now() // with a monotonic reading, which is not written
	}
	sec := g.rng.Int64N(4_000_000_000) - 1_000_000_000
	nsec := []int64{0, 500_000_000, 120_000, 1, 999_999_999, g.rng.Int64N(1e9)}[g.rng.IntN(6)]
	return time.Unix(sec, nsec).In(genZones[g.rng.IntN(len(genZones))])
}

// float is a coordinate or any other number encoding/json writes: zero of
// either sign, tiny and huge ones written with an exponent, and ordinary.
func (g resultGen) float() float64 {
	switch g.rng.IntN(6) {
	case 0:
		return []float64{0, math.Copysign(0, -1), 1e-7, -1e-6, 1e21, -1e300, math.SmallestNonzeroFloat64, math.MaxFloat64}[g.rng.IntN(8)]
	case 1:
		return float64(g.rng.IntN(360) - 180)
	}
	return (g.rng.Float64()*360 - 180) * math.Pow(10, float64(g.rng.IntN(12)-6))
}

// count is a list's length, -1 standing for a nil list.
func (g resultGen) count() int {
	return g.rng.IntN(5) - 1
}

func genList[T any](n int, each func() T) []T {
	if n < 0 {
		return nil
	}
	xs := []T{}
	for range n {
		xs = append(xs, each())
	}
	return xs
}

func (g resultGen) result() *Result {
	r := &Result{
		Events:  genList(g.count(), g.event),
		Offers:  genList(g.count(), g.offer),
		Explain: genList(g.count(), g.explanation),
		Reason:  g.str(),
	}
	if g.rng.IntN(2) == 0 {
		r.Trust = &TrustOf{Level: g.str(), Signals: genList(g.count(), g.str)}
	}
	if g.rng.IntN(3) > 0 {
		r.Monitor = g.monitor()
	}
	if g.rng.IntN(3) > 0 {
		r.NextPing = &NextPing{DistanceM: g.rng.IntN(30000) - 10, AfterS: g.intPtr()}
	}
	return r
}

func (g resultGen) event() Event {
	return Event{Type: g.str(), StoreID: g.str(), DistanceM: g.rng.IntN(2000) - 100, VisitS: g.intPtr(), DwellS: g.intPtr()}
}

func (g resultGen) offer() IssuedOffer {
	return IssuedOffer{CouponCode: g.str(), RuleID: g.str(), StoreID: g.str(), Title: g.str(), Body: g.str(),
		ExpiresAt: g.time(), Variant: g.str(), Kind: g.str()}
}

func (g resultGen) explanation() Explanation {
	return Explanation{RuleID: g.str(), StoreID: g.str(), Result: g.str(), Variant: g.str()}
}

func (g resultGen) region() Region {
	return Region{ID: g.str(), StoreID: g.str(), Lat: g.float(), Lng: g.float(), RadiusM: g.rng.IntN(50000) - 10}
}

// monitor is a block as pacing makes it (unchanged, or regions with their
// encoding kept beside them) or as a test might (regions not encoded).
func (g resultGen) monitor() *Monitor {
	if g.rng.IntN(4) == 0 {
		return &Monitor{ID: g.str(), Unchanged: true}
	}
	m := &Monitor{ID: g.str(), Regions: genList(g.rng.IntN(21)-1, g.region)}
	if g.rng.IntN(3) > 0 {
		w := g.region()
		m.Wake = &w
	}
	if g.rng.IntN(2) == 0 {
		t := tabled(*m)
		m = &t
	}
	return m
}

// BenchmarkResultJSON compares encoding/json with AppendJSON into a buffer
// kept from one answer to the next, for an entry with an offer and a
// monitor block of iOS's 19 regions, and for the most common answer of a
// phone that paces itself: its block unchanged.
func BenchmarkResultJSON(b *testing.B) {
	regions := make([]Region, 19)
	for i := range regions {
		id := fmt.Sprintf("s-store-%02d", i)
		regions[i] = Region{ID: RegionIDPrefix + id, StoreID: id, Lat: 52.52 + float64(i)*0.0013, Lng: 13.405 - float64(i)*0.0021, RadiusM: 100 + 7*i}
	}
	afterS := 30
	block := tabled(Monitor{ID: monitorID(7, 19, 52.52, 13.405, 640), Regions: regions,
		Wake: &Region{ID: WakeRegionID, Lat: 52.52, Lng: 13.405, RadiusM: 640}})
	results := []struct {
		name string
		res  *Result
	}{
		{"entry_offer_monitor", &Result{
			Events: []Event{{Type: "enter", StoreID: "s-alex", DistanceM: 42}},
			Offers: []IssuedOffer{{CouponCode: "K7QM2XPA9F3D", RuleID: "flat-white", StoreID: "s-alex", ExpiresAt: time.Unix(1800000000, 0).UTC(),
				Title: "Hallo Anna!", Body: "Ein Flat White für dich, 42 m entfernt, nur 2,50 €"}},
			Monitor:  &block,
			NextPing: &NextPing{DistanceM: 35, AfterS: &afterS},
		}},
		{"unchanged", &Result{Events: []Event{}, Offers: []IssuedOffer{},
			Monitor:  &Monitor{ID: monitorID(7, 19, 52.52, 13.405, 640), Unchanged: true},
			NextPing: &NextPing{DistanceM: 212}}},
	}
	for _, c := range results {
		b.Run(c.name+"/encoding_json", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := json.Marshal(c.res); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/append_json", func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				buf = c.res.AppendJSON(buf[:0])
			}
		})
	}
}
