package rules

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/text/language"
)

// Customer is a customer's profile: what audiences and templates are
// written against.
type Customer struct {
	ID         string         `json:"id" expr:"id"`
	FirstName  string         `json:"first_name,omitempty" expr:"first_name"`
	LastName   string         `json:"last_name,omitempty" expr:"last_name"`
	Locale     string         `json:"locale,omitempty" expr:"locale"`
	Timezone   string         `json:"timezone,omitempty" expr:"timezone"`
	Consent    Consent        `json:"consent" expr:"consent"`
	Segments   []string       `json:"segments" expr:"segments"`
	Attributes map[string]any `json:"attributes" expr:"attributes"`
	UpdatedAt  time.Time      `json:"updated_at" expr:"-"`
	// LastNPS is the customer's last answer to an NPS question (0 to 10),
	// -1 when they never answered one: kept by the engine from their
	// answers (feedback.go), never written with the profile. The engine
	// sets it before an audience runs.
	LastNPS int `json:"-" expr:"last_nps"`
}

// Consent is what the customer agreed to. All default to false: nothing
// is kept or sent for a customer who has not said yes.
type Consent struct {
	Location bool `json:"location" expr:"location"`
	Push     bool `json:"push" expr:"push"`
	// Feedback: the customer may be asked a question after a visit
	// (an offer of kind "feedback"), besides Push.
	Feedback bool `json:"feedback,omitempty" expr:"feedback"`
}

// Profile limits. Audiences and templates walk a profile's lists and
// print its strings on every ping near a store, so their sizes are bounded
// where profiles are written; an evaluation's budget (AudienceSteps) and a
// render's (MaxTextBytes) still hold for a profile written before.
const (
	// MaxListLen bounds customer.segments and every list attribute.
	MaxListLen = 100
	// MaxListItemBytes bounds a segment and an item of a list attribute.
	MaxListItemBytes = 64
	// MaxAttributes bounds how many attributes a profile has, and
	// MaxAttributeKeyBytes the length of each name.
	MaxAttributes        = 50
	MaxAttributeKeyBytes = 64
	// MaxAttributeBytes bounds a string attribute.
	MaxAttributeBytes = 256
)

// Normalize fills defaults and checks every field, returning all faults.
func (c *Customer) Normalize() error {
	var fs faults
	if err := ValidID("id", c.ID); err != nil {
		fs = append(fs, err.(*ValidationError).Faults...)
	}
	if len(c.FirstName) > 200 {
		fs.add("first_name", "first_name must be at most 200 characters")
	}
	if len(c.LastName) > 200 {
		fs.add("last_name", "last_name must be at most 200 characters")
	}
	if c.Locale != "" {
		if _, err := language.Parse(c.Locale); err != nil {
			fs.add("locale", "locale must be a BCP 47 language tag such as de or en-GB")
		}
	}
	if c.Timezone != "" {
		if _, err := loadLocation(c.Timezone); err != nil {
			fs.add("timezone", "unknown time zone %q (use an IANA name such as Europe/Berlin)", c.Timezone)
		}
	}
	if c.Segments == nil {
		c.Segments = []string{}
	}
	if len(c.Segments) > MaxListLen {
		fs.add("segments", "a customer has at most %d segments", MaxListLen)
	}
	for i, s := range c.Segments {
		if s == "" || len(s) > MaxListItemBytes {
			fs.add(fmt.Sprintf("segments[%d]", i), "a segment must be 1 to %d characters", MaxListItemBytes)
		}
	}
	if c.Attributes == nil {
		c.Attributes = map[string]any{}
	}
	if len(c.Attributes) > MaxAttributes {
		fs.add("attributes", "a customer has at most %d attributes", MaxAttributes)
	}
	keys := make([]string, 0, len(c.Attributes))
	for k := range c.Attributes {
		keys = append(keys, k)
	}
	slices.Sort(keys) // faults in the same order every time
	for _, k := range keys {
		if k == "" || len(k) > MaxAttributeKeyBytes {
			fs.add("attributes."+k, "an attribute's name must be 1 to %d characters", MaxAttributeKeyBytes)
		}
		if msg := checkAttribute(c.Attributes[k]); msg != "" {
			fs.add("attributes."+k, "%s", msg)
		}
	}
	return fs.err()
}

// checkAttribute says what is wrong with an attribute's value, or "".
func checkAttribute(v any) string {
	switch v := v.(type) {
	case float64, bool:
		return ""
	case string:
		if len(v) > MaxAttributeBytes {
			return fmt.Sprintf("a string attribute is at most %d characters", MaxAttributeBytes)
		}
		return ""
	case []any:
		if len(v) > MaxListLen {
			return fmt.Sprintf("a list attribute has at most %d items", MaxListLen)
		}
		for _, e := range v {
			if s, ok := e.(string); !ok {
				return "a list attribute holds only strings"
			} else if len(s) > MaxListItemBytes {
				return fmt.Sprintf("an item of a list attribute is at most %d characters", MaxListItemBytes)
			}
		}
		return ""
	}
	return "an attribute is a string, a number, true or false, or a list of strings"
}

// Location is the customer's time zone, UTC when none is set.
func (c *Customer) Location() *time.Location {
	if loc, err := loadLocation(c.Timezone); err == nil {
		return loc
	}
	return time.UTC
}

// zones caches time.LoadLocation, which reads and parses the zone's data
// on every call: too slow for the hot path and for bulk loads.
var zones sync.Map // name → *time.Location

// loadLocation is time.LoadLocation, cached; "" is UTC.
func loadLocation(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	if loc, ok := zones.Load(name); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	zones.Store(name, loc)
	return loc, nil
}

// Device is a phone or browser of a customer that can receive pushes.
type Device struct {
	ID        string    `json:"device_id"`
	FCMToken  string    `json:"fcm_token"`
	Platform  string    `json:"platform"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Normalize checks every field, returning all faults.
func (d *Device) Normalize() error {
	var fs faults
	if err := ValidID("device_id", d.ID); err != nil {
		fs = append(fs, err.(*ValidationError).Faults...)
	}
	if d.FCMToken == "" {
		fs.add("fcm_token", "fcm_token is required")
	} else if len(d.FCMToken) > 4096 {
		fs.add("fcm_token", "fcm_token must be at most 4096 characters")
	}
	switch d.Platform {
	case "android", "ios", "web":
	case "":
		fs.add("platform", "platform is required: android, ios or web")
	default:
		fs.add("platform", "platform must be android, ios or web")
	}
	return fs.err()
}
