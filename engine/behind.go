package engine

import (
	"context"
	"sync"
	"time"
)

// Work behind the answer. What a ping decided is in Redis once its
// customer's step has run: the answer need not wait for what follows, the
// announcement of an offer (its push into the outbox) with its funnel's
// counts, which go out right after it, in the next pipeline, and the
// counts of pings that reached no offer's step, which the replica's tally
// gathers for a while (funnel.go). A process
// that stops before they are sent leaves the offer's intent to a
// dispatcher, which announces it past its deadline (intent.go).
//
// Settled waits for the work of the pings answered before it was called,
// so that a reader of what the work writes (the funnel, the outbox) sees
// every ping this replica answered, and a process that stops first lets it
// finish.

// behindTimeout bounds the work behind an answer to a call without a
// deadline of its own (a call with one keeps it: see runBehind).
const behindTimeout = 5 * time.Second

// behind keeps the work running behind answers.
type behind struct {
	// gate, when set (tests only), is waited for before each piece of
	// work starts, so that a test can tell what a ping sent before its
	// answer from what it sent behind it, whatever the scheduler does.
	gate    func()
	mu      sync.Mutex
	next    uint64
	running map[uint64]chan struct{}
}

// start records a piece of work; done says it finished.
func (b *behind) start() (done func()) {
	b.mu.Lock()
	if b.running == nil {
		b.running = map[uint64]chan struct{}{}
	}
	id, ch := b.next, make(chan struct{})
	b.next++
	b.running[id] = ch
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		delete(b.running, id)
		b.mu.Unlock()
		close(ch)
	}
}

// wait waits for the work started before the call (not for work started
// since, which a busy replica never runs out of).
func (b *behind) wait(ctx context.Context) error {
	b.mu.Lock()
	chs := make([]chan struct{}, 0, len(b.running))
	for _, ch := range b.running {
		chs = append(chs, ch)
	}
	b.mu.Unlock()
	for _, ch := range chs {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// runBehind runs f after the answer, on a context that the end of the
// ping's request does not cancel, but with its deadline: the work behind
// an answer takes no longer than the answer might have, so that, Redis
// hanging, it holds up the pings behind it in the pipeline no longer
// than their own deadlines allow (batch.go sends a pipeline with its
// callers' earliest deadline).
func (e *Engine) runBehind(ctx context.Context, what string, f func(ctx context.Context) error) {
	done := e.behind.start()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(behindTimeout)
	}
	ctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	go func() {
		defer done()
		defer cancel()
		if e.behind.gate != nil {
			e.behind.gate()
		}
		if err := f(ctx); err != nil {
			e.log.Warn(what, "err", err)
		}
	}()
}

// runAfter runs f behind the answers, as runBehind does, once wait has
// passed or now is closed, on a context of its own (behindTimeout from
// then): what it writes gathers the work of many answers. done is its
// record in behind, which the caller took (behind.start) when it armed
// the work, before any answer that counts on it.
func (e *Engine) runAfter(done func(), now <-chan struct{}, wait time.Duration, what string, f func(ctx context.Context) error) {
	go func() {
		defer done()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-now:
			t.Stop()
		}
		if e.behind.gate != nil {
			e.behind.gate()
		}
		ctx, cancel := context.WithTimeout(context.Background(), behindTimeout)
		defer cancel()
		if err := f(ctx); err != nil {
			e.log.Warn(what, "err", err)
		}
	}()
}

// Settled waits until the work behind every answer given before the call
// is done: the offers announced, the funnels counted (the tally written
// at once).
func (e *Engine) Settled(ctx context.Context) error {
	e.tally.flushNow()
	return e.behind.wait(ctx)
}
