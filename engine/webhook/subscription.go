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
	// TypeFeedbackAnswered is a customer's answer to a question after a
	// visit: its score and scale, never the comment.
	TypeFeedbackAnswered = "feedback.answered"
	// TypeCustomerErased reaches every enabled subscription, whatever its
	// event types and filters: a receiver that keeps anything about a
	// customer must hear of their erasure.
	TypeCustomerErased = "customer.erased"
	// TypeTest is the event Store.SendTest sends (POST
	// /v1/webhooks/{id}/test) to one subscription only, whatever its
	// event types and filters. No subscription asks for it: it is not
	// among EventTypes.
	TypeTest = "webhook.test"
)

// EventTypes lists every event type a subscription can ask for.
var EventTypes = []string{TypeEnter, TypeExit, TypeDwell, TypeOfferIssued, TypePushSent, TypePushFailed,
	TypeCouponOpened, TypeCouponRedeemed, TypeFeedbackAnswered, TypeCustomerErased}

// KnownType tells whether t is an event type an event may have: one of
// EventTypes, or TypeTest.
func KnownType(t string) bool { return t == TypeTest || subscribable(t) }

// subscribable tells whether a subscription may ask for t.
func subscribable(t string) bool { return slices.Contains(EventTypes, t) }

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
	// when none is given. It is left out of the versions kept (Versions).
	Secret string `json:"secret,omitempty"`
	// Enabled: a disabled subscription is paused; its events wait in the
	// stream (within the stream's bound) and go out once it is enabled.
	Enabled   bool      `json:"enabled"`
	Version   int64     `json:"version"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Normalize fills defaults (a secret when none is given; lists sorted
// and without repeats) and checks every field, returning all faults as a
// *rules.ValidationError with the JSON path of each. A URL naming an IP
// address of a private, loopback (but for development), link-local,
// shared, multicast or otherwise special network is refused (NormalizeAllowing
// lets some networks through).
func (s *Subscription) Normalize() error { return s.NormalizeAllowing(nil) }

// NormalizeAllowing is Normalize that takes a URL naming an address of
// one of the networks allow, however private (an operator's allow-list:
// receivers inside the company's network).
func (s *Subscription) NormalizeAllowing(allow []*net.IPNet) error {
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
	if msg := checkURL(s.URL, allow); msg != "" {
		add("url", "%s", msg)
	}
	if len(s.Events) == 0 {
		add("events", "events must name at least one event type")
	}
	for i, t := range s.Events {
		if !subscribable(t) {
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
// it, no fragment; no IP address of a network a receiver outside ours
// has no business in (blockedIP), unless allow has it or it is loopback.
// A host name is resolved only when a request is sent, and the address
// it resolves to checked then (Deliverer's dialer).
func checkURL(raw string, allow []*net.IPNet) string {
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
	if ip := net.ParseIP(u.Hostname()); ip != nil && !ip.IsLoopback() && !inNets(ip, allow) {
		if why := blockedIP(ip); why != "" {
			return fmt.Sprintf("url must not name %s, %s: receivers in private and special networks are refused (an operator allows a network with NEARCAST_WEBHOOK_ALLOW_NETS)", ip, why)
		}
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
// to every subscription, webhook.test to the one it was sent to.
func (s *Subscription) Wants(e *Event, tags func(storeID string) []string) bool {
	if e.Type == TypeCustomerErased || e.Type == TypeTest {
		// A test event is written for one subscription (the entry's
		// "only"), which receives it whatever it asks for.
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

// specialNets are the networks a webhook may not reach (blockedIP), each
// with what it is.
var specialNets = func() []struct {
	n   *net.IPNet
	why string
} {
	var out []struct {
		n   *net.IPNet
		why string
	}
	for _, x := range []struct{ cidr, why string }{
		{"0.0.0.0/8", "an address of \"this network\" (0.0.0.0/8)"},
		{"10.0.0.0/8", "a private address (10.0.0.0/8)"},
		{"100.64.0.0/10", "a shared address of carrier-grade NAT (100.64.0.0/10)"},
		{"127.0.0.0/8", "a loopback address (127.0.0.0/8)"},
		{"169.254.0.0/16", "a link-local address (169.254.0.0/16, where cloud metadata services answer)"},
		{"172.16.0.0/12", "a private address (172.16.0.0/12)"},
		{"192.0.0.0/24", "an IETF protocol address (192.0.0.0/24)"},
		{"192.0.2.0/24", "a documentation address (192.0.2.0/24)"},
		{"192.88.99.0/24", "a 6to4 relay address (192.88.99.0/24)"},
		{"192.168.0.0/16", "a private address (192.168.0.0/16)"},
		{"198.18.0.0/15", "a benchmarking address (198.18.0.0/15)"},
		{"198.51.100.0/24", "a documentation address (198.51.100.0/24)"},
		{"203.0.113.0/24", "a documentation address (203.0.113.0/24)"},
		{"224.0.0.0/4", "a multicast address (224.0.0.0/4)"},
		{"240.0.0.0/4", "a reserved address (240.0.0.0/4)"},
		{"::/128", "the unspecified address (::)"},
		{"::1/128", "the loopback address (::1)"},
		{"100::/64", "a discard address (100::/64)"},
		{"2001::/23", "an IETF protocol address (2001::/23)"},
		{"2001:db8::/32", "a documentation address (2001:db8::/32)"},
		{"fc00::/7", "a unique local address (fc00::/7)"},
		{"fe80::/10", "a link-local address (fe80::/10)"},
		{"fec0::/10", "a site-local address (fec0::/10)"},
		{"ff00::/8", "a multicast address (ff00::/8)"},
	} {
		_, n, err := net.ParseCIDR(x.cidr)
		if err != nil {
			panic(err)
		}
		out = append(out, struct {
			n   *net.IPNet
			why string
		}{n, x.why})
	}
	return out
}()

// Networks that carry an IPv4 address inside an IPv6 one, which is
// checked as itself.
var (
	_, nat64Net, _     = net.ParseCIDR("64:ff9b::/96") // NAT64: the last 4 bytes
	_, sixToFourNet, _ = net.ParseCIDR("2002::/16")    // 6to4: bytes 2 to 5
)

// blockedIP answers what special network ip lies in ("": none, an
// ordinary public address): private, loopback, link-local, shared,
// multicast, reserved, documentation, unspecified; an IPv4 address in an
// IPv6 one (mapped, NAT64, 6to4) is judged as the IPv4 address.
func blockedIP(ip net.IP) string {
	if ip == nil {
		return "not an IP address"
	}
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	} else if len(ip) == net.IPv6len {
		switch {
		case nat64Net.Contains(ip):
			if why := blockedIP(ip[12:16]); why != "" {
				return why + " inside a NAT64 address"
			}
		case sixToFourNet.Contains(ip):
			if why := blockedIP(ip[2:6]); why != "" {
				return why + " inside a 6to4 address"
			}
		}
	}
	for _, s := range specialNets {
		if s.n.Contains(ip) {
			return s.why
		}
	}
	return ""
}

// inNets tells whether one of nets has ip.
func inNets(ip net.IP, nets []*net.IPNet) bool {
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}
