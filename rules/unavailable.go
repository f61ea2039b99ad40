package rules

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// ErrUnavailable marks a failure of Redis that is neither the request's
// fault nor a bug: Redis is down, hangs, is loading its data or failing
// over, or did not answer within the request's deadline. The same call
// may succeed later; the API answers 503. engine.ErrUnavailable is this
// value, so the catalog, the customers, the ledger and the engine report
// it alike.
var ErrUnavailable = errors.New("unavailable")

// RedisErr is err, the failure of a Redis call doing what, wrapped once
// at the repository's boundary: marked ErrUnavailable when Redis could
// not answer, and plainly otherwise (a script's runtime error, an answer
// of the wrong type: a bug, which the API answers 500). Callers handle
// redis.Nil, which is an answer, before.
func RedisErr(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("%s: %w", what, err) // marked already, further in
	}
	if unavailable(err) {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// busyPrefixes begin the errors of a Redis that is there but cannot serve
// now: loading its data set, a cluster without a master for the slot or
// in the middle of moving it, a replica cut off from its master, a master
// written through after it became a replica, too many clients, a script
// running past its limit.
var busyPrefixes = []string{"LOADING ", "CLUSTERDOWN ", "TRYAGAIN ", "MASTERDOWN ", "READONLY ", "NOREPLICAS ",
	"BUSY ", "max number of clients reached"}

// unavailable tells whether err means Redis could not answer: the
// network (refused, reset, closed, timed out), the pool (no connection in
// time), the request's deadline or its caller gone (nothing is wrong with
// the request), or a Redis that says it cannot serve now.
func unavailable(err error) bool {
	if errors.Is(err, redis.Nil) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	for _, target := range []error{
		context.DeadlineExceeded, context.Canceled, os.ErrDeadlineExceeded,
		io.EOF, io.ErrUnexpectedEOF, syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EPIPE,
		redis.ErrPoolTimeout, redis.ErrPoolExhausted, redis.ErrClosed,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	for _, p := range busyPrefixes {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}
