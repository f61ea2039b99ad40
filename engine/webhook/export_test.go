package webhook

import (
	"context"
	"net"
	"time"
)

// SetLookup makes the Deliverers made from now on resolve receivers' host
// names with f, until restore.
func SetLookup(f func(ctx context.Context, host string) ([]net.IPAddr, error)) (restore func()) {
	old := lookupIPAddr
	lookupIPAddr = f
	return func() { lookupIPAddr = old }
}

// DialGuarded dials addr as the default Client does, with the allow-list
// allow.
func DialGuarded(ctx context.Context, allow []*net.IPNet, addr string) (net.Conn, error) {
	return newDialGuard(allow, time.Second).DialContext(ctx, "tcp", addr)
}

// BlockedIP is blockedIP.
func BlockedIP(ip net.IP) string { return blockedIP(ip) }
