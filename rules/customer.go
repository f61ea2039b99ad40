package rules

import (
	"fmt"
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
}

// Consent is what the customer agreed to. Both default to false: nothing
// is kept or sent for a customer who has not said yes.
type Consent struct {
	Location bool `json:"location" expr:"location"`
	Push     bool `json:"push" expr:"push"`
}

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
	for i, s := range c.Segments {
		if s == "" || len(s) > 64 {
			fs.add(fmt.Sprintf("segments[%d]", i), "a segment must be 1 to 64 characters")
		}
	}
	if c.Attributes == nil {
		c.Attributes = map[string]any{}
	}
	for k, v := range c.Attributes {
		if !validAttribute(v) {
			fs.add("attributes."+k, "an attribute is a string, a number, true or false, or a list of strings")
		}
	}
	return fs.err()
}

func validAttribute(v any) bool {
	switch v := v.(type) {
	case string, float64, bool:
		return true
	case []any:
		for _, e := range v {
			if _, ok := e.(string); !ok {
				return false
			}
		}
		return true
	}
	return false
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
