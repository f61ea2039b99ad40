// Package playtest is a test double of Google's Play Integrity API on
// loopback: its decodeIntegrityToken method, which a server calls to read
// the verdicts inside a token an Android app sent it. It checks each
// request the way the API does, answers the payload it holds for each
// token it issued, and Google's error body for a token it does not know
// or when told to fail, so that tests reach it through
// google.golang.org/api/playintegrity/v1 itself (option.WithEndpoint(URL())
// and option.WithoutAuthentication()).
//
// The real API decodes only tokens of apps linked to the calling Cloud
// project, and answers an error for the others; the double answers any
// token it issued whatever the package in the path, so that a test sees
// the caller's own check of the package.
package playtest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/api/playintegrity/v1"
)

// Request is a decode request the double took, well formed or not.
type Request struct {
	Package string // the package name in the path
	Token   string // the body's integrityToken
}

// Server is the Play Integrity double.
type Server struct {
	srv       *httptest.Server
	mu        sync.Mutex
	payloads  map[string]*playintegrity.TokenPayloadExternal
	requests  []Request
	malformed int
	fail      *fault
	delay     time.Duration
}

type fault struct {
	status int
	code   string
	times  int // <= 0: always
}

// New starts the double; it stops when the test ends.
func New(t testing.TB) *Server {
	s := Start()
	t.Cleanup(s.Close)
	return s
}

// Start starts the double on loopback outside a test; Close stops it.
func Start() *Server {
	s := &Server{payloads: map[string]*playintegrity.TokenPayloadExternal{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Close stops the double.
func (s *Server) Close() { s.srv.Close() }

// URL is the base URL to give the API client (option.WithEndpoint) or
// NEARCAST_PLAY_INTEGRITY_ENDPOINT: the root, as
// https://playintegrity.googleapis.com/ is.
func (s *Server) URL() string { return s.srv.URL + "/" }

// Issue mints a token that decodes to payload, as the Play Integrity
// library on a phone would, and returns it. The payload is answered as
// it is when the token is decoded, so a test may change it until then.
func (s *Server) Issue(payload *playintegrity.TokenPayloadExternal) string {
	b := make([]byte, 48)
	_, _ = rand.Read(b)
	// Real tokens are a JWE in compact form: five base64url parts.
	token := "eyJhbGciOiJBMjU2S1ciLCJlbmMiOiJBMjU2R0NNIn0." + base64.RawURLEncoding.EncodeToString(b[:16]) + "." +
		base64.RawURLEncoding.EncodeToString(b[16:28]) + "." + base64.RawURLEncoding.EncodeToString(b[28:]) + ".dG9rZW4"
	s.mu.Lock()
	defer s.mu.Unlock()
	s.payloads[token] = payload
	return token
}

// Tokens are tokens of the kinds a server must tell apart, all requested
// at one time (Table's now).
type Tokens struct {
	Good         string // a Play-recognized app on a device that meets device integrity
	BadDevice    string // a rooted phone or an emulator: only basic integrity
	NoVerdict    string // a device Play knows nothing of: no device verdict at all
	SideLoaded   string // the app is not the one Play distributes (UNRECOGNIZED_VERSION)
	WrongPackage string // another app's token (requestPackageName is another package)
	Stale        string // requested an hour before now
}

// Table issues one token of each kind for package pkg, requested at now
// (the stale one an hour before).
func (s *Server) Table(pkg string, now time.Time) Tokens {
	bad := Genuine(pkg, now)
	bad.DeviceIntegrity.DeviceRecognitionVerdict = []string{"MEETS_BASIC_INTEGRITY"}
	none := Genuine(pkg, now)
	none.DeviceIntegrity.DeviceRecognitionVerdict = nil
	side := Genuine(pkg, now)
	side.AppIntegrity.AppRecognitionVerdict = "UNRECOGNIZED_VERSION"
	return Tokens{
		Good:         s.Issue(Genuine(pkg, now)),
		BadDevice:    s.Issue(bad),
		NoVerdict:    s.Issue(none),
		SideLoaded:   s.Issue(side),
		WrongPackage: s.Issue(Genuine(pkg+".other", now)),
		Stale:        s.Issue(Genuine(pkg, now.Add(-time.Hour))),
	}
}

// Genuine is the payload of a token that a Play-recognized copy of app
// pkg, installed from Play by a licensed user, requested at time at on a
// device that meets device integrity (a standard request: a request
// hash, no nonce).
func Genuine(pkg string, at time.Time) *playintegrity.TokenPayloadExternal {
	return &playintegrity.TokenPayloadExternal{
		RequestDetails: &playintegrity.RequestDetails{
			RequestPackageName: pkg,
			RequestHash:        "aGVsbG8gd29ybGQgdGhlcmU",
			TimestampMillis:    at.UnixMilli(),
		},
		AppIntegrity: &playintegrity.AppIntegrity{
			AppRecognitionVerdict:   "PLAY_RECOGNIZED",
			PackageName:             pkg,
			CertificateSha256Digest: []string{"6a6a1474b5cbbb2b1aa57e0bc3"},
			VersionCode:             42,
		},
		DeviceIntegrity: &playintegrity.DeviceIntegrity{
			DeviceRecognitionVerdict: []string{"MEETS_BASIC_INTEGRITY", "MEETS_DEVICE_INTEGRITY"},
		},
		AccountDetails: &playintegrity.AccountDetails{AppLicensingVerdict: "LICENSED"},
	}
}

// Requests lists the decode requests taken, in arrival order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Malformed counts requests refused as not of the API's form (wrong
// method, path, content type or body): a client of the API sends none.
// A token the double does not know is not counted: it is a well-formed
// request.
func (s *Server) Malformed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.malformed
}

// SetDelay makes every answer wait, as a slow network would.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// errorStatus is the HTTP status of each canonical code the API answers.
var errorStatus = map[string]int{
	"INVALID_ARGUMENT":   400,
	"UNAUTHENTICATED":    401,
	"PERMISSION_DENIED":  403,
	"NOT_FOUND":          404,
	"RESOURCE_EXHAUSTED": 429,
	"INTERNAL":           500,
	"UNAVAILABLE":        503,
	"DEADLINE_EXCEEDED":  504,
}

// Fail makes the next times decode requests (all of them when times <=
// 0) fail with a canonical code: UNAVAILABLE, INTERNAL, DEADLINE_EXCEEDED
// (an outage), RESOURCE_EXHAUSTED (the quota), PERMISSION_DENIED or
// UNAUTHENTICATED (the caller's credentials), NOT_FOUND,
// INVALID_ARGUMENT. Fail("", 0) stops failing.
func (s *Server) Fail(code string, times int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if code == "" {
		s.fail = nil
		return
	}
	status, ok := errorStatus[code]
	if !ok {
		panic("playtest: unknown canonical code " + code)
	}
	s.fail = &fault{status: status, code: code, times: times}
}

var decodePath = regexp.MustCompile(`^/v1/([^/:]+):decodeIntegrityToken$`)

// androidPackage is the form of an Android package name.
var androidPackage = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+$`)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	m := decodePath.FindStringSubmatch(r.URL.Path)
	if m == nil {
		s.refuse(w, 404, "NOT_FOUND", "The requested URL "+r.URL.Path+" was not found on this server.")
		return
	}
	if r.Method != http.MethodPost {
		s.refuse(w, 404, "NOT_FOUND", "The requested URL "+r.URL.Path+" was not found on this server (decodeIntegrityToken is a POST).")
		return
	}
	raw, _ := io.ReadAll(r.Body)
	token, problem := check(r, m[1], raw)
	s.mu.Lock()
	s.requests = append(s.requests, Request{Package: m[1], Token: token})
	delay := s.delay
	f := s.fail
	if problem != "" {
		f = nil // a malformed request uses up no fault
	}
	if f != nil && f.times > 0 {
		if f.times--; f.times == 0 {
			s.fail = nil
		}
	}
	payload, known := s.payloads[token]
	s.mu.Unlock()
	time.Sleep(delay)
	switch {
	case problem != "":
		s.refuse(w, 400, "INVALID_ARGUMENT", problem)
	case f != nil:
		writeError(w, f.status, f.code, "playtest: told to fail with "+f.code)
	case !known:
		// What the API answers for a token that is not one, or is cut,
		// or was not made for this Cloud project.
		writeError(w, 400, "INVALID_ARGUMENT", "Integrity token cannot be decoded due to invalid arguments.")
	default:
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		json.NewEncoder(w).Encode(&playintegrity.DecodeIntegrityTokenResponse{TokenPayloadExternal: payload})
	}
}

// check validates a decode request as the API would, answering its
// token, and what is wrong with the request, if anything.
func check(r *http.Request, pkg string, raw []byte) (string, string) {
	if !androidPackage.MatchString(pkg) {
		return "", "Invalid package name: " + pkg
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return "", "Content-Type must be application/json, not " + ct
	}
	if alt := r.URL.Query().Get("alt"); alt != "" && alt != "json" {
		return "", "Invalid value at 'alt': " + alt
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	var body struct {
		IntegrityToken *string `json:"integrityToken"`
	}
	if err := dec.Decode(&body); err != nil {
		return "", "Invalid JSON payload received. " + err.Error()
	}
	if body.IntegrityToken == nil || *body.IntegrityToken == "" {
		return "", "Request contains an invalid argument: integrity_token is required."
	}
	return *body.IntegrityToken, ""
}

// refuse answers a malformed request, and counts it.
func (s *Server) refuse(w http.ResponseWriter, status int, code, message string) {
	s.mu.Lock()
	s.malformed++
	s.mu.Unlock()
	writeError(w, status, code, message)
}

// writeError answers in Google's error body shape
// ({"error": {"code", "message", "status"}}), which the API client reads
// into a *googleapi.Error.
func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": status, "message": message, "status": code}})
}
