package webhook

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/nearcast/nearcast/rules"
)

// The event types a subscription can ask for.
const (
	TypeEnter          = "enter"
	TypeExit           = "exit"
	TypeDwell          = "dwell"
	TypeOfferIssued    = "offer.issued"
	TypePushSent       = "push.sent"
	TypePushFailed     = "push.failed"
	TypeCouponOpened   = "coupon.opened"
	TypeCouponRedeemed = "coupon.redeemed"
	// TypeCustomerErased reaches every enabled subscription, whatever its
	// event types and filters: a receiver that keeps anything about a
	// customer must hear of their erasure.
	TypeCustomerErased = "customer.erased"
)

// EventTypes lists every known event type.
var EventTypes = []string{TypeEnter, TypeExit, TypeDwell, TypeOfferIssued, TypePushSent, TypePushFailed,
	TypeCouponOpened, TypeCouponRedeemed, TypeCustomerErased}

// KnownType tells whether t is an event type of EventTypes.
func KnownType(t string) bool { return slices.Contains(EventTypes, t) }

// SecretPrefix begins every secret, as in the Standard Webhooks form:
// "whsec_" and the base64 (standard alphabet, padded) of the key's bytes.
const SecretPrefix = "whsec_"

// Bounds of a secret's key, in bytes.
const (
	minSecretBytes = 24
	maxSecretBytes = 64
	maxURLLen      = 2048
	maxFilter      = 100 // store ids, tags or rule ids in one subscription
)

// Subscription is an endpoint that receives events, as an operator
// writes it (PUT /v1/webhooks/{id}).
type Subscription struct {
	ID  string `json:"id"`
	URL string `json:"url"`
	// Events are the event types sent (customer.erased is sent anyway).
	Events []string `json:"events"`
	// StoreIDs and StoreTags, when either is set, keep only the events of
	// a store named or carrying a tag named; RuleIDs, when set, only the
	// events of a rule named.
	StoreIDs  []string `json:"store_ids,omitempty"`
	StoreTags []string `json:"store_tags,omitempty"`
	RuleIDs   []string `json:"rule_ids,omitempty"`
	// Secret signs every request (Standard Webhooks); Normalize makes one
	// when none is given.
	Secret string `json:"secret"`
	// Enabled: a disabled subscription is paused; its events wait in the
	// stream (within the stream's bound) and go out once it is enabled.
	Enabled   bool      `json:"enabled"`
	Version   int64     `json:"version"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Normalize fills defaults (a secret when none is given; lists sorted
// and without repeats) and checks every field, returning all faults as a
// *rules.ValidationError with the JSON path of each.
func (s *Subscription) Normalize() error {
	var fs []rules.Fault
	add := func(field, format string, args ...any) {
		fs = append(fs, rules.Fault{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	addErr := func(err error) {
		if err != nil {
			fs = append(fs, err.(*rules.ValidationError).Faults...)
		}
	}
	addErr(rules.ValidID("id", s.ID))
	if msg := checkURL(s.URL); msg != "" {
		add("url", "%s", msg)
	}
	if len(s.Events) == 0 {
		add("events", "events must name at least one event type")
	}
	for i, t := range s.Events {
		if !KnownType(t) {
			add(fmt.Sprintf("events[%d]", i), "unknown event type %q: use one of %s", t, strings.Join(EventTypes, ", "))
		}
	}
	for name, list := range map[string][]string{"store_ids": s.StoreIDs, "rule_ids": s.RuleIDs} {
		if len(list) > maxFilter {
			add(name, "%s may name at most %d", name, maxFilter)
		}
		for i, id := range list {
			addErr(rules.ValidID(fmt.Sprintf("%s[%d]", name, i), id))
		}
	}
	if len(s.StoreTags) > maxFilter {
		add("store_tags", "store_tags may name at most %d", maxFilter)
	}
	for i, t := range s.StoreTags {
		if t == "" || len(t) > 64 {
			add(fmt.Sprintf("store_tags[%d]", i), "a tag must be 1 to 64 characters")
		}
	}
	if s.Secret == "" {
		s.Secret = NewSecret()
	} else if _, err := secretKey(s.Secret); err != nil {
		add("secret", "%v", err)
	}
	if len(fs) > 0 {
		// Sorted by field, so that a document's faults come in a stable order.
		slices.SortStableFunc(fs, func(a, b rules.Fault) int { return strings.Compare(a.Field, b.Field) })
		return &rules.ValidationError{Faults: fs}
	}
	s.Events = sortedSet(s.Events)
	s.StoreIDs = sortedSet(s.StoreIDs)
	s.StoreTags = sortedSet(s.StoreTags)
	s.RuleIDs = sortedSet(s.RuleIDs)
	return nil
}

func sortedSet(list []string) []string {
	if len(list) == 0 {
		return nil
	}
	out := slices.Clone(list)
	slices.Sort(out)
	return slices.Compact(out)
}

// checkURL answers what is wrong with an endpoint's URL ("" if nothing):
// https, or http to the loopback host for development; no credentials in
// it, no fragment.
func checkURL(raw string) string {
	if raw == "" {
		return "url is required"
	}
	if len(raw) > maxURLLen {
		return fmt.Sprintf("url must be at most %d characters", maxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Hostname() == "" {
		return "url must be an absolute URL such as https://crm.example.com/hooks/nearcast"
	}
	if u.User != nil {
		return "url must not carry credentials: the signature authenticates each request"
	}
	if u.Fragment != "" {
		return "url must not have a fragment"
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !loopback(u.Hostname()) {
			return "url must use https (http only to 127.0.0.1, ::1 or localhost, for development)"
		}
	default:
		return "url must use https"
	}
	return ""
}

func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.Equal(net.IPv4(127, 0, 0, 1)) || ip.Equal(net.IPv6loopback))
}

// NewSecret makes a secret of 32 random bytes in the Standard Webhooks
// form.
func NewSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b)
}

// secretKey decodes a secret to the HMAC key.
func secretKey(secret string) ([]byte, error) {
	enc, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("secret must begin with %q and go on with base64 of %d to %d random bytes", SecretPrefix, minSecretBytes, maxSecretBytes)
	}
	key, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return nil, fmt.Errorf("secret must be %q and base64 of %d to %d random bytes", SecretPrefix, minSecretBytes, maxSecretBytes)
	}
	if len(key) < minSecretBytes || len(key) > maxSecretBytes {
		return nil, fmt.Errorf("secret must hold %d to %d bytes, not %d", minSecretBytes, maxSecretBytes, len(key))
	}
	return key, nil
}

// Wants tells whether the subscription receives e; tags answers a store's
// tags (nil: the store filters match by id only). customer.erased goes
// to every subscription.
func (s *Subscription) Wants(e *Event, tags func(storeID string) []string) bool {
	if e.Type == TypeCustomerErased {
		return true
	}
	if !slices.Contains(s.Events, e.Type) {
		return false
	}
	if len(s.RuleIDs) > 0 && !slices.Contains(s.RuleIDs, e.RuleID) {
		return false
	}
	if len(s.StoreIDs) == 0 && len(s.StoreTags) == 0 {
		return true
	}
	if e.StoreID == "" {
		return false
	}
	if slices.Contains(s.StoreIDs, e.StoreID) {
		return true
	}
	if len(s.StoreTags) > 0 && tags != nil {
		for _, t := range tags(e.StoreID) {
			if slices.Contains(s.StoreTags, t) {
				return true
			}
		}
	}
	return false
}
