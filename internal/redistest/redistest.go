// Package redistest gives tests a Redis to run against: a real
// redis-server process on loopback, started per test package and stopped
// with it, or the embedded miniredis. Tests run against both, because
// miniredis differs from Redis in places.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Server is a redis-server process owned by a test package.
type Server struct {
	Addr string
	Port int
	cmd  *exec.Cmd
	dir  string
	args []string // to start it again, the same
}

// Start runs redis-server on a free loopback port, without persistence,
// with any further settings given as redis-server arguments. It fails
// when redis-server is not installed: `make test` installs it.
func Start(settings ...string) (*Server, error) {
	s, err := prepare(settings...)
	if err != nil {
		return nil, err
	}
	if err := s.start(); err != nil {
		return nil, err
	}
	if err := s.waitUp(); err != nil {
		return nil, err
	}
	return s, nil
}

// freePort picks a free loopback port; for a cluster node, one whose bus
// port (10,000 above) is free too.
func freePort(cluster bool) (int, error) {
	for attempt := 0; attempt < 100; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		if !cluster {
			l.Close()
			return port, nil
		}
		if port+10000 <= 65535 {
			if bus, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+10000)); err == nil {
				bus.Close()
				l.Close()
				return port, nil
			}
		}
		l.Close()
		// An ephemeral port is often too high for a bus port: try below.
		for p := 20000 + rand.IntN(20000); p < 45000; p += 7 {
			a, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				continue
			}
			b, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+10000))
			a.Close()
			if err == nil {
				b.Close()
				return p, nil
			}
		}
	}
	return 0, fmt.Errorf("no free port pair for a cluster node")
}

// prepare picks a port and a folder for a server, not started yet.
func prepare(settings ...string) (*Server, error) {
	cluster := slices.Contains(settings, "--cluster-enabled")
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, fmt.Errorf("redis-server not found: run `make test`, which installs it, or apt-get install redis-server")
	}
	dir, err := os.MkdirTemp("", "nearcast-redis-")
	if err != nil {
		return nil, err
	}
	port, err := freePort(cluster)
	if err != nil {
		return nil, err
	}
	args := []string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log")}
	return &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), Port: port, dir: dir, args: append(args, settings...)}, nil
}

func (s *Server) start() error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return err
	}
	s.cmd = exec.Command(bin, s.args...)
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	return nil
}

// Kill stops the process at once (SIGKILL), as a crash would, keeping its
// folder: with persistence on, Restart finds the data again.
func (s *Server) Kill() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}

// Pause stops the process where it is (SIGSTOP), as a Redis that hangs:
// connections are still accepted by the kernel and writes still land in
// its buffers, but nothing is answered until Resume.
func (s *Server) Pause() error {
	return s.cmd.Process.Signal(syscall.SIGSTOP)
}

// Resume lets a paused process go on (SIGCONT).
func (s *Server) Resume() error {
	return s.cmd.Process.Signal(syscall.SIGCONT)
}

// Restart starts the process again on the same port and folder.
func (s *Server) Restart() error {
	if err := s.start(); err != nil {
		return err
	}
	return s.waitUp()
}

// waitUp waits until the server answers.
func (s *Server) waitUp() error {
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("redis-server did not answer on %s: %v (%s)", s.Addr, err, s.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) logTail() string {
	f, err := os.Open(filepath.Join(s.dir, "redis.log"))
	if err != nil {
		return "no log"
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 5 {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, " | ")
}

// Stop ends the process and removes its folder.
func (s *Server) Stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
	os.RemoveAll(s.dir)
}

// Client returns a client on database db of the server, flushed first,
// closed when the test ends. Tests of one package can use distinct dbs.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr})
	if err := rdb.FlushAll(context.Background()).Err(); err != nil {
		t.Fatalf("flush redis: %v", err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// Mini returns a client on a fresh miniredis, closed when the test ends.
func Mini(t testing.TB) (*redis.Client, *miniredis.Miniredis) {
	t.Helper()
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return rdb, m
}

// Backend names a Redis a test runs against.
type Backend struct {
	Name string
	New  func(t testing.TB) redis.UniversalClient
}

// Backends lists miniredis and, when srv is not nil, the real server;
// under `make cluster-test` (NEARCAST_TEST_CLUSTER=1) also a Redis
// Cluster of six local processes, started by Main.
func Backends(srv *Server) []Backend {
	out := []Backend{{Name: "miniredis", New: func(t testing.TB) redis.UniversalClient { c, _ := Mini(t); return c }}}
	if srv != nil {
		out = append(out, Backend{Name: "redis-server", New: func(t testing.TB) redis.UniversalClient { return srv.Client(t) }})
	}
	if shared != nil {
		out = append(out, Backend{Name: "redis-cluster", New: func(t testing.TB) redis.UniversalClient { return shared.Client(t) }})
	}
	return out
}

// shared is the package's cluster under `make cluster-test`.
var shared *Cluster

// SharedCluster is the cluster Main started for the package, or nil when
// the tests run without one.
func SharedCluster() *Cluster { return shared }

// WantCluster tells whether the tests run against a Redis Cluster too.
func WantCluster() bool { return os.Getenv("NEARCAST_TEST_CLUSTER") == "1" }

// Main runs a test package with a redis-server started for it (and a
// cluster, when WantCluster); m.Run's tests find the server through the
// returned pointer. It exits the process.
func Main(m *testing.M, srv **Server) {
	s, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "redistest:", err)
		os.Exit(1)
	}
	*srv = s
	if WantCluster() {
		if shared, err = StartCluster(); err != nil {
			s.Stop()
			fmt.Fprintln(os.Stderr, "redistest:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	s.Stop()
	if shared != nil {
		shared.Stop()
	}
	os.Exit(code)
}

// OneMinute waits, when less than need is left of the wall clock's
// current minute, for the next minute to begin. Call limits are counted
// per minute of the server's clock: a test that makes a limit's calls and
// one more, on the wall clock, needs them all to fall in one minute, or
// the last is rightly let through.
func OneMinute(t testing.TB, need time.Duration) {
	t.Helper()
	now := time.Now()
	if left := now.Truncate(time.Minute).Add(time.Minute).Sub(now); left < need {
		t.Logf("waiting %v for the next minute, so that the calls counted fall in one", left.Round(time.Millisecond))
		time.Sleep(left + 20*time.Millisecond)
	}
}
