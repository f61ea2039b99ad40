// Package hooktest is a webhook receiver for tests, on 127.0.0.1: it
// records every request, verifies its Standard Webhooks signature, and
// answers as told — 200, 500, 429 with Retry-After, or not at all (it
// hangs) — and can be stopped and started again on the same port, as a
// receiver that dies and comes back.
package hooktest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nearcast/nearcast/engine/webhook"
)

// Answer is how the receiver answers a request.
type Answer struct {
	Status     int           // 0: 200
	RetryAfter string        // the Retry-After header, if any
	Hang       bool          // answer nothing until the client gives up or the receiver stops
	Delay      time.Duration // wait this long before answering
}

// Answers often used.
var (
	OK   = Answer{Status: http.StatusOK}
	Fail = Answer{Status: http.StatusInternalServerError}
	Hang = Answer{Hang: true}
)

// TooMany is 429 with Retry-After in seconds.
func TooMany(seconds int) Answer {
	return Answer{Status: http.StatusTooManyRequests, RetryAfter: strconv.Itoa(seconds)}
}

// Request is one request received.
type Request struct {
	ID, Timestamp, Signature string
	Body                     []byte
	Event                    webhook.Event // the body decoded
	VerifyErr                error         // webhook.Verify's verdict (nil: signed right)
	Status                   int           // what was answered (0: nothing, it hung)
	At                       time.Time
}

// Receiver is the test receiver.
type Receiver struct {
	secret string
	addr   string

	mu      sync.Mutex
	srv     *http.Server
	quit    chan struct{}
	reqs    []Request
	def     Answer
	plan    []Answer
	decide  func(Request) Answer
	changed chan struct{}
}

// New starts a receiver that verifies with secret (a webhook secret,
// whsec_…) and answers 200 until told otherwise; it stops with the test.
func New(t testing.TB, secret string) *Receiver {
	t.Helper()
	r := &Receiver{secret: secret, def: OK, changed: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.serve(ln)
	t.Cleanup(r.Stop)
	return r
}

// URL is where the receiver listens, the same across restarts.
func (r *Receiver) URL() string { return "http://" + r.addr + "/hook" }

// Answer sets the answer to every request from now on.
func (r *Receiver) Answer(a Answer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.def, r.plan = a, nil
}

// Then answers the next requests with answers, one each, before going
// back to the answer set by Answer.
func (r *Receiver) Then(answers ...Answer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.plan = append(r.plan, answers...)
}

// Decide answers each request as f says (nil: back to Answer and
// Then); f sees the request decoded, signature checked.
func (r *Receiver) Decide(f func(Request) Answer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.decide = f
}

// Stop closes the listener and every connection, as a receiver that
// dies; requests hanging end unanswered.
func (r *Receiver) Stop() {
	r.mu.Lock()
	srv, quit := r.srv, r.quit
	r.srv, r.quit = nil, nil
	r.mu.Unlock()
	if srv == nil {
		return
	}
	close(quit)
	srv.Close()
}

// Start listens again on the same port.
func (r *Receiver) Start() error {
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may linger a moment
		if ln, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	r.serve(ln)
	return nil
}

func (r *Receiver) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(r.handle), ReadHeaderTimeout: 5 * time.Second}
	r.mu.Lock()
	r.srv, r.quit = srv, make(chan struct{})
	r.mu.Unlock()
	go srv.Serve(ln)
}

func (r *Receiver) handle(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	rec := Request{ID: req.Header.Get(webhook.HeaderID), Timestamp: req.Header.Get(webhook.HeaderTimestamp),
		Signature: req.Header.Get(webhook.HeaderSignature), Body: body, At: time.Now()}
	rec.VerifyErr = webhook.Verify(r.secret, req.Header, body)
	if err := json.Unmarshal(body, &rec.Event); err != nil && rec.VerifyErr == nil {
		rec.VerifyErr = err
	}
	r.mu.Lock()
	a := r.def
	if len(r.plan) > 0 {
		a, r.plan = r.plan[0], r.plan[1:]
	}
	if r.decide != nil {
		a = r.decide(rec)
	}
	quit := r.quit
	if rec.VerifyErr != nil {
		a = Answer{Status: http.StatusUnauthorized}
	}
	if !a.Hang {
		rec.Status = a.Status
		if rec.Status == 0 {
			rec.Status = http.StatusOK
		}
	}
	r.reqs = append(r.reqs, rec)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	if a.Hang {
		select {
		case <-req.Context().Done():
		case <-quit:
		}
		return
	}
	if a.Delay > 0 {
		select {
		case <-req.Context().Done():
		case <-quit:
		case <-time.After(a.Delay):
		}
	}
	if a.RetryAfter != "" {
		w.Header().Set("Retry-After", a.RetryAfter)
	}
	w.WriteHeader(rec.Status)
}

// Requests answers every request received, in order.
func (r *Receiver) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.reqs...)
}

// Accepted answers the requests answered 2xx, in order.
func (r *Receiver) Accepted() []Request {
	var out []Request
	for _, q := range r.Requests() {
		if q.Status >= 200 && q.Status < 300 {
			out = append(out, q)
		}
	}
	return out
}

// ErrTimeout is Wait's error when the condition did not come true.
var ErrTimeout = errors.New("hooktest: timed out")

// Wait waits until cond holds of the requests received, or ctx ends.
func (r *Receiver) Wait(ctx context.Context, cond func([]Request) bool) error {
	for {
		r.mu.Lock()
		reqs, ch := append([]Request(nil), r.reqs...), r.changed
		r.mu.Unlock()
		if cond(reqs) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ErrTimeout
		case <-ch:
		}
	}
}

// WaitAccepted waits until n distinct event ids were answered 2xx.
func (r *Receiver) WaitAccepted(n int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return r.Wait(ctx, func(reqs []Request) bool { return len(DistinctAccepted(reqs)) >= n })
}

// DistinctAccepted answers the events answered 2xx, each once (its first
// acceptance), in the order accepted.
func DistinctAccepted(reqs []Request) []webhook.Event {
	seen := map[string]bool{}
	var out []webhook.Event
	for _, q := range reqs {
		if q.Status >= 200 && q.Status < 300 && !seen[q.ID] {
			seen[q.ID] = true
			out = append(out, q.Event)
		}
	}
	return out
}
