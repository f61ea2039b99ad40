// Package luatest calls a Lua script on a test's Redis and checks its
// reply and its effects: what the script tests of engine and rules share.
package luatest

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Env is a subtest's Redis, with the checks the cases share.
type Env struct {
	T   *testing.T
	Ctx context.Context
	RDB redis.UniversalClient
}

// New is the Env of t on rdb.
func New(t *testing.T, rdb redis.UniversalClient) Env { return Env{T: t, Ctx: t.Context(), RDB: rdb} }

// Do runs a command that sets up a case.
func (e Env) Do(args ...any) {
	e.T.Helper()
	if err := e.RDB.Do(e.Ctx, args...).Err(); err != nil {
		e.T.Fatalf("%v: %v", args, err)
	}
}

// Reply runs a script, failing on an error.
func (e Env) Reply(s *redis.Script, keys []string, args ...any) any {
	e.T.Helper()
	v, err := s.Run(e.Ctx, e.RDB, keys, args...).Result()
	if err != nil {
		e.T.Fatalf("script %v %v: %v", keys, args, err)
	}
	return v
}

// Slice runs a script whose reply is an array.
func (e Env) Slice(s *redis.Script, keys []string, args ...any) []any {
	e.T.Helper()
	v := e.Reply(s, keys, args...)
	arr, ok := v.([]any)
	if !ok {
		e.T.Fatalf("reply %#v, want an array", v)
	}
	return arr
}

// Strs runs a script whose reply is an array of strings.
func (e Env) Strs(s *redis.Script, keys []string, args ...any) []string {
	e.T.Helper()
	return elements[string](e, e.Slice(s, keys, args...), "a string")
}

// Ints runs a script whose reply is an array of integers.
func (e Env) Ints(s *redis.Script, keys []string, args ...any) []int64 {
	e.T.Helper()
	return elements[int64](e, e.Slice(s, keys, args...), "an integer")
}

func elements[T any](e Env, arr []any, want string) []T {
	e.T.Helper()
	out := make([]T, len(arr))
	for i, x := range arr {
		v, ok := x.(T)
		if !ok {
			e.T.Fatalf("reply %#v: element %d is %T, want %s", arr, i, x, want)
		}
		out[i] = v
	}
	return out
}

// Num runs a script whose reply is an integer.
func (e Env) Num(s *redis.Script, keys []string, args ...any) int64 {
	e.T.Helper()
	v := e.Reply(s, keys, args...)
	n, ok := v.(int64)
	if !ok {
		e.T.Fatalf("reply %#v, want an integer", v)
	}
	return n
}

// Str runs a script whose reply is a string.
func (e Env) Str(s *redis.Script, keys []string, args ...any) string {
	e.T.Helper()
	v := e.Reply(s, keys, args...)
	str, ok := v.(string)
	if !ok {
		e.T.Fatalf("reply %#v, want a string", v)
	}
	return str
}

// NilReply runs a script whose reply must be nil.
func (e Env) NilReply(what string, s *redis.Script, keys []string, args ...any) {
	e.T.Helper()
	v, err := s.Run(e.Ctx, e.RDB, keys, args...).Result()
	if err != redis.Nil {
		e.T.Errorf("%s: reply %#v (%v), want nil", what, v, err)
	}
}

// Eq checks got against want.
func (e Env) Eq(what string, got, want any) {
	e.T.Helper()
	if !reflect.DeepEqual(got, want) {
		e.T.Errorf("%s:\n got %#v\nwant %#v", what, got, want)
	}
}

// Get, HGet and HGetAll read what a script wrote.
func (e Env) Get(key string) string { return e.RDB.Get(e.Ctx, key).Val() }

func (e Env) HGet(key, field string) string { return e.RDB.HGet(e.Ctx, key, field).Val() }

func (e Env) HGetAll(key string) map[string]string {
	e.T.Helper()
	m, err := e.RDB.HGetAll(e.Ctx, key).Result()
	if err != nil {
		e.T.Fatalf("hgetall %s: %v", key, err)
	}
	return m
}

// Absent checks that keys do not exist.
func (e Env) Absent(keys ...string) {
	e.T.Helper()
	for _, k := range keys {
		if n := e.RDB.Exists(e.Ctx, k).Val(); n != 0 {
			e.T.Errorf("key %s exists, want none", k)
		}
	}
}

// TTL checks that a key lives at most want, and not a minute less (the
// time the test takes, and a clock read separately).
func (e Env) TTL(key string, want time.Duration) {
	e.T.Helper()
	ms, err := e.RDB.Do(e.Ctx, "pttl", key).Int64()
	if err != nil {
		e.T.Fatalf("pttl %s: %v", key, err)
	}
	e.TTLMs(key, ms, want)
}

// TTLString checks a TTL a script answered, in ms, as TTL does.
func (e Env) TTLString(what, ms string, want time.Duration) {
	e.T.Helper()
	var n int64
	if _, err := fmt.Sscan(ms, &n); err != nil {
		e.T.Errorf("%s: %q is not a number of ms", what, ms)
		return
	}
	e.TTLMs(what, n, want)
}

// TTLMs checks ms as TTL does.
func (e Env) TTLMs(what string, ms int64, want time.Duration) {
	e.T.Helper()
	if got := time.Duration(ms) * time.Millisecond; got <= 0 || got > want || got < want-time.Minute {
		e.T.Errorf("%s lives %v (pttl %d), want %v", what, got, ms, want)
	}
}

// NoTTL checks that a key exists and does not expire.
func (e Env) NoTTL(key string) {
	e.T.Helper()
	if ms := e.RDB.Do(e.Ctx, "pttl", key).Val(); ms != int64(-1) {
		e.T.Errorf("key %s: pttl %v, want -1 (no TTL)", key, ms)
	}
}
