package rules

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// replyError is an error reply of Redis, as go-redis gives it.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

// A Redis that could not answer is ErrUnavailable (503); an answer that
// shows a bug, or no answer at all (redis.Nil), is not.
func TestRedisErr(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &net.AddrError{Err: "connection refused"}}
	tests := []struct {
		name        string
		err         error
		unavailable bool
	}{
		{"connection refused", refused, true},
		{"connection reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"connection closed", io.EOF, true},
		{"read timeout", &net.OpError{Op: "read", Net: "tcp", Err: timeoutError{}}, true},
		{"request deadline", context.DeadlineExceeded, true},
		{"caller gone", context.Canceled, true},
		{"pool timeout", redis.ErrPoolTimeout, true},
		{"client closed", redis.ErrClosed, true},
		{"loading", replyError("LOADING Redis is loading the dataset in memory"), true},
		{"cluster down", replyError("CLUSTERDOWN The cluster is down"), true},
		{"slot moving", replyError("TRYAGAIN Multiple keys request during rehashing of slot"), true},
		{"replica cut off", replyError("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."), true},
		{"written to a replica", replyError("READONLY You can't write against a read only replica."), true},
		{"script past its limit", replyError("BUSY Redis is busy running a script."), true},
		{"too many clients", replyError("ERR max number of clients reached"), true},
		{"marked already", fmt.Errorf("%w: redeem: x", ErrUnavailable), true},
		{"no such key", redis.Nil, false},
		{"script error", replyError("ERR user_script:3: Script attempted to access nonexistent global variable 'x'"), false},
		{"wrong type", replyError("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
		{"group exists", replyError("BUSYGROUP Consumer Group name already exists"), false},
		{"decode", errors.New("invalid character 'x' looking for beginning of value"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := RedisErr("read x", tc.err)
			if got := errors.Is(err, ErrUnavailable); got != tc.unavailable {
				t.Errorf("%v: unavailable %v, want %v", err, got, tc.unavailable)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("%v does not wrap %v", err, tc.err)
			}
		})
	}
	if RedisErr("read x", nil) != nil {
		t.Error("no error became one")
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// A bulk write's batch has the request's Redis budget, and the time its
// documents take on a slow link: a batch of large profiles is not cut
// short by a healthy but distant Redis.
func TestBatchTimeoutFor(t *testing.T) {
	for _, tt := range []struct {
		bytes int
		want  time.Duration
	}{{0, 500 * time.Millisecond}, {8 << 20, 1500 * time.Millisecond}, {80 << 20, 10500 * time.Millisecond}} {
		if got := BatchTimeoutFor(tt.bytes); got != tt.want {
			t.Errorf("BatchTimeoutFor(%d) = %v, want %v", tt.bytes, got, tt.want)
		}
	}
}
