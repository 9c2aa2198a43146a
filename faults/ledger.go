package faults

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"
)

// Ledger steps.
const (
	StepInject     = "inject"      // written and synced before the fault is applied
	StepApplied    = "applied"     // the fault took effect on every member
	StepHealed     = "healed"      // healed and proven healed
	StepHealFailed = "heal-failed" // a heal was tried and failed; chaos heal must finish it
)

// LedgerEntry is one line of ledger.jsonl.
type LedgerEntry struct {
	Time    time.Time `json:"time"`
	Fault   int       `json:"fault"`
	Action  string    `json:"action"`
	Step    string    `json:"step"`
	Members []string  `json:"members"`
	PIDs    []int     `json:"pids,omitempty"`
	Network string    `json:"network,omitempty"` // network faults: the backend
	Links   []string  `json:"links,omitempty"`   // and the links, as from->to
	Shape   *Shape    `json:"shape,omitempty"`
	By      string    `json:"by,omitempty"`
	Error   string    `json:"error,omitempty"`
}

// Ledger is the run folder's fault ledger: every line is synced to disk before Append returns, so a
// harness killed at any instant leaves a record of what it may have left applied.
type Ledger struct {
	mu sync.Mutex
	f  *os.File
}

// OpenLedger opens (appending) the ledger at path.
func OpenLedger(path string) (*Ledger, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the fault ledger: %w", err)
	}
	return &Ledger{f: f}, nil
}

// Append writes one entry and syncs it.
func (l *Ledger) Append(e LedgerEntry) error {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("writing the fault ledger: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("syncing the fault ledger: %w", err)
	}
	return nil
}

// Close closes the ledger file.
func (l *Ledger) Close() error { return l.f.Close() }

// ReadLedger reads every entry of a ledger file.
func ReadLedger(path string) ([]LedgerEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the fault ledger: %w", err)
	}
	defer f.Close()
	var out []LedgerEntry
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		var e LedgerEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return out, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// Unhealed returns the last entry of each fault that was injected but not healed.
func Unhealed(entries []LedgerEntry) []LedgerEntry {
	last := map[int]LedgerEntry{}
	var order []int
	for _, e := range entries {
		if _, ok := last[e.Fault]; !ok {
			order = append(order, e.Fault)
		}
		last[e.Fault] = e
	}
	var out []LedgerEntry
	for _, i := range order {
		if e := last[i]; e.Step != StepHealed {
			out = append(out, e)
		}
	}
	return out
}
