package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of six redis-server processes on loopback:
// three masters, each with one replica, as `redis-cli --cluster create`
// lays them out.
type Cluster struct {
	Nodes []*Server

	mu     sync.Mutex
	killed map[string]bool
	// whole: every master has its replica (none was killed, or the killed
	// one was revived); WaitHealthy waits for the replicas too.
	whole bool
}

// NodeTimeout is the cluster-node-timeout of a test cluster: a master
// that does not answer for this long is failed over by its replica.
const NodeTimeout = time.Second

// StartCluster starts six nodes and joins them into a cluster, waiting
// until every slot is served.
func StartCluster() (*Cluster, error) {
	if _, err := exec.LookPath("redis-cli"); err != nil {
		return nil, fmt.Errorf("redis-cli not found: run `make test`, which installs redis-server and its tools")
	}
	c := &Cluster{killed: map[string]bool{}, whole: true}
	for i := 0; i < 6; i++ {
		s, err := prepare("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", fmt.Sprint(NodeTimeout.Milliseconds()),
			// A replica takes over however long it was cut off from its master.
			"--cluster-replica-validity-factor", "0",
			// The commands a test sends to one node reach it even while a
			// part of the slots has no master, as during a failover.
			"--cluster-require-full-coverage", "no",
			"--appendonly", "yes", "--appendfsync", "always")
		if err == nil {
			err = s.start()
		}
		if err == nil {
			err = s.waitUp()
		}
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.Nodes = append(c.Nodes, s)
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		args = append(args, n.Addr)
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		c.Stop()
		return nil, fmt.Errorf("redis-cli --cluster create: %v: %s", err, out)
	}
	if err := c.WaitHealthy(30 * time.Second); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// Seeds are the nodes' addresses, comma-separated, as NEARCAST_REDIS_URL
// takes them.
func (c *Cluster) Seeds() string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return strings.Join(addrs, ",")
}

// NewClient returns a cluster client on the nodes, not flushed.
func (c *Cluster) NewClient() *redis.ClusterClient {
	return redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(c.Seeds(), ",")})
}

// Client returns a cluster client on the nodes, every master flushed
// first, closed when the test ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	rdb := c.NewClient()
	ctx := context.Background()
	err := rdb.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		return m.FlushAll(ctx).Err()
	})
	if err != nil {
		t.Fatalf("flush cluster: %v", err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// KillMasterOf kills (SIGKILL) the master that holds key, as a crash
// would, and returns it; its replica takes over after NodeTimeout.
func (c *Cluster) KillMasterOf(ctx context.Context, key string) (*Server, error) {
	rdb := c.NewClient()
	defer rdb.Close()
	m, err := rdb.MasterForKey(ctx, key)
	if err != nil {
		return nil, err
	}
	addr := m.Options().Addr
	for _, n := range c.Nodes {
		if n.Addr == addr {
			c.mu.Lock()
			c.killed[addr] = true
			c.whole = false
			c.mu.Unlock()
			n.Kill()
			return n, nil
		}
	}
	return nil, fmt.Errorf("no node of the cluster at %s", addr)
}

// WaitHealthy waits until every node still running says the cluster is
// ok and every slot has a running master (and, while no node is dead, a
// replica).
func (c *Cluster) WaitHealthy(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		if last = c.unhealthy(); last == "" {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the cluster did not become healthy in %s: %s", limit, last)
}

// unhealthy says what is wrong with the cluster, or "".
func (c *Cluster) unhealthy() string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.Nodes {
		if c.killed[n.Addr] {
			continue
		}
		rdb := redis.NewClient(&redis.Options{Addr: n.Addr})
		info, err := rdb.ClusterInfo(ctx).Result()
		var slots []redis.ClusterSlot
		if err == nil {
			slots, err = rdb.ClusterSlots(ctx).Result()
		}
		rdb.Close()
		if err != nil {
			return n.Addr + ": " + err.Error()
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return n.Addr + " says the cluster is not ok"
		}
		covered := 0
		for _, s := range slots {
			if len(s.Nodes) == 0 || c.killed[s.Nodes[0].Addr] {
				return fmt.Sprintf("%s still names a dead master for slots %d-%d", n.Addr, s.Start, s.End)
			}
			if c.whole && len(s.Nodes) < 2 {
				return fmt.Sprintf("%s names no replica for slots %d-%d yet", n.Addr, s.Start, s.End)
			}
			covered += s.End - s.Start + 1
		}
		if covered != 16384 {
			return fmt.Sprintf("%s serves %d of 16384 slots", n.Addr, covered)
		}
	}
	return ""
}

// Stop ends every node and removes their folders.
func (c *Cluster) Stop() {
	for _, n := range c.Nodes {
		n.Stop()
	}
}

// Keys lists the keys matching pattern on a Redis or on every master of
// a cluster (KEYS asks one node only).
func Keys(ctx context.Context, rdb redis.UniversalClient, pattern string) ([]string, error) {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return rdb.Keys(ctx, pattern).Result()
	}
	var mu sync.Mutex
	var all []string
	err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		keys, err := m.Keys(ctx, pattern).Result()
		mu.Lock()
		all = append(all, keys...)
		mu.Unlock()
		return err
	})
	return all, err
}

// Revive starts a killed node again; it rejoins the cluster (as the
// replica of the node that took over from it) and the cluster is waited
// for.
func (c *Cluster) Revive(n *Server) error {
	if err := n.Restart(); err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.killed, n.Addr)
	c.whole = len(c.killed) == 0
	c.mu.Unlock()
	return c.WaitHealthy(30 * time.Second)
}
