// Package fcmtest is a test double of the FCM HTTP v1 API on loopback. It
// checks each send request the way FCM does, records the messages it
// accepts, and answers with FCM's real error bodies when told to fail, so
// that tests reach it through firebase-admin-go itself.
package fcmtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Message is a push the double accepted.
type Message struct {
	Project         string
	Token           string
	Title, Body     string
	Data            map[string]string
	AndroidTTL      string
	AndroidPriority string
	CollapseKey     string
	// AndroidTag is android.notification.tag: a notification with the
	// same tag replaces the one shown.
	AndroidTag     string
	APNSHeaders    map[string]string
	WebpushHeaders map[string]string
	Raw            json.RawMessage
}

// Server is the FCM double.
type Server struct {
	srv      *httptest.Server
	mu       sync.Mutex
	messages []Message
	rejected int
	faults   map[string]*fault
	n        int
	delay    time.Duration
}

// SetDelay makes every answer wait, as a slow network would.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

type fault struct {
	code       string
	times      int // <= 0: always
	retryAfter int
}

// New starts the double; it stops when the test ends.
func New(t testing.TB) *Server {
	s := Start()
	t.Cleanup(s.Close)
	return s
}

// Start starts the double on loopback outside a test (the load bench
// sends its pushes here); Close stops it.
func Start() *Server {
	s := &Server{faults: map[string]*fault{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Close stops the double.
func (s *Server) Close() { s.srv.Close() }

// URL is the base URL to give firebase-admin-go (option.WithEndpoint) or
// NEARCAST_FCM_ENDPOINT: it ends in /v1.
func (s *Server) URL() string { return s.srv.URL + "/v1" }

// Messages lists accepted messages in arrival order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// MessagesFor lists accepted messages to one token.
func (s *Server) MessagesFor(token string) []Message {
	var out []Message
	for _, m := range s.Messages() {
		if m.Token == token {
			out = append(out, m)
		}
	}
	return out
}

// Shown is what the phone with this token shows: a message replaces an
// earlier one with the same collapse key (Android's collapse_key, APNs'
// apns-collapse-id), as phones do; messages without one each show.
func (s *Server) Shown(token string) []Message {
	var out []Message
	at := map[string]int{}
	for _, m := range s.MessagesFor(token) {
		key := m.CollapseKey
		if key == "" {
			key = m.APNSHeaders["apns-collapse-id"]
		}
		if i, ok := at[key]; ok && key != "" {
			out[i] = m
			continue
		}
		at[key] = len(out)
		out = append(out, m)
	}
	return out
}

// Rejected counts requests refused as malformed (INVALID_ARGUMENT that a
// test did not ask for).
func (s *Server) Rejected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejected
}

// Reset forgets messages, rejections and faults.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.messages, s.rejected, s.faults = nil, 0, map[string]*fault{}
}

// FailToken makes sends to token fail with an FCM error code
// (UNREGISTERED, INVALID_ARGUMENT, QUOTA_EXCEEDED, UNAVAILABLE, INTERNAL,
// SENDER_ID_MISMATCH, THIRD_PARTY_AUTH_ERROR) for the next times sends,
// or always when times <= 0.
func (s *Server) FailToken(token, code string, times int) {
	s.FailTokenRetryAfter(token, code, times, 0)
}

// FailTokenRetryAfter is FailToken with a Retry-After header, in seconds.
func (s *Server) FailTokenRetryAfter(token, code string, times, seconds int) {
	if _, ok := errorStatus[code]; !ok {
		panic("fcmtest: unknown FCM error code " + code)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[token] = &fault{code: code, times: times, retryAfter: seconds}
}

// errorStatus is FCM's HTTP status and canonical status per error code
// (firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode).
var errorStatus = map[string]struct {
	http   int
	status string
}{
	"INVALID_ARGUMENT":       {400, "INVALID_ARGUMENT"},
	"UNREGISTERED":           {404, "NOT_FOUND"},
	"SENDER_ID_MISMATCH":     {403, "PERMISSION_DENIED"},
	"QUOTA_EXCEEDED":         {429, "RESOURCE_EXHAUSTED"},
	"UNAVAILABLE":            {503, "UNAVAILABLE"},
	"INTERNAL":               {500, "INTERNAL"},
	"THIRD_PARTY_AUTH_ERROR": {401, "UNAUTHENTICATED"},
}

var sendPath = regexp.MustCompile(`^/v1/projects/([^/]+)/messages:send$`)

// sendRequest is FCM v1's request body; unknown fields are refused, as
// FCM does.
type sendRequest struct {
	ValidateOnly bool `json:"validate_only"`
	Message      *struct {
		Token        string         `json:"token"`
		Topic        string         `json:"topic"`
		Condition    string         `json:"condition"`
		Data         map[string]any `json:"data"`
		Notification *struct {
			Title string `json:"title"`
			Body  string `json:"body"`
			Image string `json:"image"`
		} `json:"notification"`
		Android *struct {
			CollapseKey  string         `json:"collapse_key"`
			Priority     string         `json:"priority"`
			TTL          string         `json:"ttl"`
			Data         map[string]any `json:"data"`
			Notification *struct {
				Tag string `json:"tag"`
			} `json:"notification"`
		} `json:"android"`
		APNS *struct {
			Headers map[string]string `json:"headers"`
			Payload map[string]any    `json:"payload"`
		} `json:"apns"`
		Webpush *struct {
			Headers map[string]string `json:"headers"`
		} `json:"webpush"`
		FCMOptions json.RawMessage `json:"fcm_options"`
	} `json:"message"`
}

var ttlFormat = regexp.MustCompile(`^\d+(\.\d{1,9})?s$`)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	m := sendPath.FindStringSubmatch(r.URL.Path)
	if m == nil {
		writeError(w, 404, "NOT_FOUND", "", "no such method: "+r.URL.Path)
		return
	}
	if r.Method != http.MethodPost {
		writeError(w, 405, "INVALID_ARGUMENT", "", "send with POST")
		return
	}
	raw, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	delay := s.delay
	s.mu.Unlock()
	time.Sleep(delay)
	msg, problem := check(r, raw)
	if problem != "" {
		s.mu.Lock()
		s.rejected++
		s.mu.Unlock()
		writeError(w, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", problem)
		return
	}
	msg.Project = m[1]
	s.mu.Lock()
	if f := s.faults[msg.Token]; f != nil {
		if f.times > 0 {
			f.times--
			if f.times == 0 {
				delete(s.faults, msg.Token)
			}
		}
		s.mu.Unlock()
		if f.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(f.retryAfter))
		}
		st := errorStatus[f.code]
		writeError(w, st.http, st.status, f.code, "fcmtest: told to fail with "+f.code)
		return
	}
	s.n++
	id := s.n
	s.messages = append(s.messages, msg)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"name":"projects/%s/messages/%d"}`, m[1], id)
}

// check validates a send request as FCM would, answering what is wrong.
func check(r *http.Request, raw []byte) (Message, string) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return Message{}, "Content-Type must be application/json, not " + ct
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	var req sendRequest
	if err := dec.Decode(&req); err != nil {
		return Message{}, "Invalid JSON payload received. " + err.Error()
	}
	mm := req.Message
	if mm == nil {
		return Message{}, "Request contains an invalid argument: message is required."
	}
	targets := 0
	for _, t := range []string{mm.Token, mm.Topic, mm.Condition} {
		if t != "" {
			targets++
		}
	}
	if targets != 1 {
		return Message{}, "Exactly one of token, topic or condition must be set."
	}
	out := Message{Token: mm.Token, Data: map[string]string{}, Raw: raw}
	for k, v := range mm.Data {
		sv, ok := v.(string)
		if !ok {
			return Message{}, fmt.Sprintf("Invalid value at 'message.data[%s].value' (TYPE_STRING)", k)
		}
		out.Data[k] = sv
	}
	if mm.Notification != nil {
		out.Title, out.Body = mm.Notification.Title, mm.Notification.Body
	}
	if a := mm.Android; a != nil {
		switch a.Priority {
		case "", "normal", "high", "NORMAL", "HIGH":
		default:
			return Message{}, "Invalid value at 'message.android.priority': " + a.Priority
		}
		if a.TTL != "" && !ttlFormat.MatchString(a.TTL) {
			return Message{}, "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration): " + a.TTL
		}
		if len(a.CollapseKey) > 0 && len(a.CollapseKey) > 1024 {
			return Message{}, "collapse_key too long"
		}
		out.AndroidTTL, out.AndroidPriority, out.CollapseKey = a.TTL, a.Priority, a.CollapseKey
		if a.Notification != nil {
			out.AndroidTag = a.Notification.Tag
		}
	}
	if w := mm.Webpush; w != nil {
		if ttl, ok := w.Headers["TTL"]; ok {
			if _, err := strconv.Atoi(ttl); err != nil {
				return Message{}, "webpush TTL header must be a whole number of seconds"
			}
		}
		out.WebpushHeaders = w.Headers
	}
	if a := mm.APNS; a != nil {
		for k, v := range a.Headers {
			switch strings.ToLower(k) {
			case "apns-priority":
				if v != "5" && v != "10" && v != "1" {
					return Message{}, "apns-priority must be 10, 5 or 1"
				}
			case "apns-expiration":
				if _, err := strconv.ParseInt(v, 10, 64); err != nil {
					return Message{}, "apns-expiration must be a UNIX time in seconds"
				}
			case "apns-collapse-id":
				if len(v) > 64 {
					return Message{}, "apns-collapse-id must be at most 64 bytes"
				}
			}
		}
		out.APNSHeaders = a.Headers
	}
	return out, ""
}

// writeError answers in FCM's error body shape, which firebase-admin-go
// reads into messaging.IsUnregistered and friends.
func writeError(w http.ResponseWriter, status int, canonical, fcmCode, message string) {
	body := map[string]any{"code": status, "message": message, "status": canonical}
	if fcmCode != "" {
		body["details"] = []map[string]string{{
			"@type":     "type.googleapis.com/google.firebase.fcm.v1.FcmError",
			"errorCode": fcmCode,
		}}
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": body})
}
