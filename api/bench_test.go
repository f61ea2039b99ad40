package api_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// BenchmarkBulkStores100k loads 100,000 stores through POST /v1/stores
// (NDJSON) into redis-server, including this replica's snapshot rebuild.
func BenchmarkBulkStores100k(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	var sb strings.Builder
	for i := 0; i < 100000; i++ {
		fmt.Fprintf(&sb, `{"id":"s-%d","name":"Store %d","lat":%.6f,"lng":%.6f,"radius_m":%d,"tags":["coffee"],"timezone":"Europe/Berlin"}`+"\n",
			i, i, 52.3+rng.Float64()*0.4, 13.1+rng.Float64()*0.6, 50+rng.IntN(250))
	}
	body := sb.String()
	b.SetBytes(int64(len(body)))
	for i := 0; i < b.N; i++ {
		c := newClient(b, srv.Client(b))
		if r := c.ndjson(body); r.Status != 200 || r.Body["written"] != 100000.0 {
			b.Fatalf("bulk: %d %.300s", r.Status, r.Raw)
		}
	}
}

// BenchmarkBulkCustomers100k loads 100,000 profiles through
// POST /v1/customers (NDJSON) into redis-server.
func BenchmarkBulkCustomers100k(b *testing.B) {
	var sb strings.Builder
	for i := 0; i < 100000; i++ {
		fmt.Fprintf(&sb, `{"id":"c-%d","first_name":"Customer %d","locale":"de","timezone":"Europe/Berlin","consent":{"location":true,"push":true},"segments":["commuter"],"attributes":{"tier":"gold","visits_30d":%d}}`+"\n", i, i, i%30)
	}
	body := sb.String()
	b.SetBytes(int64(len(body)))
	for i := 0; i < b.N; i++ {
		c := newClient(b, srv.Client(b))
		if r := c.ndjsonTo("/v1/customers", body); r.Status != 200 || r.Body["written"] != 100000.0 {
			b.Fatalf("bulk: %d %.300s", r.Status, r.Raw)
		}
	}
}
