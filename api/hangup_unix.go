//go:build unix

package api

import (
	"net"
	"syscall"
)

// hungUp reports whether the client has closed its side of conn (or reset
// it), by a peek at the socket that neither waits nor takes a byte: a
// client that waits for its answer, or has sent the next request, has not.
// A conn that is no socket (fiber's app.Test) has not either.
func hungUp(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	closed := true // when the peek cannot run, the connection is past use
	var b [1]byte
	_ = raw.Read(func(fd uintptr) bool {
		for {
			n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
			if err == syscall.EINTR {
				continue
			}
			switch {
			case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
				// Go's poller keeps the socket from blocking: nothing was
				// sent since, and the side is open.
				closed = false
			case err != nil:
				closed = true // reset
			default:
				closed = n == 0 // 0: the end of the stream; 1: a byte sent since
			}
			return true
		}
	})
	return closed
}
