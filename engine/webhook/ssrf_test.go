package webhook_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nearcast/nearcast/engine/webhook"
	"github.com/nearcast/nearcast/internal/redistest"
	"github.com/nearcast/nearcast/rules"
)

func cidrs(t *testing.T, list ...string) []*net.IPNet {
	t.Helper()
	var out []*net.IPNet
	for _, c := range list {
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

// A subscription may not name an address of a private or special
// network: the cloud's metadata service, the company's Redis and
// internal services stay out of reach. The loopback host stays for
// development, and an operator's allow-list lets a network in.
func TestURLsOfPrivateNetworksRefused(t *testing.T) {
	refused := []string{
		"https://169.254.169.254/latest/meta-data/", "https://10.1.2.3/h", "https://172.16.0.1/h", "https://192.168.1.1/h",
		"https://100.64.0.1/h", "https://0.0.0.0/h", "https://224.0.0.1/h", "https://255.255.255.255/h",
		"https://[fe80::1]/h", "https://[fc00::1]/h", "https://[fd12:3456::1]/h", "https://[::]/h", "https://[ff02::1]/h",
		"https://[::ffff:10.0.0.1]/h", "https://[64:ff9b::a9fe:a9fe]/h", "https://[2002:a00:1::]/h",
	}
	for _, u := range refused {
		s := webhook.Subscription{ID: "a", URL: u, Events: []string{"enter"}}
		var ve *rules.ValidationError
		if err := s.Normalize(); !errors.As(err, &ve) || len(ve.Faults) != 1 || ve.Faults[0].Field != "url" {
			t.Errorf("%s: %v, want a fault of url", u, err)
		} else if !strings.Contains(ve.Faults[0].Message, "NEARCAST_WEBHOOK_ALLOW_NETS") {
			t.Errorf("%s: %s", u, ve.Faults[0].Message)
		}
	}
	for _, u := range []string{"https://8.8.8.8/h", "https://[2606:4700:4700::1111]/h", "https://127.0.0.1:8443/h", "https://[::1]/h",
		"https://localhost/h", "https://crm.example.com/h", "https://[64:ff9b::808:808]/h"} {
		s := webhook.Subscription{ID: "a", URL: u, Events: []string{"enter"}}
		if err := s.Normalize(); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	allow := cidrs(t, "10.0.0.0/8", "fd00::/8")
	for _, u := range []string{"https://10.1.2.3/h", "https://[fd12:3456::1]/h"} {
		s := webhook.Subscription{ID: "a", URL: u, Events: []string{"enter"}}
		if err := s.NormalizeAllowing(allow); err != nil {
			t.Errorf("%s refused though allowed: %v", u, err)
		}
	}

	// Through the store, as PUT /v1/webhooks/{id} saves it.
	rdb, _ := redistest.Mini(t)
	ctx := context.Background()
	_, err := webhook.NewStore(rdb).Put(ctx, &webhook.Subscription{ID: "meta", URL: "https://169.254.169.254/", Events: []string{"enter"}}, 0)
	var ve *rules.ValidationError
	if !errors.As(err, &ve) || ve.Faults[0].Field != "url" {
		t.Fatalf("metadata service saved: %v", err)
	}
	if _, err := webhook.NewStore(rdb).WithAllowNets(allow).Put(ctx, &webhook.Subscription{ID: "inside", URL: "https://10.0.0.7/h", Events: []string{"enter"}}, 0); err != nil {
		t.Fatalf("an allowed network refused: %v", err)
	}
}

func TestBlockedIP(t *testing.T) {
	for ip, blocked := range map[string]bool{
		"10.0.0.1": true, "127.0.0.1": true, "169.254.169.254": true, "100.127.255.255": true, "100.128.0.0": false,
		"172.31.255.255": true, "172.32.0.0": false, "8.8.8.8": false, "::1": true, "fe80::1": true, "2606:4700::1": false,
		"::ffff:192.168.0.1": true, "64:ff9b::a00:1": true, "64:ff9b::808:808": false, "2002:c0a8:1::": true, "2002:808:808::": false,
	} {
		if got := webhook.BlockedIP(net.ParseIP(ip)) != ""; got != blocked {
			t.Errorf("%s: blocked %v, want %v", ip, got, blocked)
		}
	}
}

// The default client checks the address a host name resolves to when it
// dials: a name that resolves into a private network is refused, though
// its URL passed validation; the loopback host named as such is not
// (development), a name resolving to it is; the allow-list lets a
// network in.
func TestDialerRefusesPrivateAddresses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	restore := webhook.SetLookup(func(_ context.Context, host string) ([]net.IPAddr, error) {
		switch host {
		case "localhost":
			return []net.IPAddr{{IP: net.ParseIP("127.0.0.1")}}, nil
		case "rebound.example.test":
			return []net.IPAddr{{IP: net.ParseIP("127.0.0.1")}}, nil
		case "crm.example.test":
			return []net.IPAddr{{IP: net.ParseIP("10.0.0.7")}}, nil
		case "metadata.example.test":
			return []net.IPAddr{{IP: net.ParseIP("169.254.169.254")}, {IP: net.ParseIP("fd00:ec2::254")}}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	})
	defer restore()
	ctx := context.Background()
	dial := func(allow []*net.IPNet, addr string) error {
		c, err := webhook.DialGuarded(ctx, allow, addr)
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(nil, "127.0.0.1:"+port); err != nil {
		t.Errorf("the loopback host: %v", err)
	}
	if err := dial(nil, "localhost:"+port); err != nil {
		t.Errorf("localhost: %v", err)
	}
	for _, host := range []string{"rebound.example.test", "crm.example.test", "metadata.example.test"} {
		if err := dial(nil, host+":"+port); !errors.Is(err, webhook.ErrRefusedAddress) {
			t.Errorf("%s: %v, want refused", host, err)
		}
	}
	if err := dial(cidrs(t, "127.0.0.0/8"), "rebound.example.test:"+port); err != nil {
		t.Errorf("an allowed network refused: %v", err)
	}

	// A delivery to a name that resolves into a private network fails
	// without a connection, and is given up as any failure is.
	e := newEnv(t, srv.Client(t))
	s := &webhook.Subscription{ID: "crm", URL: "https://crm.example.test/hook", Events: []string{"enter"}, Enabled: true}
	if _, err := e.store.Put(ctx, s, 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the subscription live", func() bool { snap := e.live.Current(); return snap != nil && snap.Subs["crm"] != nil })
	cfg := testConfig()
	cfg.MaxAge = 300 * time.Millisecond
	d, _ := e.deliver(t, cfg)
	e.emitSeq(t, []string{"anna"}, 1, webhook.TypeEnter)
	eventually(t, "a dead letter", func() bool { _, n, _ := e.store.DeadLetters(ctx, "crm", 0, 1); return n == 1 })
	dead, _, _ := e.store.DeadLetters(ctx, "crm", 0, 1)
	if h := d.Health()["crm"]; !strings.Contains(h.LastError, "10.0.0.7") || !strings.Contains(dead[0].LastError, "refused") || dead[0].LastStatus != 0 {
		t.Errorf("last error %q, dead letter %+v", h.LastError, dead[0])
	}
}
