package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/gofiber/fiber/v2"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/geo"
	"github.com/nearcast/nearcast/rules"
)

func created(c *fiber.Ctx, isNew bool, v any) error {
	if isNew {
		c.Status(http.StatusCreated)
	}
	return c.JSON(v)
}

// Stores

func (s *Server) putStore(c *fiber.Ctx) error {
	id, err := pathID(c, "id", "store_id")
	if err != nil {
		return err
	}
	var st rules.Store
	unknown, err := decodeDoc(c, &st)
	if err != nil {
		return err
	}
	if err := sameID(st.ID, id); err != nil {
		return err
	}
	st.ID = id
	if len(unknown) > 0 {
		return allFaults(unknown, st.Normalize())
	}
	ctx, cancel := s.ctx()
	defer cancel()
	isNew, err := s.Live.Catalog().PutStore(ctx, &st)
	if err != nil {
		return err
	}
	s.refresh(ctx)
	return created(c, isNew, &st)
}

func (s *Server) getStore(c *fiber.Ctx) error {
	ctx, cancel := s.ctx()
	defer cancel()
	st, err := s.Live.Catalog().GetStore(ctx, c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(st)
}

func (s *Server) deleteStore(c *fiber.Ctx) error {
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.Live.Catalog().DeleteStore(ctx, c.Params("id")); err != nil {
		return err
	}
	s.refresh(ctx)
	return c.SendStatus(http.StatusNoContent)
}

// lineError is one refused line of a bulk upload.
type lineError struct {
	Line  int    `json:"line"`
	Error *Error `json:"error"`
}

// bulkBody reads a bulk upload's NDJSON body whole, or refuses it whole:
// a body cut short is never parsed, so no line of it is written. Its read
// deadline, set once the admin key has been checked, is BulkReadTimeout
// (the 256 MiB limit at a slow but honest rate), not the server's
// ReadTimeout, within which the headers and the body's first 8 KiB (what
// fasthttp reads before any route) came.
func (s *Server) bulkBody(c *fiber.Ctx, what string) ([]byte, error) {
	ct := strings.ToLower(strings.TrimSpace(strings.Split(c.Get(fiber.HeaderContentType), ";")[0]))
	if ct != "application/x-ndjson" {
		return nil, newError(http.StatusUnsupportedMediaType, "", "send %s as NDJSON, one per line, with Content-Type: application/x-ndjson", what)
	}
	// A connection that takes no deadline has failed: the read says so.
	_ = c.Context().Conn().SetReadDeadline(time.Now().Add(s.BulkReadTimeout))
	return readBody(c, maxBulkBody, s.BulkReadTimeout)
}

// readNDJSON decodes an NDJSON body strictly, line by line: each good
// line's document (the last one for an id that appears twice) and each
// refused line with its error.
func readNDJSON[T any](body []byte, check func(*T) (id string, err error)) ([]*T, []lineError) {
	var good []*T
	bad := []lineError{}
	seen := map[string]int{}
	for i, line := range bytes.Split(body, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		v := new(T)
		err := decodeBytes(line, v)
		var id string
		if err == nil {
			id, err = check(v)
		}
		if err != nil {
			bad = append(bad, lineError{Line: i + 1, Error: toError(err)})
			continue
		}
		if j, dup := seen[id]; dup {
			good[j] = v
			continue
		}
		seen[id] = len(good)
		good = append(good, v)
	}
	return good, bad
}

// postStores upserts many stores from NDJSON: one store (with its id) per
// line. Good lines are written even when others are refused; the answer
// names each refused line with its error.
func (s *Server) postStores(c *fiber.Ctx) error {
	body, err := s.bulkBody(c, "stores")
	if err != nil {
		return err
	}
	good, bad := readNDJSON(body, func(st *rules.Store) (string, error) { return st.ID, st.Normalize() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	written, err := s.Live.Catalog().PutStores(ctx, good)
	if written > 0 {
		s.refresh(ctx)
	}
	if err != nil {
		return bulkFailed(err, written, len(good))
	}
	return c.JSON(fiber.Map{"written": written, "failed": len(bad), "errors": bad})
}

// postCustomers upserts many profiles from NDJSON, like postStores.
func (s *Server) postCustomers(c *fiber.Ctx) error {
	body, err := s.bulkBody(c, "customers")
	if err != nil {
		return err
	}
	good, bad := readNDJSON(body, func(cu *rules.Customer) (string, error) { return cu.ID, cu.Normalize() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	written, err := s.Customers.PutMany(ctx, good)
	if err != nil {
		return bulkFailed(err, written, len(good))
	}
	return c.JSON(fiber.Map{"written": written, "failed": len(bad), "errors": bad})
}

// bulkFailed is the answer to a bulk upload that Redis failed part way:
// the error as for any call, saying how much was written (the first lines,
// in order) when some was. Writing is idempotent: the whole upload may be
// sent again.
func bulkFailed(err error, written, good int) error {
	if written == 0 || !errors.Is(err, rules.ErrUnavailable) {
		return err
	}
	return newError(http.StatusServiceUnavailable, "",
		"Redis became unavailable after the first %d of %d good lines were written; send the upload again (writing is idempotent)", written, good)
}

func (s *Server) listStores(c *fiber.Ctx) error {
	if near := c.Query("near"); near != "" {
		return s.nearStores(c, near)
	}
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	stores, next, err := s.Live.Catalog().ListStores(ctx, c.Query("cursor"), limit)
	if err != nil {
		return err
	}
	if stores == nil {
		stores = []*rules.Store{}
	}
	return c.JSON(fiber.Map{"stores": stores, "next_cursor": next})
}

// nearStores lists the stores whose fence lies within radius_m of a point.
func (s *Server) nearStores(c *fiber.Ctx, near string) error {
	parts := strings.Split(near, ",")
	var lat, lng float64
	var err1, err2 error
	if len(parts) == 2 {
		lat, err1 = strconv.ParseFloat(strings.TrimSpace(parts[0]), 64)
		lng, err2 = strconv.ParseFloat(strings.TrimSpace(parts[1]), 64)
	}
	if len(parts) != 2 || err1 != nil || err2 != nil || geo.ValidPoint(lat, lng) != nil {
		return newError(http.StatusBadRequest, "near", "near is lat,lng in decimal degrees, e.g. near=52.5219,13.4132")
	}
	radius := 1000.0
	if v := c.Query("radius_m"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r < 0 || r > geo.MaxRadiusM {
			return newError(http.StatusBadRequest, "radius_m", "radius_m must be between 0 and %d", geo.MaxRadiusM)
		}
		radius = r
	}
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	snap := s.Live.Current()
	if snap == nil {
		return toError(engine.ErrNoSnapshot)
	}
	type nearStore struct {
		*rules.Store
		DistanceM int  `json:"distance_m"`
		Inside    bool `json:"inside"`
	}
	out := []nearStore{}
	for _, h := range snap.Index.Within(lat, lng, radius) {
		if len(out) == limit {
			break
		}
		out = append(out, nearStore{Store: snap.Stores[h.Fence].Store, DistanceM: int(math.Round(h.DistanceM)), Inside: h.Inside})
	}
	return c.JSON(fiber.Map{"stores": out})
}

// Rules

func (s *Server) putRule(c *fiber.Ctx) error {
	id, err := pathID(c, "id", "rule_id")
	if err != nil {
		return err
	}
	dryRun, err := boolQuery(c, "dry_run")
	if err != nil {
		return err
	}
	var r rules.Rule
	unknown, err := decodeDoc(c, &r)
	if err != nil {
		return err
	}
	if err := sameID(r.ID, id); err != nil {
		return err
	}
	r.ID = id
	if len(unknown) > 0 {
		// Checked as a dry run would be, to name every fault at once.
		ctx, cancel := s.ctx()
		defer cancel()
		return allFaults(unknown, s.Live.Catalog().PutRuleIf(ctx, &r, true, 0))
	}
	ifVersion, err := ifMatch(c)
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.Live.Catalog().PutRuleIf(ctx, &r, dryRun, ifVersion); err != nil {
		if errors.Is(err, rules.ErrConflict) && ifVersion > 0 {
			return newError(http.StatusConflict, "", "the rule changed since version %d; read it again and reapply your edit", ifVersion)
		}
		return err
	}
	if dryRun {
		return c.JSON(fiber.Map{"valid": true, "rule": &r})
	}
	s.refresh(ctx)
	setETag(c, r.Version)
	return created(c, r.Version == 1, &r)
}

// ifMatch reads an If-Match header holding a rule's ETag ("3"); 0 when absent.
func ifMatch(c *fiber.Ctx) (int64, error) {
	h := strings.TrimSpace(c.Get(fiber.HeaderIfMatch))
	if h == "" || h == "*" {
		return 0, nil
	}
	v, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(h, "W/"), `"`), 10, 64)
	if err != nil || v < 1 {
		return 0, newError(http.StatusBadRequest, "If-Match", "If-Match takes the ETag of a rule, such as \"3\"")
	}
	return v, nil
}

func setETag(c *fiber.Ctx, version int64) {
	c.Set(fiber.HeaderETag, `"`+strconv.FormatInt(version, 10)+`"`)
}

// dayRange reads the from and to query dates (UTC days): to defaults to
// today, from to the 7 days ending at to. Each route bounds the range.
func dayRange(c *fiber.Ctx) (from, to time.Time, err error) {
	day := func(name string, def time.Time) (time.Time, error) {
		v := c.Query(name)
		if v == "" {
			return def, nil
		}
		t, err := time.Parse(time.DateOnly, v)
		if err != nil {
			return t, newError(http.StatusBadRequest, name, "%s is a date such as 2026-11-22", name)
		}
		return t, nil
	}
	if to, err = day("to", time.Now().UTC().Truncate(24*time.Hour)); err != nil {
		return from, to, err
	}
	from, err = day("from", to.AddDate(0, 0, -6))
	return from, to, err
}

// ruleStats answers a rule's funnel per UTC day, from and to given as
// dates (default: the last 7 days).
func (s *Server) ruleStats(c *fiber.Ctx) error {
	from, to, err := dayRange(c)
	if err != nil {
		return err
	}
	if from.After(to) || to.Sub(from) > engine.MaxFunnelDays*24*time.Hour {
		return newError(http.StatusBadRequest, "from", "from must be on or before to, at most %d days apart", engine.MaxFunnelDays)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if _, err := s.Live.Catalog().RuleVersions(ctx, c.Params("id")); err != nil {
		return err // a rule that never existed
	}
	s.settled(ctx)
	rep, err := engine.Funnel(ctx, s.Redis, c.Params("id"), from, to)
	if err != nil {
		return err
	}
	// A rule with variants: the variants compared (docs/experiments.md).
	if snap := s.Live.Current(); snap != nil && snap.Rules[c.Params("id")] != nil {
		if rep.Experiment, err = engine.Experiment(ctx, s.Redis, snap.Rules[c.Params("id")], from, to); err != nil {
			return err
		}
	}
	return c.JSON(rep)
}

func (s *Server) listRuleVersions(c *fiber.Ctx) error {
	ctx, cancel := s.ctx()
	defer cancel()
	vs, err := s.Live.Catalog().RuleVersions(ctx, c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"versions": vs})
}

func versionParam(c *fiber.Ctx) (int64, error) {
	v, err := strconv.ParseInt(c.Params("version"), 10, 64)
	if err != nil || v < 1 {
		return 0, newError(http.StatusBadRequest, "version", "version is a whole number from 1")
	}
	return v, nil
}

func (s *Server) getRuleVersion(c *fiber.Ctx) error {
	v, err := versionParam(c)
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	r, err := s.Live.Catalog().RuleVersion(ctx, c.Params("id"), v)
	if err != nil {
		return err
	}
	return c.JSON(r)
}

func (s *Server) restoreRuleVersion(c *fiber.Ctx) error {
	v, err := versionParam(c)
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	r, err := s.Live.Catalog().RestoreRule(ctx, c.Params("id"), v)
	if err != nil {
		return err
	}
	s.refresh(ctx)
	setETag(c, r.Version)
	return c.JSON(r)
}

func (s *Server) getRule(c *fiber.Ctx) error {
	ctx, cancel := s.ctx()
	defer cancel()
	r, err := s.Live.Catalog().GetRule(ctx, c.Params("id"))
	if err != nil {
		return err
	}
	setETag(c, r.Version)
	return c.JSON(r)
}

func (s *Server) deleteRule(c *fiber.Ctx) error {
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.Live.Catalog().DeleteRule(ctx, c.Params("id")); err != nil {
		return err
	}
	s.refresh(ctx)
	return c.SendStatus(http.StatusNoContent)
}

func (s *Server) listRules(c *fiber.Ctx) error {
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	rs, next, err := s.Live.Catalog().ListRules(ctx, c.Query("cursor"), limit)
	if err != nil {
		return err
	}
	if rs == nil {
		rs = []*rules.Rule{}
	}
	return c.JSON(fiber.Map{"rules": rs, "next_cursor": next})
}

// Customers and devices

func (s *Server) putCustomer(c *fiber.Ctx) error {
	id, err := pathID(c, "id", "customer_id")
	if err != nil {
		return err
	}
	var cu rules.Customer
	unknown, err := decodeDoc(c, &cu)
	if err != nil {
		return err
	}
	if err := sameID(cu.ID, id); err != nil {
		return err
	}
	cu.ID = id
	if len(unknown) > 0 {
		return allFaults(unknown, cu.Normalize())
	}
	ctx, cancel := s.ctx()
	defer cancel()
	isNew, err := s.Customers.Put(ctx, &cu)
	if err != nil {
		return err
	}
	return created(c, isNew, &cu)
}

// patchCustomer applies a JSON merge patch (RFC 7396) to a profile: the
// fields it names change, null removes one, the rest stays.
func (s *Server) patchCustomer(c *fiber.Ctx) error {
	id, err := pathID(c, "id", "customer_id")
	if err != nil {
		return err
	}
	ct := strings.ToLower(strings.TrimSpace(strings.Split(c.Get(fiber.HeaderContentType), ";")[0]))
	if ct != "application/merge-patch+json" && ct != fiber.MIMEApplicationJSON {
		return newError(http.StatusUnsupportedMediaType, "", "send a JSON merge patch with Content-Type: application/merge-patch+json")
	}
	if len(c.Body()) > maxJSONBody {
		return newError(http.StatusRequestEntityTooLarge, "", "a JSON body is at most %d bytes", maxJSONBody)
	}
	var probe map[string]any
	if err := decodeBytes(c.Body(), &probe); err != nil {
		return err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	cur, err := s.Customers.Get(ctx, id)
	if err != nil {
		return err
	}
	doc, err := json.Marshal(cur)
	if err != nil {
		return err
	}
	merged, err := jsonpatch.MergePatch(doc, c.Body())
	if err != nil {
		return newError(http.StatusBadRequest, "", "the merge patch does not apply: %v", err)
	}
	var cu rules.Customer
	if err := decodeBytes(merged, &cu); err != nil {
		return err
	}
	if err := sameID(cu.ID, id); err != nil {
		return err
	}
	cu.ID = id
	if _, err := s.Customers.Put(ctx, &cu); err != nil {
		return err
	}
	return c.JSON(&cu)
}

func (s *Server) getCustomer(c *fiber.Ctx) error {
	ctx, cancel := s.ctx()
	defer cancel()
	cu, err := s.Customers.Get(ctx, c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(cu)
}

func (s *Server) deleteCustomer(c *fiber.Ctx) error {
	id, err := pathID(c, "id", "customer_id")
	if err != nil {
		return err
	}
	// An erasure is some eight round trips in order, not one: four times
	// a request's Redis budget, so that a busy Redis does not refuse it
	// while a hung one still fails it promptly.
	ctx, cancel := context.WithTimeout(context.Background(), 4*s.RequestTimeout)
	defer cancel()
	if err := s.Customers.Delete(ctx, id); err != nil {
		return err
	}
	if s.Pushes != nil {
		s.Pushes.Forget(id)
	}
	return c.SendStatus(http.StatusNoContent)
}

func (s *Server) exportCustomer(c *fiber.Ctx) error {
	ctx, cancel := s.ctx()
	defer cancel()
	ex, err := s.Customers.Export(ctx, c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(ex)
}

type deviceRequest struct {
	DeviceID string `json:"device_id"`
	FCMToken string `json:"fcm_token"`
	Platform string `json:"platform"`
}

func (s *Server) putDevice(c *fiber.Ctx) error {
	cid, err := pathID(c, "id", "customer_id")
	if err != nil {
		return err
	}
	did, err := pathID(c, "device_id", "device_id")
	if err != nil {
		return err
	}
	var req deviceRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.DeviceID != "" && req.DeviceID != did {
		return newError(http.StatusBadRequest, "device_id", "device_id in the body differs from the one in the path")
	}
	cl, err := actFor(c, cid, "customer_id")
	if err != nil {
		return err
	}
	d := rules.Device{ID: did, FCMToken: req.FCMToken, Platform: req.Platform}
	if err := d.Normalize(); err != nil {
		return err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.countCall(ctx, cl, cid, did); err != nil {
		return err
	}
	isNew, err := s.Customers.PutDevice(ctx, cid, &d)
	if err != nil {
		return err
	}
	// An app is answered 200 whether its customer had the device or not,
	// and whether they have a profile or not: nothing tells which ids exist.
	return created(c, isNew && cl.admin, &d)
}

func (s *Server) deleteDevice(c *fiber.Ctx) error {
	cid, err := pathID(c, "id", "customer_id")
	if err != nil {
		return err
	}
	did, err := pathID(c, "device_id", "device_id")
	if err != nil {
		return err
	}
	cl, err := actFor(c, cid, "customer_id")
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.countCall(ctx, cl, cid, did); err != nil {
		return err
	}
	if err := s.Customers.DeleteDevice(ctx, cid, did); err != nil {
		// For an app, a device that is not there is gone all the same:
		// a 404 would tell which customers exist.
		if !errors.Is(err, rules.ErrNotFound) || cl.admin {
			return err
		}
	}
	return c.SendStatus(http.StatusNoContent)
}

type tokenRequest struct {
	TTLS *int64 `json:"ttl_s"`
}

// mintToken gives the company's backend a customer token for its app
// (POST /v1/customers/{id}/tokens, admin): the customer's credential on
// the app routes until it expires or is revoked.
func (s *Server) mintToken(c *fiber.Ctx) error {
	id, err := pathID(c, "id", "customer_id")
	if err != nil {
		return err
	}
	var req tokenRequest
	if len(bytes.TrimSpace(c.Body())) > 0 {
		if err := decodeJSON(c, &req); err != nil {
			return err
		}
	}
	ttl := DefaultTokenTTL
	if req.TTLS != nil {
		max := int64(engine.MaxTokenTTL / time.Second)
		if *req.TTLS < 60 || *req.TTLS > max {
			return newError(http.StatusBadRequest, "ttl_s", "ttl_s is seconds from 60 to %d (30 days)", max)
		}
		ttl = time.Duration(*req.TTLS) * time.Second
	}
	if s.Tokens == nil {
		return newError(http.StatusUnprocessableEntity, "", "customer tokens are off on this server: set NEARCAST_TOKEN_SECRETS")
	}
	ctx, cancel := s.ctx()
	defer cancel()
	gen, err := s.Customers.TokenGeneration(ctx, id, ttl)
	if err != nil {
		return err
	}
	token, exp, err := s.Tokens.Mint(id, gen, ttl)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Status(http.StatusCreated)
	return c.JSON(fiber.Map{"token": token, "customer_id": id, "expires_at": exp})
}

// revokeTokens makes every customer token minted so far for the customer
// stop working at once, on every replica (DELETE /v1/customers/{id}/tokens).
func (s *Server) revokeTokens(c *fiber.Ctx) error {
	id, err := pathID(c, "id", "customer_id")
	if err != nil {
		return err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.Customers.RevokeTokens(ctx, id); err != nil {
		return err
	}
	return c.SendStatus(http.StatusNoContent)
}

func (s *Server) listDevices(c *fiber.Ctx) error {
	ctx, cancel := s.ctx()
	defer cancel()
	ds, err := s.Customers.Devices(ctx, c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"devices": ds})
}

// Attributes

// listAttributes answers the catalog of attributes: the names profiles
// carry (with their types and how many profiles carry each) and those
// declared, by name (GET /v1/attributes).
func (s *Server) listAttributes(c *fiber.Ctx) error {
	ctx, cancel := s.ctx()
	defer cancel()
	list, err := s.Customers.Attributes().List(ctx)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"attributes": list})
}

// attributeDecls is the body of PUT /v1/attributes.
type attributeDecls struct {
	Attributes *[]rules.AttributeDecl `json:"attributes"`
}

// putAttributes replaces the declared attributes, which audiences may
// name before any profile carries them, and answers the catalog
// (PUT /v1/attributes).
func (s *Server) putAttributes(c *fiber.Ctx) error {
	var req attributeDecls
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.Attributes == nil {
		return newError(http.StatusBadRequest, "attributes", "attributes is required: the list of declared attributes ([] declares none)")
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.Customers.Attributes().Declare(ctx, *req.Attributes); err != nil {
		return err
	}
	return s.listAttributes(c)
}

// Pings

type pingRequest struct {
	CustomerID string   `json:"customer_id"`
	DeviceID   string   `json:"device_id"`
	Lat        *float64 `json:"lat"`
	Lng        *float64 `json:"lng"`
	AccuracyM  *float64 `json:"accuracy_m"`
	TS         string   `json:"ts"`
	SpeedMps   *float64 `json:"speed_mps"`
	// Mocked is the OS's word that the fix is not real (Android's
	// Location.isMock(), iOS's sourceInformation.isSimulatedBySoftware).
	Mocked  bool           `json:"mocked"`
	Context map[string]any `json:"context"`
	// ContextJSON is the context as the scanner found it (a flat object,
	// Context left nil), decoded only if an audience reads it.
	ContextJSON []byte `json:"-"`
	// MonitorID is the monitor block the app watches (its id).
	MonitorID string `json:"monitor_id"`
}

// pingRequests are the requests pings are decoded into, used again: a
// decoded request is copied into its engine.Ping (the pointers to its
// numbers and its context go with it, and the request forgets them).
var pingRequests = sync.Pool{New: func() any { return new(pingRequest) }}

// toPing checks every field of a ping and reports all faults at once.
func (r *pingRequest) toPing() (engine.Ping, error) {
	var fs []rules.Fault
	add := func(err error) {
		if ve, ok := err.(*rules.ValidationError); ok {
			fs = append(fs, ve.Faults...)
		}
	}
	add(rules.ValidID("customer_id", r.CustomerID))
	if r.DeviceID != "" {
		add(rules.ValidID("device_id", r.DeviceID))
	}
	if f := validCoord(r.Lat, "lat", 90); f != nil {
		fs = append(fs, *f)
	}
	if f := validCoord(r.Lng, "lng", 180); f != nil {
		fs = append(fs, *f)
	}
	p := engine.Ping{CustomerID: r.CustomerID, DeviceID: r.DeviceID, SpeedMps: r.SpeedMps, Context: r.Context, ContextJSON: r.ContextJSON}
	if r.AccuracyM != nil {
		if *r.AccuracyM < 0 || *r.AccuracyM > 100000 {
			fs = append(fs, rules.Fault{Field: "accuracy_m", Message: "accuracy_m must be between 0 and 100000"})
		}
		p.AccuracyM = *r.AccuracyM
		if *r.AccuracyM == 0 {
			p.Signals = append(p.Signals, engine.SignalZeroAccuracy) // no real fix is exact
		}
	}
	if r.Mocked {
		p.Signals = append(p.Signals, engine.SignalMocked)
	}
	if len(r.MonitorID) > 100 {
		fs = append(fs, rules.Fault{Field: "monitor_id", Message: "monitor_id is the id of a monitor block, at most 100 characters"})
	}
	p.MonitorID = r.MonitorID
	if r.SpeedMps != nil && (*r.SpeedMps < 0 || *r.SpeedMps > 400) {
		fs = append(fs, rules.Fault{Field: "speed_mps", Message: "speed_mps must be between 0 and 400"})
	}
	if r.TS != "" {
		ts, err := time.Parse(time.RFC3339Nano, r.TS)
		if err != nil {
			fs = append(fs, rules.Fault{Field: "ts", Message: "ts must be an RFC 3339 time such as 2026-11-22T08:00:00Z"})
		}
		p.TS = ts
	}
	if len(fs) > 0 {
		return p, &rules.ValidationError{Faults: fs}
	}
	p.Lat, p.Lng = *r.Lat, *r.Lng
	return p, nil
}

func (s *Server) postPing(c *fiber.Ctx) error {
	start := time.Now()
	defer func() { s.pingTime.Observe(time.Since(start).Seconds()) }()
	dryRun, err := boolQuery(c, "dry_run")
	if err != nil {
		return err
	}
	explain, err := boolQuery(c, "explain")
	if err != nil {
		return err
	}
	cl := callerOf(c)
	if !cl.admin {
		// What the app side sees is what just happened to its customer:
		// no trial runs, no reasons, which would probe their profile.
		for _, q := range []struct {
			name string
			on   bool
		}{{"dry_run", dryRun}, {"explain", explain}} {
			if q.on {
				return newError(http.StatusForbidden, q.name, "%s is for the admin key (the console, the simulator); an app sees only its customer's own events and offers", q.name)
			}
		}
	}
	req := pingRequests.Get().(*pingRequest)
	defer func() { *req = pingRequest{}; pingRequests.Put(req) }()
	if err := decodePing(c, req); err != nil {
		return err
	}
	if req.CustomerID == "" {
		req.CustomerID = cl.customerID // the credential's customer, when it names one
	}
	p, err := req.toPing()
	if err != nil {
		return err
	}
	if _, err := actFor(c, p.CustomerID, "customer_id"); err != nil {
		return err
	}
	p.TokenGen = cl.tokenGen
	if p.Signals, err = s.integritySignal(c, p.CustomerID, p.DeviceID, p.Signals); err != nil {
		return err
	}
	res, err := s.Engine.Evaluate(s.pingCtx(), p, engine.Options{DryRun: dryRun, Explain: explain})
	if err != nil {
		return err
	}
	return sendResult(c, res)
}

// nothingHappened is the answer to most pings, encoded once.
var nothingHappened = []byte(`{"events":[],"offers":[]}`)

// sendResult answers a ping's result, without encoding it when nothing
// happened (no event, no offer, nothing explained): most pings.
func sendResult(c *fiber.Ctx, res *engine.Result) error {
	if len(res.Events) == 0 && len(res.Offers) == 0 && res.Explain == nil && res.Reason == "" && res.Monitor == nil && res.NextPing == nil {
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Send(nothingHappened)
	}
	// The answer is encoded straight into the response's own body buffer,
	// which fasthttp takes from a pool and puts back after the response is
	// written: no buffer of ours, no copy. (c.Send keeps the slice it is
	// given until then, so a buffer of ours could not be reused.)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	resp := c.Response()
	resp.SwapBody(res.AppendJSON(resp.SwapBody(nil)[:0]))
	return nil
}

// Coupons

func (s *Server) getCoupon(c *fiber.Ctx) error {
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.couponCall(ctx, callerOf(c)); err != nil {
		return err
	}
	cp, err := s.Ledger.Get(ctx, c.Params("code"))
	if err != nil {
		return err
	}
	return c.JSON(cp)
}

// openedCoupon records that the customer opened their coupon. An app call
// reaches only its own customer's coupons: another's code is not found,
// exactly like a code that does not exist.
func (s *Server) openedCoupon(c *fiber.Ctx) error {
	ctx, cancel := s.ctx()
	defer cancel()
	cl := callerOf(c)
	if cl.customerID != "" {
		if err := s.countCall(ctx, cl, cl.customerID, ""); err != nil {
			return err
		}
	} else if err := s.couponCall(ctx, cl); err != nil {
		return err
	}
	cp, err := s.Ledger.Opened(ctx, c.Params("code"), cl.customerID)
	if err != nil {
		return err
	}
	if !cl.admin {
		// The app is not told what the engine thought of its fix.
		cp.IssuedUnderSuspicion, cp.SuspicionSignals = false, nil
	}
	return c.JSON(cp)
}

type redeemRequest struct {
	StoreID string `json:"store_id"`
}

func (s *Server) redeemCoupon(c *fiber.Ctx) error {
	var req redeemRequest
	if len(bytes.TrimSpace(c.Body())) > 0 {
		if err := decodeJSON(c, &req); err != nil {
			return err
		}
	}
	if req.StoreID != "" {
		if err := rules.ValidID("store_id", req.StoreID); err != nil {
			return err
		}
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.couponCall(ctx, callerOf(c)); err != nil {
		return err
	}
	cp, err := s.Ledger.Redeem(ctx, c.Params("code"), req.StoreID)
	if err != nil {
		return err
	}
	return c.JSON(cp)
}

// Development

func (s *Server) devPushes(c *fiber.Ctx) error {
	if s.Pushes == nil {
		return newError(http.StatusNotFound, "", "pushes go to FCM (NEARCAST_PUSH=fcm); only the log sender keeps them")
	}
	// A ping's push goes out behind its answer (announced, then sent by a
	// dispatcher): the list waits, 2 s at most, for the pushes of the
	// pings this replica answered before the call to leave the outbox,
	// so that a newcomer's curl right after a ping finds its push.
	ctx := c.UserContext()
	s.settled(ctx)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if n, err := engine.Unsent(ctx, s.Redis); err != nil || n == 0 {
			break
		}
	}
	ps := s.Pushes.Pushes(c.Query("customer_id"))
	if ps == nil {
		ps = []engine.Push{}
	}
	return c.JSON(fiber.Map{"pushes": ps})
}

// Simulation

type simulateRequest struct {
	CustomerID string `json:"customer_id"`
	DeviceID   string `json:"device_id"`
	// Start is when the walk begins (absent: now), for pings timed by
	// after_s.
	Start *simulateStart `json:"start"`
	// Pings are pings without their customer and device, which the walk
	// gives once.
	Pings []simulatePing `json:"pings"`
}

// simulateStart is a walk's start: days from today, at a local time of
// the customer's zone ("07:50"; absent: this time of day), so that a walk
// written once ("tomorrow at 07:50") runs on any day.
type simulateStart struct {
	Days int    `json:"days"`
	At   string `json:"at"`
}

// simulatePing is a ping of a walk: a ping's fields but its customer and
// device, timed by ts or by after_s, seconds after the ping before (the
// first: after the start).
type simulatePing struct {
	Lat       *float64       `json:"lat"`
	Lng       *float64       `json:"lng"`
	AccuracyM *float64       `json:"accuracy_m"`
	TS        string         `json:"ts"`
	AfterS    *float64       `json:"after_s"`
	SpeedMps  *float64       `json:"speed_mps"`
	Mocked    bool           `json:"mocked"`
	Context   map[string]any `json:"context"`
	// Answer is the score the customer answers the walk's last question
	// with, at this ping's time (docs/feedback.md).
	Answer *int `json:"answer"`
}

// at is when the walk starts, for a customer in loc.
func (s *simulateStart) at(now time.Time, loc *time.Location) (time.Time, error) {
	if s == nil {
		return now, nil
	}
	if s.Days < 0 || s.Days > 366 {
		return time.Time{}, newError(http.StatusBadRequest, "start.days", "start.days is a number of days from today, 0 to 366")
	}
	day := now.In(loc).AddDate(0, 0, s.Days)
	if s.At == "" {
		return day, nil
	}
	hm, err := time.Parse("15:04", s.At)
	if err != nil {
		return time.Time{}, newError(http.StatusBadRequest, "start.at", "start.at is a local time such as 07:50")
	}
	return time.Date(day.Year(), day.Month(), day.Day(), hm.Hour(), hm.Minute(), 0, 0, loc), nil
}

// simulate walks a customer through pings in a sandbox: what each would
// cause, one after another, explained, with nothing changed; and how many
// of them a phone following the answers would have sent.
func (s *Server) simulate(c *fiber.Ctx) error {
	var req simulateRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	var fs []rules.Fault
	if err := rules.ValidID("customer_id", req.CustomerID); err != nil {
		return err
	}
	if req.DeviceID != "" {
		if err := rules.ValidID("device_id", req.DeviceID); err != nil {
			return err
		}
	}
	switch {
	case len(req.Pings) == 0:
		fs = append(fs, rules.Fault{Field: "pings", Message: "give at least one ping"})
	case len(req.Pings) > engine.MaxSimulatedPings:
		fs = append(fs, rules.Fault{Field: "pings", Message: fmt.Sprintf("a simulation takes at most %d pings", engine.MaxSimulatedPings)})
	}
	pings := make([]engine.Ping, len(req.Pings))
	for i, sp := range req.Pings {
		one := pingRequest{CustomerID: req.CustomerID, DeviceID: req.DeviceID, Lat: sp.Lat, Lng: sp.Lng, AccuracyM: sp.AccuracyM, TS: sp.TS, SpeedMps: sp.SpeedMps, Mocked: sp.Mocked, Context: sp.Context}
		p, err := one.toPing()
		if ve, ok := err.(*rules.ValidationError); ok {
			for _, x := range ve.Faults {
				x.Field = fmt.Sprintf("pings[%d].%s", i, x.Field)
				fs = append(fs, x)
			}
		}
		switch {
		case sp.AfterS != nil && sp.TS != "":
			fs = append(fs, rules.Fault{Field: fmt.Sprintf("pings[%d].after_s", i), Message: "time a ping by ts or by after_s, not both"})
		case sp.AfterS != nil && (*sp.AfterS < 0 || *sp.AfterS > 7*86400):
			fs = append(fs, rules.Fault{Field: fmt.Sprintf("pings[%d].after_s", i), Message: "after_s is 0 to 604800 seconds after the ping before"})
		}
		p.Answer = sp.Answer
		pings[i] = p
	}
	if len(fs) > 0 {
		return &rules.ValidationError{Faults: fs}
	}
	if s.Sandbox == nil {
		return newError(http.StatusNotFound, "", "simulations are off on this server")
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.timeWalk(ctx, &req, pings); err != nil {
		return err
	}
	steps, err := s.Engine.Simulate(ctx, s.Sandbox, req.CustomerID, pings)
	if errors.Is(err, rules.ErrNotFound) {
		return newError(http.StatusNotFound, "customer_id", "customer %s has no profile: a walk needs one (its consents, language and visits)", req.CustomerID)
	}
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"simulated": true, "steps": steps, "phone": phoneSends(steps)})
}

// timeWalk gives the pings timed by after_s their times, from the walk's
// start in the customer's zone (UTC for a customer with no profile).
func (s *Server) timeWalk(ctx context.Context, req *simulateRequest, pings []engine.Ping) error {
	loc := time.UTC
	if req.Start != nil && req.Start.At != "" {
		if cust, err := s.Customers.Get(ctx, req.CustomerID); err == nil {
			loc = cust.Location()
		} else if !errors.Is(err, rules.ErrNotFound) {
			return err
		}
	}
	at, err := req.Start.at(time.Now(), loc)
	if err != nil {
		return err
	}
	for i := range pings {
		switch {
		case req.Pings[i].AfterS != nil:
			at = at.Add(time.Duration(*req.Pings[i].AfterS * float64(time.Second)))
			pings[i].TS = at
		case !pings[i].TS.IsZero():
			at = pings[i].TS
		default:
			pings[i].TS = at // the time of the ping before (the first: the start)
		}
	}
	return nil
}

// simulatedPhone counts the steps of a simulated walk a phone would have
// sent (engine.Step.PhoneSends).
type simulatedPhone struct {
	Steps int `json:"steps"`
	Sends int `json:"sends"`
}

func phoneSends(steps []engine.Step) simulatedPhone {
	p := simulatedPhone{Steps: len(steps)}
	for _, st := range steps {
		if st.PhoneSends {
			p.Sends++
		}
	}
	return p
}
