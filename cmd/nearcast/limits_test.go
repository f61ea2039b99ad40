package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A body over its route's limit gets 413 too_large in the contract's
// shape: refused on its declared length before the server reads more than
// 8 KiB of it, and one byte past the limit when it comes chunked; the
// bulk uploads take more than a JSON document.
func TestBodyLimits(t *testing.T) {
	base, _ := startServer(t, map[string]string{})
	send := func(method, path, key, contentType string, body io.Reader, length int64) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = length // -1: chunked
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", contentType)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	// Over raw TCP, so that what the server does before reading the body
	// shows: the client sends no more than the server should need.
	rawCall := func(head string, body []byte) (int, string) {
		t.Helper()
		conn, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write(append([]byte(head), body...)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	const limit = 1 << 20
	// A declared 2 MiB ping: refused on its headers once the server has
	// just over 8 KiB (what it reads of any body before the handler), the
	// rest never sent.
	status, raw := rawCall("POST /v1/pings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer demo-app\r\n"+
		"Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n", bytes.Repeat([]byte(" "), 8<<10+1))
	if status != 413 || !strings.Contains(raw, `"code":"too_large"`) {
		t.Fatalf("a declared 2 MiB ping: %d %s", status, raw)
	}
	// The rest of a refused body is never taken for a request: the
	// connection ends with the 413.
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	smuggled := "POST /v1/pings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer demo-app\r\nContent-Type: application/json\r\n" +
		"Content-Length: 2097152\r\n\r\n" + strings.Repeat(" ", 8<<10+1) + "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
	conn.Write([]byte(smuggled))
	br := bufio.NewReader(conn)
	first, err := http.ReadResponse(br, nil)
	if err != nil || first.StatusCode != 413 {
		t.Fatalf("a declared 2 MiB ping with a request inside: %v %v", first, err)
	}
	io.Copy(io.Discard, first.Body)
	if second, err := http.ReadResponse(br, nil); err == nil {
		t.Fatalf("the bytes of a refused body were answered as a request: %d", second.StatusCode)
	}
	conn.Close()
	// A multipart body is not read ahead of the limit either.
	status, raw = rawCall("POST /v1/pings HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"+
		"Content-Length: 20971520\r\n\r\n", append([]byte("--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"f\"\r\n\r\n"), bytes.Repeat([]byte("x"), 8<<10+1)...))
	if status != 413 {
		t.Fatalf("a declared 20 MiB multipart body: %d %s", status, raw)
	}
	// A chunked one: refused one byte past the limit, the rest unsent.
	chunks := append([]byte(fmt.Sprintf("%x\r\n", limit)), bytes.Repeat([]byte(" "), limit)...)
	chunks = append(chunks, "\r\n1\r\nx\r\n"...)
	status, raw = rawCall("POST /v1/pings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer demo-app\r\n"+
		"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n", chunks)
	if status != 413 || !strings.Contains(raw, `"code":"too_large"`) {
		t.Fatalf("a chunked ping past 1 MiB: %d %s", status, raw)
	}
	// A ping just under the limit is read (and judged on its content).
	status, raw = send("POST", "/v1/pings", "demo-app", "application/json",
		strings.NewReader(`{"customer_id": "c-42", "lat": 52.5219, "lng": 13.4132}`+strings.Repeat(" ", 1<<19)), -1)
	if status != 200 {
		t.Fatalf("a ping padded to half a MiB, chunked: %d %s", status, raw)
	}
	// 1.5 MiB of stores in one bulk upload is taken.
	var ndjson bytes.Buffer
	for i := 0; ndjson.Len() < 3<<19; i++ {
		fmt.Fprintf(&ndjson, `{"id": "bulk-%d", "name": "Bulk store number %d with a long name", "lat": 52.%04d, "lng": 13.%04d, "radius_m": 50, "tags": ["bulk"]}`+"\n", i, i, i%10000, (i*7)%10000)
	}
	status, raw = send("POST", "/v1/stores", "demo-admin", "application/x-ndjson", bytes.NewReader(ndjson.Bytes()), int64(ndjson.Len()))
	if status >= 300 {
		t.Fatalf("a 1.5 MiB bulk upload of stores: %d %.300s", status, raw)
	}
}
