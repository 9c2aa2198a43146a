package reports

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"
)

// Event is one line of events.jsonl: a fault step, a leader change, a phase change, a note.
type Event struct {
	Time   time.Time      `json:"time"`
	T      float64        `json:"t"` // seconds since the load started (negative before it)
	Kind   string         `json:"kind"`
	Fields map[string]any `json:"fields,omitempty"`
}

// EventLog appends events to events.jsonl as they happen: each event is one write(2) of a whole line,
// so a crash of the harness loses nothing already logged.
type EventLog struct {
	mu   sync.Mutex
	f    *os.File
	zero time.Time
	err  error
}

// OpenEventLog creates (or appends to) a JSONL event log.
func OpenEventLog(path string) (*EventLog, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening event log: %w", err)
	}
	return &EventLog{f: f}, nil
}

// SetZero sets the moment from which T is counted.
func (l *EventLog) SetZero(t time.Time) {
	l.mu.Lock()
	l.zero = t
	l.mu.Unlock()
}

// Log appends an event; fields are key, value pairs. The first write error is kept and returned by Close.
func (l *EventLog) Log(at time.Time, kind string, kv ...any) {
	if l == nil {
		return
	}
	ev := Event{Time: at.UTC(), Kind: kind}
	if len(kv) > 0 {
		ev.Fields = make(map[string]any, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			ev.Fields[fmt.Sprint(kv[i])] = kv[i+1]
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.zero.IsZero() {
		ev.T = at.Sub(l.zero).Seconds()
	}
	b, err := json.Marshal(ev)
	if err == nil {
		_, err = l.f.Write(append(b, '\n'))
	}
	if err != nil && l.err == nil {
		l.err = fmt.Errorf("writing event log: %w", err)
	}
}

// Close closes the log and returns the first write error.
func (l *EventLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.f.Close(); err != nil && l.err == nil {
		l.err = err
	}
	return l.err
}
