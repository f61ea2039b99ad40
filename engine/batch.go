package engine

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// batcher sends the Redis commands of concurrent pings to Redis together,
// in one pipeline, so that a busy server makes one round trip (one write
// and one read on each side of the connection) for many pings instead of
// one each: on loopback and on a network, the round trip's system calls
// cost more than the commands. A quiet server sends each ping's commands
// at once, alone. At most lanes pipelines are on the wire at a time;
// commands that come meanwhile wait for the next free lane, together.
type batcher struct {
	rdb   redis.UniversalClient
	lanes int

	mu    sync.Mutex
	queue []*batch
	busy  int // lanes on the wire
}

// batch is one caller's commands, sent together and in order. Batches
// are pooled (a ping makes one or two): done is a WaitGroup, which can be
// used again once waited for, and a caller's one or two commands are
// copied into the batch's own room.
type batch struct {
	ctx  context.Context
	cmds []redis.Cmder
	done sync.WaitGroup
	room [2]redis.Cmder
}

var batchPool = sync.Pool{New: func() any { return new(batch) }}

func newBatcher(rdb redis.UniversalClient, lanes int) *batcher {
	return &batcher{rdb: rdb, lanes: max(1, lanes)}
}

// do sends cmds, with whatever other commands are waiting, and returns
// when they have their answers; each command holds its own result or
// error. ctx's deadline bounds the wait: a pipeline is sent with the
// earliest deadline of the callers in it, so that none waits past its
// own, and a caller whose deadline passed while it queued is answered
// its context's error without sending anything.
func (b *batcher) do(ctx context.Context, cmds ...redis.Cmder) {
	w := batchPool.Get().(*batch)
	w.ctx, w.cmds = ctx, append(w.room[:0], cmds...)
	w.done.Add(1)
	b.mu.Lock()
	b.queue = append(b.queue, w)
	if b.busy >= b.lanes {
		// Every lane is on the wire; the first to come back takes us.
		b.mu.Unlock()
		w.release()
		return
	}
	b.busy++
	b.mu.Unlock()
	b.sendQueued()
	// What came while this lane was on the wire goes next, on this lane,
	// without holding up this caller, whose answer is in.
	b.mu.Lock()
	if len(b.queue) > 0 {
		b.mu.Unlock()
		go b.drain()
	} else {
		b.busy--
		b.mu.Unlock()
	}
	w.release()
}

// release waits until the batch's commands have their answers, then
// gives it back to the pool. (Not deferred: a panic while sending must
// not wait for a Done that will never come.)
func (w *batch) release() {
	w.done.Wait() // sendQueued is done with w
	clear(w.room[:])
	w.ctx, w.cmds = nil, nil
	batchPool.Put(w)
}

// drain sends the queue until it is empty, then frees its lane.
func (b *batcher) drain() {
	for {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.busy--
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		b.sendQueued()
	}
}

// sendQueued takes the whole queue and sends it as one pipeline.
func (b *batcher) sendQueued() {
	b.mu.Lock()
	ws := b.queue
	b.queue = nil
	b.mu.Unlock()
	var deadline time.Time
	live := ws[:0]
	for _, w := range ws {
		if err := w.ctx.Err(); err != nil {
			for _, c := range w.cmds {
				c.SetErr(err)
			}
			w.done.Done()
			continue
		}
		// The earliest, so that none waits past its own: callers that
		// queued while one pipeline was on the wire have deadlines close
		// together while Redis answers, and when it hangs, all fail.
		if d, ok := w.ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
			deadline = d
		}
		live = append(live, w)
	}
	if len(live) == 0 {
		return
	}
	// Not any caller's context: one that is cancelled (its client went
	// away) must not cut the others' commands short. Without a deadline,
	// the client's read and write timeouts bound it.
	ctx := context.Background()
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	pipe := b.rdb.Pipeline()
	for _, w := range live {
		for _, c := range w.cmds {
			_ = pipe.Process(ctx, c)
		}
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	for _, w := range live {
		w.done.Done()
	}
}

// evalCmd is a command that runs a loaded script (EVALSHA), to be sent
// through the batcher; on NOSCRIPT the caller runs the script itself,
// which loads it.
//
// The keys after the first go as pointers into keys, which go-redis writes
// as the strings they point to: a string put in an interface is copied
// to the heap, a pointer is not, and a ping's step has eight keys. The
// first goes as itself: a cluster client reads it for the slot.
func evalCmd(ctx context.Context, s *redis.Script, keys []string, args ...any) *redis.Cmd {
	a := make([]any, evalHead(keys), evalHead(keys)+len(args))
	return evalCmdIn(ctx, s, keys, append(a, args...))
}

// evalHead is how many of a script command's words come before its
// arguments: EVALSHA, the hash, the number of keys and the keys.
func evalHead(keys []string) int { return 3 + len(keys) }

// evalCmdIn is evalCmd on a command the caller built: its arguments
// after evalHead(keys) words, which evalCmdIn fills, so that a hot path
// builds the command in one slice. The keys may be strings into a buffer
// the caller uses again once the command is answered (observeCall):
// nothing here or behind it may keep them past that.
func evalCmdIn(ctx context.Context, s *redis.Script, keys []string, a []any) *redis.Cmd {
	a[0], a[1], a[2] = "evalsha", s.Hash(), len(keys)
	for i := range keys {
		if i == 0 {
			a[3] = keys[0]
		} else {
			a[3+i] = &keys[i]
		}
	}
	return redis.NewCmd(ctx, a...)
}

// runScript runs a script through the batcher, sending it whole (EVAL,
// which Redis keeps) when Redis does not have it yet.
func (b *batcher) runScript(ctx context.Context, s *redis.Script, keys []string, args ...any) *redis.Cmd {
	cmd := evalCmd(ctx, s, keys, args...)
	b.do(ctx, cmd)
	return orEval(ctx, b.rdb, cmd, s, keys, args...)
}

// orEval is cmd's answer, or, when Redis did not know the script (after
// a restart or a SCRIPT FLUSH), the answer of running it whole.
func orEval(ctx context.Context, rdb redis.Scripter, cmd *redis.Cmd, s *redis.Script, keys []string, args ...any) *redis.Cmd {
	if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
		return s.Eval(ctx, rdb, keys, args...)
	}
	return cmd
}

// scripted is a script's command to send through the batcher; its result
// runs the script whole when Redis did not have it.
type scripted struct {
	cmd  *redis.Cmd
	s    *redis.Script
	keys []string
	args []any
}

func newScripted(ctx context.Context, s *redis.Script, keys []string, args ...any) *scripted {
	return &scripted{cmd: evalCmd(ctx, s, keys, args...), s: s, keys: keys, args: args}
}

// result is the script's answer, once the command was sent.
func (x *scripted) result(ctx context.Context, rdb redis.Scripter) *redis.Cmd {
	x.cmd = orEval(ctx, rdb, x.cmd, x.s, x.keys, x.args...)
	return x.cmd
}

// run runs the script on its own, not through a batcher.
func (x *scripted) run(ctx context.Context, rdb redis.Scripter) *redis.Cmd {
	x.cmd = x.s.Run(ctx, rdb, x.keys, x.args...)
	return x.cmd
}
