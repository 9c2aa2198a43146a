package loadgen

import (
	"context"
	"fmt"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// MeasureClient returns a client for measurement (watcher, prober, recovery probes): one RPC per
// attempt, and a reconnect backoff capped at 100ms, so that what is measured is etcd, not a client
// sleeping in gRPC's default backoff (up to 120s) after a member came back.
func MeasureClient(endpoints []string) (*clientv3.Client, error) {
	return MeasureClientVia(endpoints, nil)
}

// MeasureClientVia is MeasureClient reaching the members through conn (nil: plain TCP).
func MeasureClientVia(endpoints []string, conn *Conn) (*clientv3.Client, error) {
	opts := []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 100 * time.Millisecond},
		MinConnectTimeout: 500 * time.Millisecond,
	})}
	c, err := conn.newClient(clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          time.Second,
		DialKeepAliveTime:    10 * time.Second, // not below etcd's grpc-keepalive-min-time (5s), or etcd closes the connection
		DialKeepAliveTimeout: 3 * time.Second,
		MaxUnaryRetries:      1,
		Logger:               zap.NewNop(),
		DialOptions:          opts,
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to %v: %w", endpoints, err)
	}
	return c, nil
}

// MemberStatus is one answer of a member to Status.
type MemberStatus struct {
	Name    string
	ID      uint64
	Leader  uint64 // 0: the member knows no leader
	Term    uint64
	Applied uint64
	Errors  []string  // what the member reports wrong, its alarms among them ("... alarm:NOSPACE")
	At      time.Time // when the answer arrived
}

// LeaderChange is a new leader seen in a newer term.
type LeaderChange struct {
	At               time.Time
	From, To         string
	FromTerm, ToTerm uint64
	ReportedBy       string
}

// Watcher polls Status on every member every Interval (10ms) with a short timeout (every
// IdleInterval between faults with nothing suspected: see Monitor), keeps the latest answer of each,
// reports leader changes and feeds the failover monitor.
type Watcher struct {
	Interval time.Duration
	Timeout  time.Duration
	mon      *Monitor
	onChange func(LeaderChange)

	names   []string
	clients []*clientv3.Client

	mu      sync.Mutex
	latest  map[string]MemberStatus
	idName  map[uint64]string
	leader  uint64
	term    uint64
	changes []LeaderChange
}

// NewWatcher connects one client per member (name -> client URL), reached through conn (nil: plain TCP).
func NewWatcher(members map[string]string, order []string, mon *Monitor, onChange func(LeaderChange), conn *Conn) (*Watcher, error) {
	w := &Watcher{Interval: 10 * time.Millisecond, Timeout: 100 * time.Millisecond, mon: mon, onChange: onChange,
		latest: map[string]MemberStatus{}, idName: map[uint64]string{}}
	for _, name := range order {
		c, err := MeasureClientVia([]string{members[name]}, conn)
		if err != nil {
			w.Close()
			return nil, err
		}
		w.names = append(w.names, name)
		w.clients = append(w.clients, c)
	}
	return w, nil
}

// Close closes the clients.
func (w *Watcher) Close() {
	for _, c := range w.clients {
		_ = c.Close()
	}
}

// Run polls until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range w.names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.poll(ctx, i)
		}()
	}
	wg.Wait()
}

func (w *Watcher) poll(ctx context.Context, i int) {
	name, c := w.names[i], w.clients[i]
	timer := time.NewTimer(w.Interval)
	defer timer.Stop()
	for {
		start := time.Now()
		sctx, cancel := context.WithTimeout(ctx, w.Timeout)
		resp, err := Status(sctx, c)
		cancel()
		if err == nil {
			w.observe(MemberStatus{Name: name, ID: resp.Header.MemberId, Leader: resp.Leader, Term: resp.RaftTerm,
				Applied: resp.RaftAppliedIndex, Errors: resp.Errors, At: time.Now()})
		} else if ctx.Err() == nil {
			w.mon.Observe(0, true) // a member that does not answer: look closer
		}
		// Every Interval from the last poll's start; between faults, with nothing suspected, every
		// IdleInterval, woken at once by a suspicion (see Monitor).
		wake := w.mon.Wake()
		every := w.Interval
		if !w.mon.Fast(time.Now()) {
			every = max(w.Interval, IdleInterval)
		}
		timer.Reset(max(0, every-time.Since(start)))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-wake:
		}
	}
}

func (w *Watcher) observe(st MemberStatus) {
	w.mu.Lock()
	w.latest[st.Name] = st
	w.idName[st.ID] = st.Name
	var change *LeaderChange
	if st.Leader != 0 && st.Term > w.term {
		if w.leader != 0 {
			change = &LeaderChange{At: st.At, From: w.idName[w.leader], To: w.nameOf(st.Leader), FromTerm: w.term, ToTerm: st.Term, ReportedBy: st.Name}
			w.changes = append(w.changes, *change)
		}
		w.leader, w.term = st.Leader, st.Term
	}
	w.mu.Unlock()
	if w.mon != nil {
		w.mon.status(st, w.NameOf)
	}
	if change != nil && w.onChange != nil {
		w.onChange(*change)
	}
}

func (w *Watcher) nameOf(id uint64) string {
	if n, ok := w.idName[id]; ok {
		return n
	}
	return fmt.Sprintf("%x", id)
}

// NameOf maps a member ID to its name (once the member has answered).
func (w *Watcher) NameOf(id uint64) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nameOf(id)
}

// Leader returns the newest leader seen and its term.
func (w *Watcher) Leader() (string, uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.leader == 0 {
		return "", 0
	}
	return w.nameOf(w.leader), w.term
}

// Latest returns the newest answer of a member.
func (w *Watcher) Latest(name string) (MemberStatus, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	st, ok := w.latest[name]
	return st, ok
}

// Changes returns the leader changes seen since Run started, after time from.
func (w *Watcher) Changes(from time.Time) []LeaderChange {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []LeaderChange
	for _, c := range w.changes {
		if !c.At.Before(from) {
			out = append(out, c)
		}
	}
	return out
}

// Status asks the member behind a single-endpoint client for its status over the client's own
// connection. (clientv3's Maintenance.Status dials a new connection for every call: at 200 polls a
// second per member that churn cost more CPU than the load itself.)
func Status(ctx context.Context, c *clientv3.Client) (*pb.StatusResponse, error) {
	return pb.NewMaintenanceClient(c.ActiveConnection()).Status(ctx, &pb.StatusRequest{})
}
