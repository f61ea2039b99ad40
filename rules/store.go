package rules

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nearcast/nearcast/geo"
)

// DefaultRadiusM is a store's radius when its document gives none.
const DefaultRadiusM = 100

// Store is a shop and its geofence, as marketers write it.
type Store struct {
	ID           string              `json:"id" expr:"id"`
	Name         string              `json:"name" expr:"name"`
	Lat          *float64            `json:"lat" expr:"-"`
	Lng          *float64            `json:"lng" expr:"-"`
	RadiusM      float64             `json:"radius_m" expr:"radius_m"`
	Polygon      [][2]float64        `json:"polygon,omitempty" expr:"-"`
	Tags         []string            `json:"tags" expr:"tags"`
	Timezone     string              `json:"timezone,omitempty" expr:"timezone"`
	OpeningHours map[string][]string `json:"opening_hours,omitempty" expr:"-"`
	UpdatedAt    time.Time           `json:"updated_at" expr:"-"`
}

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

var hoursRe = regexp.MustCompile(`^([01]\d|2[0-4]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$`)

// Normalize fills defaults and checks every field, returning all faults.
// The faults come in the order of the document's fields; a polygon is
// normalized first, since its centroid is the store's position when the
// document gives none.
func (s *Store) Normalize() error {
	var fs faults
	if err := ValidID("id", s.ID); err != nil {
		fs = append(fs, err.(*ValidationError).Faults...)
	}
	if s.Name == "" {
		fs.add("name", "name is required")
	} else if len(s.Name) > 200 {
		fs.add("name", "name must be at most 200 characters")
	}
	s.normalizePolygon(&fs)
	s.checkPosition(&fs)
	s.normalizeRadius(&fs)
	s.normalizeTags(&fs)
	if s.Timezone != "" {
		if _, err := loadLocation(s.Timezone); err != nil {
			fs.add("timezone", "unknown time zone %q (use an IANA name such as Europe/Berlin)", s.Timezone)
		}
	}
	s.checkOpeningHours(&fs)
	return fs.err()
}

// normalizePolygon closes and checks a polygon fence, naming the point at
// fault when there is one. A valid polygon gives the store its centroid
// as position unless the document gives lat and lng; a polygon store has
// no radius.
func (s *Store) normalizePolygon(fs *faults) {
	if s.Polygon == nil {
		return
	}
	s.Polygon = geo.NormalizeRing(s.Polygon)
	if err := geo.ValidatePolygon(s.Polygon); err != nil {
		var pe *geo.PolygonError
		if errors.As(err, &pe) && pe.Point >= 0 {
			fs.add(fmt.Sprintf("polygon[%d]", pe.Point), "%s", pe.Msg)
		} else {
			fs.add("polygon", "%v", err)
		}
	} else if s.Lat == nil && s.Lng == nil {
		lat, lng := geo.Centroid(s.Polygon)
		s.Lat, s.Lng = &lat, &lng
	}
	if s.RadiusM != 0 {
		fs.add("radius_m", "give either radius_m or polygon, not both")
	}
}

// checkPosition checks lat and lng, which a store needs unless it has a
// polygon: a valid one has given its centroid, and an invalid one is
// fault enough.
func (s *Store) checkPosition(fs *faults) {
	switch {
	case s.Lat == nil && s.Polygon != nil:
		// an invalid polygon is fault enough; a valid one gives its centroid
	case s.Lat == nil:
		fs.add("lat", "lat is required")
	case math.IsNaN(*s.Lat) || *s.Lat < -90 || *s.Lat > 90:
		fs.add("lat", "lat must be between -90 and 90")
	}
	switch {
	case s.Lng == nil && s.Polygon != nil:
	case s.Lng == nil:
		fs.add("lng", "lng is required")
	case math.IsNaN(*s.Lng) || *s.Lng < -180 || *s.Lng > 180:
		fs.add("lng", "lng must be between -180 and 180")
	}
}

// normalizeRadius gives a circle store DefaultRadiusM when the document
// gives no radius, and checks the radius against the bounds of geo.
func (s *Store) normalizeRadius(fs *faults) {
	if s.RadiusM == 0 && s.Polygon == nil {
		s.RadiusM = DefaultRadiusM
	}
	if s.Polygon == nil && s.RadiusM < geo.MinRadiusM || s.RadiusM > geo.MaxRadiusM || math.IsNaN(s.RadiusM) {
		fs.add("radius_m", "radius_m must be between %d and %d", geo.MinRadiusM, geo.MaxRadiusM)
	}
}

// normalizeTags makes absent tags an empty list, so that the document is
// written back with "tags": [], and checks each tag's length.
func (s *Store) normalizeTags(fs *faults) {
	if s.Tags == nil {
		s.Tags = []string{}
	}
	for i, t := range s.Tags {
		if t == "" || len(t) > 64 {
			fs.add(fmt.Sprintf("tags[%d]", i), "a tag must be 1 to 64 characters")
		}
	}
}

// checkOpeningHours checks that opening hours name known days and spans
// that parse, each fault at the path of its day or span.
func (s *Store) checkOpeningHours(fs *faults) {
	for day, spans := range s.OpeningHours {
		if _, ok := weekdays[day]; !ok {
			fs.add("opening_hours."+day, "unknown day %q: use mon, tue, wed, thu, fri, sat or sun", day)
			continue
		}
		for i, span := range spans {
			if _, _, err := parseSpan(span); err != nil {
				fs.add(fmt.Sprintf("opening_hours.%s[%d]", day, i), "%v", err)
			}
		}
	}
}

// ParseSpan reads "07:00-20:00" as minutes since midnight. A span whose
// end is not after its start runs past midnight.
func ParseSpan(span string) (from, to int, err error) { return parseSpan(span) }

// parseSpan reads "07:00-20:00" as minutes since midnight. A span whose end
// is not after its start runs past midnight.
func parseSpan(span string) (from, to int, err error) {
	m := hoursRe.FindStringSubmatch(span)
	if m == nil {
		return 0, 0, fmt.Errorf("opening hours are written \"07:00-20:00\", not %q", span)
	}
	n := func(s string) int { v, _ := strconv.Atoi(s); return v }
	from, to = n(m[1])*60+n(m[2]), n(m[3])*60+n(m[4])
	if from > 24*60 || to > 24*60 {
		return 0, 0, fmt.Errorf("%q: a time of day is at most 24:00", span)
	}
	if from == to {
		return 0, 0, fmt.Errorf("%q: a span must not be empty", span)
	}
	return from, to, nil
}

// Fence is the store's geofence.
func (s *Store) Fence() geo.Fence {
	return geo.Fence{ID: s.ID, Lat: *s.Lat, Lng: *s.Lng, RadiusM: s.RadiusM, Polygon: s.Polygon}
}

// schedule is a store's opening hours compiled for quick checks.
type schedule struct {
	loc  *time.Location
	open [7][][2]int // per weekday, spans in minutes; nil map means always open
	any  bool        // opening hours were given
}

// sharedSchedule is the store's schedule, compiled once for every store
// of a snapshot with the same hours in the same timezone (a chain's
// stores, mostly): its spans are some ten objects that the garbage
// collector reads at every collection. A schedule is never changed once
// compiled.
func sharedSchedule(seen map[string]schedule, s *Store) schedule {
	if len(s.OpeningHours) == 0 {
		return compileSchedule(s)
	}
	key := s.Timezone + hoursKey(s.OpeningHours)
	sc, ok := seen[key]
	if !ok {
		sc = compileSchedule(s)
		seen[key] = sc
	}
	return sc
}

// hoursKey is opening hours as one string: the same for the same hours.
func hoursKey(hours map[string][]string) string {
	var b strings.Builder
	for _, day := range slices.Sorted(maps.Keys(hours)) {
		b.WriteString("\x00" + day)
		for _, span := range hours[day] {
			b.WriteString("\x01" + span)
		}
	}
	return b.String()
}

func compileSchedule(s *Store) schedule {
	sc := schedule{loc: time.UTC}
	if loc, err := loadLocation(s.Timezone); err == nil {
		sc.loc = loc
	}
	for day, spans := range s.OpeningHours {
		wd := weekdays[day]
		for _, span := range spans {
			from, to, err := parseSpan(span)
			if err != nil {
				continue
			}
			sc.any = true
			if to > from {
				sc.open[wd] = append(sc.open[wd], [2]int{from, to})
				continue
			}
			// Past midnight: the rest of this day and the start of the next.
			sc.open[wd] = append(sc.open[wd], [2]int{from, 24 * 60})
			sc.open[(wd+1)%7] = append(sc.open[(wd+1)%7], [2]int{0, to})
		}
	}
	return sc
}

// openAt reports whether the store is open at t.
func (sc *schedule) openAt(t time.Time) bool {
	if !sc.any {
		return true
	}
	lt := t.In(sc.loc)
	m := lt.Hour()*60 + lt.Minute()
	for _, span := range sc.open[lt.Weekday()] {
		if m >= span[0] && m < span[1] {
			return true
		}
	}
	return false
}
