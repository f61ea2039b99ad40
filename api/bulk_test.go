package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"

	"github.com/nearcast/nearcast/api"
	"github.com/nearcast/nearcast/internal/redistest"
)

// listen serves c's app on a loopback port until the test ends.
func (c *client) listen() string {
	c.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	go c.app.Listener(ln)
	c.t.Cleanup(func() { c.app.ShutdownWithTimeout(2 * time.Second) })
	return ln.Addr().String()
}

// rawRequest is a request written on a connection of its own: its head,
// then each part of its body after pause; then, when halfClose, the
// client's side closed.
type rawRequest struct {
	head      string
	parts     []string
	pause     time.Duration
	halfClose bool
}

// rawAnswer is the answer to a rawRequest, and its connection.
type rawAnswer struct {
	response
	close bool // the server ends the connection with it
	conn  net.Conn
	br    *bufio.Reader
}

// send writes r and reads the answer; nil when none came.
func (r rawRequest) send(t *testing.T, addr string) *rawAnswer {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, r.head); err != nil {
		t.Fatal(err)
	}
	for i, p := range r.parts {
		if i > 0 {
			time.Sleep(r.pause)
		}
		if _, err := io.WriteString(conn, p); err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
	}
	if r.halfClose {
		conn.(*net.TCPConn).CloseWrite()
	}
	a := &rawAnswer{conn: conn, br: bufio.NewReader(conn)}
	res, err := http.ReadResponse(a.br, nil)
	if err != nil {
		return nil
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	a.response = response{Status: res.StatusCode, Raw: string(raw), Header: res.Header}
	a.close = res.Close
	_ = json.Unmarshal(raw, &a.Body)
	return a
}

func bulkHead(path, key string, length int) string {
	framing := "Transfer-Encoding: chunked"
	if length >= 0 {
		framing = fmt.Sprintf("Content-Length: %d", length)
	}
	return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/x-ndjson\r\n%s\r\n\r\n", path, key, framing)
}

// bulkLines is n good NDJSON lines for path's route.
func bulkLines(path string, n int) string {
	var b strings.Builder
	for i := range n {
		if path == "/v1/customers" {
			fmt.Fprintf(&b, `{"id": "c-bulk-%d", "first_name": "Customer number %d", "locale": "de"}`+"\n", i, i)
			continue
		}
		fmt.Fprintf(&b, `{"id": "s-bulk-%d", "name": "Bulk store number %d", "lat": 52.%04d, "lng": 13.%04d, "radius_m": 50}`+"\n", i, i, i, i)
	}
	return b.String()
}

func chunk(s string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(s), s) }

// split cuts s into a first part of head bytes and n more of about equal size.
func split(s string, head, n int) []string {
	parts := []string{s[:head]}
	rest := s[head:]
	for i := n; i > 0; i-- {
		k := len(rest) / i
		parts = append(parts, rest[:k])
		rest = rest[k:]
	}
	return parts
}

// A bulk upload that could not be read in full is refused whole with 400
// in the contract's shape, and no line of it is written: cut short of its
// declared length (before or past what fasthttp reads ahead of the
// route), cut inside a chunk or just after one, the client's side closed
// (the answer still readable) or the whole connection closed (no answer).
func TestBulkBodyCutShort(t *testing.T) {
	stores := bulkLines("/v1/stores", 300) // some 27 KB
	customers := bulkLines("/v1/customers", 300)
	cases := []struct {
		name  string
		path  string
		req   rawRequest
		close bool // the whole connection, not only the client's side
	}{
		{"declared, cut past the read-ahead", "/v1/stores",
			rawRequest{head: bulkHead("/v1/stores", "admin-key", len(stores)), parts: []string{stores[:20000]}, halfClose: true}, false},
		{"declared, cut within the read-ahead", "/v1/stores",
			rawRequest{head: bulkHead("/v1/stores", "admin-key", 5000), parts: []string{stores[:2000]}, halfClose: true}, false},
		{"declared, customers", "/v1/customers",
			rawRequest{head: bulkHead("/v1/customers", "admin-key", len(customers)), parts: []string{customers[:20000]}, halfClose: true}, false},
		{"chunked, cut inside a chunk", "/v1/stores",
			rawRequest{head: bulkHead("/v1/stores", "admin-key", -1), parts: []string{chunk(stores[:10000]), chunk(stores[10000:])[:9000]}, halfClose: true}, false},
		{"chunked, cut after a chunk", "/v1/stores",
			rawRequest{head: bulkHead("/v1/stores", "admin-key", -1), parts: []string{chunk(stores[:10000]), chunk(stores[10000:20000])}, halfClose: true}, false},
		{"chunked, customers cut after a chunk", "/v1/customers",
			rawRequest{head: bulkHead("/v1/customers", "admin-key", -1), parts: []string{chunk(customers)}, halfClose: true}, false},
		{"declared, connection closed", "/v1/stores",
			rawRequest{head: bulkHead("/v1/stores", "admin-key", len(stores)), parts: []string{stores[:20000]}}, true},
		{"chunked, connection closed after a chunk", "/v1/stores",
			rawRequest{head: bulkHead("/v1/stores", "admin-key", -1), parts: []string{chunk(stores[:20000])}}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, srv.Client(t))
			// The server is done with a request once it has closed its
			// connection.
			done := make(chan struct{}, 1)
			c.app.Server().ConnState = func(_ net.Conn, st fasthttp.ConnState) {
				if st == fasthttp.StateClosed {
					select {
					case done <- struct{}{}:
					default:
					}
				}
			}
			addr := c.listen()
			before := keysSnapshot(t, c.rdb)
			if tc.close {
				conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				io.WriteString(conn, tc.req.head+strings.Join(tc.req.parts, ""))
				conn.Close()
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					t.Fatal("the server still holds the connection after 5 s")
				}
			} else {
				a := tc.req.send(t, addr)
				if a == nil {
					t.Fatal("no answer")
				}
				wantError(t, a.response, 400, "invalid_argument", "")
				if !a.close {
					t.Fatalf("the connection stays open after a body that was not read in full: %v", a.Header)
				}
			}
			if after := keysSnapshot(t, c.rdb); after != before {
				t.Fatalf("a body cut short wrote to Redis:\nbefore %.300s\nafter  %.300s", before, after)
			}
		})
	}
}

// A slow but whole bulk upload is read under the bulk deadline, not the
// server's read timeout: a few KB at a trickle over a second, past a read
// timeout of 300 ms, are written line by line; the connection serves the
// next request after it. A body slower than its deadline is cut with 408
// and nothing of it written: a ping under the read timeout, a bulk upload
// under the bulk deadline, a JSON body longer than fasthttp's read-ahead.
func TestSlowBodies(t *testing.T) {
	slow := func(d *api.Deps) {
		d.ReadTimeout = 300 * time.Millisecond
		d.BulkReadTimeout = 5 * time.Second
	}
	t.Run("trickle", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			path    string
			chunked bool
		}{
			{"stores, declared", "/v1/stores", false},
			{"customers, declared", "/v1/customers", false},
			{"stores, chunked", "/v1/stores", true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := newClientWith(t, srv.Client(t), slow)
				addr := c.listen()
				const n = 250
				body := bulkLines(tc.path, n)
				// The first 12 KiB at once: the headers and the first 8 KiB
				// of a body are read before any route, within the read
				// timeout; then the rest at a trickle, over a second.
				parts := split(body, 12<<10, 10)
				req := rawRequest{head: bulkHead(tc.path, "admin-key", len(body)), parts: parts, pause: 100 * time.Millisecond}
				if tc.chunked {
					req.head = bulkHead(tc.path, "admin-key", -1)
					for i, p := range parts {
						req.parts[i] = chunk(p)
					}
					req.parts = append(req.parts, "0\r\n\r\n")
				}
				start := time.Now()
				a := req.send(t, addr)
				if a == nil {
					t.Fatal("no answer")
				}
				r := a.response
				if took := time.Since(start); took < 900*time.Millisecond {
					t.Fatalf("the upload took %v, not past the read timeout", took)
				}
				if r.Status != 200 || r.Body["written"] != float64(n) || r.Body["failed"] != 0.0 {
					t.Fatalf("a slow upload: %d %.300s", r.Status, r.Raw)
				}
				what := "customers"
				if tc.path == "/v1/stores" {
					what = "stores"
					if got := c.admin("GET", "/v1/stores?limit=1000", "").Body["stores"].([]any); len(got) != n {
						t.Fatalf("%d stores listed, want %d", len(got), n)
					}
				} else if r := c.admin("GET", fmt.Sprintf("/v1/customers/c-bulk-%d", n-1), ""); r.Status != 200 {
					t.Fatalf("the last customer: %d %s", r.Status, r.Raw)
				}
				// The next request on the connection is read as usual.
				io.WriteString(a.conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
				if next, err := http.ReadResponse(a.br, nil); err != nil || next.StatusCode != 200 {
					t.Fatalf("the request after the %s: %v %v", what, next, err)
				}
			})
		}
	})
	t.Run("cut", func(t *testing.T) {
		stores := bulkLines("/v1/stores", 300)
		polygon := `{"name": "Padded", "lat": 52.52, "lng": 13.41, "radius_m": 50}` + strings.Repeat(" ", 20000)
		for _, tc := range []struct {
			name string
			req  rawRequest
		}{
			{"ping", rawRequest{head: "POST /v1/pings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer app-key\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n",
				parts: []string{`{"customer_id": "c-1", `}}},
			{"JSON past the read-ahead", rawRequest{head: fmt.Sprintf("PUT /v1/stores/s-padded HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-key\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(polygon)),
				parts: []string{polygon[:10000]}}},
			{"bulk, declared", rawRequest{head: bulkHead("/v1/stores", "admin-key", len(stores)), parts: []string{stores[:12000]}}},
			{"bulk, chunked", rawRequest{head: bulkHead("/v1/stores", "admin-key", -1), parts: []string{chunk(stores[:12000])}}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := newClientWith(t, srv.Client(t), func(d *api.Deps) {
					d.ReadTimeout = 300 * time.Millisecond
					d.BulkReadTimeout = 500 * time.Millisecond
				})
				addr := c.listen()
				before := keysSnapshot(t, c.rdb)
				start := time.Now()
				a := tc.req.send(t, addr)
				if a == nil {
					t.Fatal("no answer")
				}
				wantError(t, a.response, 408, "request_timeout", "")
				if took := time.Since(start); took > 2*time.Second {
					t.Fatalf("cut after %v", took)
				}
				if after := keysSnapshot(t, c.rdb); after != before {
					t.Fatalf("a body cut at its deadline wrote to Redis:\nbefore %.300s\nafter  %.300s", before, after)
				}
			})
		}
	})
}

// A bulk upload refused before its body is read (here for want of the
// admin key) ends its connection with the answer: what is left of the
// body is never taken for a request.
func TestRefusedBulkBodyIsNotARequest(t *testing.T) {
	c := newClient(t, srv.Client(t))
	addr := c.listen()
	body := strings.Repeat(" ", 9000) + "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
	a := rawRequest{head: bulkHead("/v1/stores", "wrong-key", len(body)), parts: []string{body}}.send(t, addr)
	if a == nil {
		t.Fatal("no answer")
	}
	wantError(t, a.response, 401, "unauthenticated", "")
	if next, err := http.ReadResponse(a.br, nil); err == nil {
		t.Fatalf("the bytes of a refused body were answered as a request: %d", next.StatusCode)
	}
}

// failPipelinesAfter lets n pipelines through, then fails each after as a
// connection that Redis closed.
type failPipelinesAfter struct{ n atomic.Int32 }

func (h *failPipelinesAfter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *failPipelinesAfter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}
func (h *failPipelinesAfter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.n.Add(-1) < 0 {
			for _, c := range cmds {
				c.SetErr(net.ErrClosed)
			}
			return net.ErrClosed
		}
		return next(ctx, cmds)
	}
}

// A bulk upload that Redis fails part way is not answered as if it went
// through: 503, saying how many lines were written (the first ones); the
// same upload sent again writes them all.
func TestBulkUploadFailedPartWay(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			rdb := be.New(t)
			c := newClient(t, rdb)
			var lines []string
			for i := range 1500 {
				lines = append(lines, fmt.Sprintf(`{"id": "c-bulk-%04d", "consent": {"location": true, "push": true}}`, i))
			}
			body := strings.Join(lines, "\n")
			hook := &failPipelinesAfter{}
			hook.n.Store(1)
			rdb.AddHook(hook)
			got := c.ndjsonTo("/v1/customers", body)
			wantError(t, got, 503, "unavailable", "")
			if msg, _ := got.Body["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "the first 1000 of 1500 good lines were written") {
				t.Fatalf("the answer does not say what was written: %s", got.Raw)
			}
			keys, err := redistest.Keys(context.Background(), rdb, "nc:{c:c-bulk-*}:profile")
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != 1000 {
				t.Fatalf("%d profiles written, the answer said 1000", len(keys))
			}
			hook.n.Store(1 << 20)
			if got := c.ndjsonTo("/v1/customers", body); got.Status != 200 || got.Body["written"] != 1500.0 {
				t.Fatalf("sent again: %d %s", got.Status, got.Raw)
			}
		})
	}
}
