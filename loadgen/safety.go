package loadgen

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/reports"
)

// stampValue puts a write's id at the front of its value ("<16 hex digits>:"), keeping the value's
// size, so the final state tells which write left it.
func stampValue(id uint64, pad string) string {
	v := fmt.Sprintf("%016x:", id)
	if len(pad) > len(v) {
		v += pad[len(v):]
	}
	return v
}

// valueID reads the id stampValue wrote.
func valueID(v []byte) (uint64, bool) {
	if len(v) < 17 || v[16] != ':' {
		return 0, false
	}
	id, err := strconv.ParseUint(string(v[:16]), 16, 64)
	return id, err == nil
}

// write is one write to a key: a put (or txn, which puts) or a delete, with its invocation and,
// when acknowledged, its response time. A write whose outcome is unknown (it failed or timed out:
// it may have been applied) has no response: it may take effect at any time after its invocation.
type write struct {
	id       uint64
	del      bool
	inv, ret time.Time // ret zero: not yet returned, or unknown
	acked    bool
	done     bool
	// retried: acknowledged after attempts whose fate is unknown (they timed out or failed): an
	// earlier attempt may still take effect after the acknowledged one, at any time.
	retried bool
}

// SafetyLog keeps, per key, the writes that could still be the last one: a write is dropped only
// once an acknowledged write to the same key began after it was acknowledged, so memory stays
// bounded by the writes in flight. At the end, each key's value must come from one of them.
type SafetyLog struct {
	mu   sync.Mutex
	t0   time.Time
	keys map[int][]write
	// done remembers, for the report, when pruned writes were invoked and acknowledged.
	pruned map[uint64][2]time.Time
	// counts
	acked, unknown int64
}

// NewSafetyLog makes an empty log.
func NewSafetyLog() *SafetyLog {
	return &SafetyLog{t0: time.Now(), keys: map[int][]write{}, pruned: map[uint64][2]time.Time{}}
}

// Begin records a write's invocation.
func (s *SafetyLog) Begin(key int, id uint64, del bool) {
	s.mu.Lock()
	s.keys[key] = append(s.keys[key], write{id: id, del: del, inv: time.Now()})
	s.mu.Unlock()
}

// End records a write's outcome: acknowledged, or unknown; retried says earlier attempts of it
// failed with an unknown fate.
func (s *SafetyLog) End(key int, id uint64, acked, retried bool) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.keys[key]
	for i := range ws {
		if ws[i].id == id {
			ws[i].done, ws[i].acked, ws[i].retried = true, acked, retried
			if acked {
				ws[i].ret = now
				s.acked++
			} else {
				s.unknown++
			}
		}
	}
	kept := prune(append([]write(nil), ws...))
	if len(s.pruned) < 1<<20 {
		for _, w := range ws {
			if !containsID(kept, w.id) {
				s.pruned[w.id] = [2]time.Time{w.inv, w.ret}
			}
		}
	}
	s.keys[key] = kept
}

func containsID(ws []write, id uint64) bool {
	for _, w := range ws {
		if w.id == id {
			return true
		}
	}
	return false
}

// prune drops the writes an acknowledged write superseded: acknowledged before it was invoked.
func prune(ws []write) []write {
	var latestAckedInv time.Time
	for _, w := range ws {
		if w.acked && w.inv.After(latestAckedInv) {
			latestAckedInv = w.inv
		}
	}
	out := ws[:0]
	for _, w := range ws {
		if w.acked && !w.retried && w.ret.Before(latestAckedInv) {
			continue // an acknowledged write began after this one was acknowledged
		}
		out = append(out, w)
	}
	return out
}

// Final is a key's state at the end: absent, or present with the write id its value carries.
type Final struct {
	Present bool
	ID      uint64
	Foreign bool // the value is not one this load wrote
}

// Check holds the final state of every key against the log: a key's value must come from a write
// that could be last, and a key may be absent only if a delete could be last or no write to it
// was acknowledged. keyName names a key index for the report.
func (s *SafetyLog) Check(final func(key int) Final, keyName func(int) string) reports.Check {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := reports.Check{Name: "kv-safety", Status: reports.CheckPass,
		Note: "every acknowledged write is in the final state or was overwritten by a later acknowledged write; writes that failed or timed out may or may not have been applied"}
	checked, late := 0, 0
	var lateEx []string
	for key, ws := range s.keys {
		checked++
		f := final(key)
		var problem string
		switch {
		case f.Foreign:
			problem = "holds a value this load never wrote"
		case f.Present:
			found := false
			for _, w := range ws {
				if w.id == f.ID && !w.del {
					found = true
				}
			}
			if !found {
				when := ""
				if p, ok := s.pruned[f.ID]; ok {
					when = fmt.Sprintf(" (invoked %.3fs, acknowledged %.3fs)", p[0].Sub(s.t0).Seconds(), p[1].Sub(s.t0).Seconds())
				}
				problem = fmt.Sprintf("holds write %016x%s, which a later acknowledged write overwrote (candidates: %s)", f.ID, when, s.describe(ws))
			}
		default:
			deleteCould, ackedPut := false, false
			for _, w := range ws {
				deleteCould = deleteCould || w.del
				ackedPut = ackedPut || (w.acked && !w.del)
			}
			if !deleteCould && ackedPut {
				problem = fmt.Sprintf("is absent, but an acknowledged put could be last and no delete could (candidates: %s)", s.describe(ws))
			}
		}
		if f.Present && !f.Foreign {
			// A retried write whose value is last although an acknowledged write began after its own
			// acknowledgement: one of its earlier attempts took effect late. etcd broke nothing (that
			// attempt's fate was unknown), but the client's retry overwrote a later write.
			var latestAckedInv time.Time
			for _, w := range ws {
				if w.acked && w.inv.After(latestAckedInv) {
					latestAckedInv = w.inv
				}
			}
			for _, w := range ws {
				if w.id == f.ID && w.retried && w.acked && w.ret.Before(latestAckedInv) {
					late++
					if len(lateEx) < 10 {
						lateEx = append(lateEx, fmt.Sprintf("%s: a late attempt of retried write %016x (acknowledged %.3fs) overwrote a write acknowledged later", keyName(key), w.id, w.ret.Sub(s.t0).Seconds()))
					}
				}
			}
		}
		if problem != "" {
			c.Violations++
			if len(c.Examples) < 20 {
				c.Examples = append(c.Examples, keyName(key)+" "+problem)
			}
		}
	}
	c.Summary = fmt.Sprintf("%d keys checked: %d acknowledged writes, %d with unknown outcome; %d lost or stale", checked, s.acked, s.unknown, c.Violations)
	if late > 0 {
		c.Summary += fmt.Sprintf("; %d keys ended with a late duplicate of a retried write (client retries, not an etcd fault)", late)
		c.Examples = append(c.Examples, lateEx...)
	}
	if c.Violations > 0 {
		c.Status = reports.CheckFail
	}
	return c
}

func (s *SafetyLog) describe(ws []write) string {
	var parts []string
	for _, w := range ws {
		kind := "put"
		if w.del {
			kind = "delete"
		}
		state := "unknown"
		if w.acked {
			state = "acked"
		}
		parts = append(parts, fmt.Sprintf("%s %016x %s, invoked %.3fs", kind, w.id, state, w.inv.Sub(s.t0).Seconds()))
		if w.acked {
			parts[len(parts)-1] += fmt.Sprintf(", acknowledged %.3fs", w.ret.Sub(s.t0).Seconds())
		}
	}
	return strings.Join(parts, ", ")
}

// ReadFinal reads every key under prefix (linearizably, in pages) into a lookup for Check.
func ReadFinal(ctx context.Context, c *clientv3.Client, prefix string, keyIndex func(string) (int, bool)) (func(int) Final, error) {
	out := map[int]Final{}
	from := prefix
	end := clientv3.GetPrefixRangeEnd(prefix)
	for {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := c.Get(rctx, from, clientv3.WithRange(end), clientv3.WithLimit(1000))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("reading the final state of %s: %w", prefix, err)
		}
		for _, kv := range resp.Kvs {
			ki, ok := keyIndex(string(kv.Key))
			if !ok {
				continue
			}
			id, ok := valueID(kv.Value)
			out[ki] = Final{Present: true, ID: id, Foreign: !ok}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	return func(k int) Final { return out[k] }, nil
}

// KeyIndex maps a key of the load back to its index, for ReadFinal.
func (k *KV) KeyIndex(key string) (int, bool) {
	s, ok := strings.CutPrefix(key, k.cfg.KeyPrefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 0 && n < math.MaxInt32
}

// KeyName returns the key of an index.
func (k *KV) KeyName(i int) string { return k.keys[i] }

// Prefix is where the load writes.
func (k *KV) Prefix() string { return k.cfg.KeyPrefix }
