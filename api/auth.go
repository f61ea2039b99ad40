package api

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
)

// Who may act for a customer (docs/security.md): the app key identifies
// the app, never the customer, since it ships inside every copy of the
// app. An app call that acts for a customer proves who the customer is
// with a customer credential beside the key: a Nearcast customer token
// (X-Customer-Token) or a Firebase ID token (X-Firebase-ID-Token). An
// admin key acts for anyone.

// idTokenTimeout bounds the check of a Firebase ID token.
const idTokenTimeout = 2 * time.Second

// Headers of the customer credentials.
const (
	HeaderCustomerToken = "X-Customer-Token"
	HeaderIDToken       = "X-Firebase-ID-Token"
)

// AppAuth says which customer credentials the app routes take
// (NEARCAST_APP_AUTH). With neither, the app key alone is enough: any
// holder of it acts for any customer, which only a demo may allow.
type AppAuth struct {
	Tokens   bool // Nearcast customer tokens
	Firebase bool // Firebase ID tokens
}

// KeyOnly reports whether app calls need no customer credential.
func (a AppAuth) KeyOnly() bool { return !a.Tokens && !a.Firebase }

func (a AppAuth) String() string {
	switch {
	case a.Tokens && a.Firebase:
		return "token,firebase"
	case a.Tokens:
		return "token"
	case a.Firebase:
		return "firebase"
	}
	return "key"
}

// ParseAppAuth reads NEARCAST_APP_AUTH: token, firebase, token,firebase
// (either), or key.
func ParseAppAuth(v string) (AppAuth, error) {
	var a AppAuth
	if strings.TrimSpace(v) == "key" {
		return a, nil
	}
	for _, part := range strings.Split(v, ",") {
		switch strings.TrimSpace(part) {
		case "token":
			a.Tokens = true
		case "firebase":
			a.Firebase = true
		default:
			return a, fmt.Errorf("must be token, firebase, token,firebase or key, not %q", v)
		}
	}
	return a, nil
}

type role int

const (
	roleNone role = iota
	roleApp
	roleAdmin
)

// caller is who sent a request, as its credentials prove.
type caller struct {
	admin bool
	// key is the API key, which per-credential limits count against when
	// no customer credential came with it.
	key string
	// customerID is the customer a customer credential proved; "" for an
	// admin key, and for the app key alone where that is allowed.
	customerID string
	// tokenGen is the proving customer token's generation, checked in the
	// call's Redis step against revocations; 0 for any other credential.
	tokenGen int64
}

const callerLocal = "nearcast.caller"

func callerOf(c *fiber.Ctx) *caller {
	cl, _ := c.Locals(callerLocal).(*caller)
	if cl == nil {
		return &caller{}
	}
	return cl
}

// bearer reads "Authorization: Bearer <key>", the scheme in any letter
// case (RFC 7235).
func bearer(c *fiber.Ctx) (string, bool) {
	scheme, key, ok := strings.Cut(strings.TrimSpace(c.Get(fiber.HeaderAuthorization)), " ")
	key = strings.TrimSpace(key)
	return key, ok && strings.EqualFold(scheme, "bearer") && key != ""
}

// admin lets a request through when it has an admin key.
func (s *Server) admin(c *fiber.Ctx) error {
	key, ok := bearer(c)
	if !ok {
		return newError(http.StatusUnauthorized, "", "send an API key: Authorization: Bearer <key>")
	}
	switch s.roleOf(key) {
	case roleNone:
		return newError(http.StatusUnauthorized, "", "unknown API key")
	case roleApp:
		return newError(http.StatusForbidden, "", "an app key may only send pings, register devices and report coupons opened, for the customer its credential proves; this needs an admin key")
	}
	c.Locals(callerLocal, &caller{admin: true, key: key})
	return c.Next()
}

// app lets a request through when it has an admin key, or the app key
// with the customer credential that the server's AppAuth asks for. A
// credential sent where the app key alone would do is checked all the
// same: it can only narrow what the call may do.
func (s *Server) app(c *fiber.Ctx) error {
	key, ok := bearer(c)
	if !ok {
		return newError(http.StatusUnauthorized, "", "send an API key: Authorization: Bearer <key>")
	}
	cl := &caller{key: key}
	switch s.roleOf(key) {
	case roleNone:
		return newError(http.StatusUnauthorized, "", "unknown API key")
	case roleAdmin:
		cl.admin = true
	case roleApp:
		if err := s.customerCredential(c, cl); err != nil {
			return err
		}
	}
	c.Locals(callerLocal, cl)
	return c.Next()
}

// customerCredential checks the customer credential of an app call and
// records the customer it proves.
func (s *Server) customerCredential(c *fiber.Ctx, cl *caller) error {
	token, idToken := c.Get(HeaderCustomerToken), c.Get(HeaderIDToken)
	tokens := s.AppAuth.Tokens || s.AppAuth.KeyOnly() && s.Tokens != nil
	firebase := s.AppAuth.Firebase || s.AppAuth.KeyOnly() && s.VerifyIDToken != nil
	switch {
	case token != "" && tokens && s.Tokens != nil:
		id, gen, err := s.Tokens.Verify(token)
		if err != nil {
			return newError(http.StatusUnauthorized, HeaderCustomerToken, "the customer token in %s is not valid: expired, malformed or not ours; ask your backend for a new one (POST /v1/customers/{id}/tokens)", HeaderCustomerToken)
		}
		cl.customerID, cl.tokenGen = id, gen
	case idToken != "" && firebase && s.VerifyIDToken != nil:
		// Not the Redis budget: checking an ID token may fetch Google's
		// public keys. (Made here, not for every call: a timer a ping.)
		ctx, cancel := context.WithTimeout(context.Background(), idTokenTimeout)
		defer cancel()
		uid, err := s.VerifyIDToken(ctx, idToken)
		if err != nil {
			return newError(http.StatusUnauthorized, HeaderIDToken, "the Firebase ID token in %s is not valid: expired, malformed, another project's or a disabled user's", HeaderIDToken)
		}
		cl.customerID = uid
	case s.AppAuth.KeyOnly():
		// The app key alone: allowed by the operator, warned of at start.
	default:
		return newError(http.StatusUnauthorized, "", "an app call acts for a customer: send their credential beside the app key, %s", s.credentialHint())
	}
	return nil
}

// credentialHint names the headers this server takes.
func (s *Server) credentialHint() string {
	switch {
	case s.AppAuth.Tokens && s.AppAuth.Firebase:
		return HeaderCustomerToken + ": <customer token> or " + HeaderIDToken + ": <Firebase ID token>"
	case s.AppAuth.Firebase:
		return HeaderIDToken + ": <Firebase ID token>"
	}
	return HeaderCustomerToken + ": <customer token from POST /v1/customers/{id}/tokens>"
}

// actFor checks that the caller may act for the customer: an admin for
// anyone, an app call for the customer its credential proves.
func actFor(c *fiber.Ctx, customerID, field string) (*caller, error) {
	cl := callerOf(c)
	if cl.customerID != "" && cl.customerID != customerID {
		return nil, newError(http.StatusForbidden, field, "the customer credential is %s's, not %s's: an app acts only for the customer it proves", quoteID(cl.customerID), quoteID(customerID))
	}
	return cl, nil
}

// quoteID quotes an id for a message.
func quoteID(id string) string { return fmt.Sprintf("%q", id) }

// roleOf finds a key's role; keys are compared in constant time.
func (s *Server) roleOf(key string) role {
	match := func(keys []string) bool {
		found := 0
		for _, k := range keys {
			found |= subtle.ConstantTimeCompare([]byte(k), []byte(key))
		}
		return found == 1
	}
	switch {
	case match(s.AdminKeys):
		return roleAdmin
	case match(s.AppKeys):
		return roleApp
	}
	return roleNone
}

// countCall counts an app call other than a ping against its customer's
// and device's limits, and checks its customer token is not revoked. An
// admin's call is not counted.
func (s *Server) countCall(ctx context.Context, cl *caller, customerID, deviceID string) error {
	if cl.admin {
		return nil
	}
	return s.Engine.Admit(ctx, customerID, deviceID, cl.tokenGen)
}

// couponCall counts a coupon call (look-up, redemption, open) against its
// credential's limit: the customer it proves, else the API key.
func (s *Server) couponCall(ctx context.Context, cl *caller) error {
	if cl.customerID != "" {
		return nil // counted against the customer by countCall
	}
	return s.CouponRate.Allow(ctx, "key:"+cl.key)
}
