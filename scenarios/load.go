package scenarios

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

//go:embed builtin/*.yaml
var builtinFS embed.FS

// Builtin is an embedded scenario's name and one-line description.
type Builtin struct {
	Name        string
	Description string
}

// Builtins lists the embedded scenarios, sorted by name.
func Builtins() ([]Builtin, error) {
	entries, err := builtinFS.ReadDir("builtin")
	if err != nil {
		return nil, fmt.Errorf("reading embedded scenarios: %w", err)
	}
	var out []Builtin
	for _, e := range entries {
		// Listed without validating: a built-in may need a file of this machine (rolling-upgrade:
		// the previous etcd release), which running it asks for.
		name := strings.TrimSuffix(e.Name(), ".yaml")
		data, err := builtinFS.ReadFile("builtin/" + e.Name())
		if err != nil {
			return nil, err
		}
		var head struct {
			Description string `yaml:"description"`
		}
		if err := yaml.Unmarshal(data, &head); err != nil {
			return nil, fmt.Errorf("builtin:%s: %w", name, err)
		}
		out = append(out, Builtin{Name: name, Description: head.Description})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// LoadBuiltin parses an embedded scenario by name.
func LoadBuiltin(name string, sets []string) (*Scenario, error) {
	data, err := builtinFS.ReadFile("builtin/" + name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("no built-in scenario %q (chaos list shows them)", name)
	}
	return Parse("builtin:"+name, data, sets)
}

// Load reads a scenario from a file path, or from the built-in library when arg names no file and has
// no path separator or .yaml suffix.
func Load(arg string, sets []string) (*Scenario, error) {
	data, err := os.ReadFile(arg)
	if err != nil {
		if os.IsNotExist(err) && !strings.ContainsRune(arg, filepath.Separator) && !strings.HasSuffix(arg, ".yaml") && !strings.HasSuffix(arg, ".yml") {
			return LoadBuiltin(arg, sets)
		}
		return nil, &Problem{File: arg, Msg: fmt.Sprintf("cannot read the scenario: %v", err)}
	}
	return Parse(arg, data, sets)
}

// Parse decodes, overrides (--set path=value), defaults and validates a scenario. Every problem found
// is returned at once, as Problems.
func Parse(file string, data []byte, sets []string) (*Scenario, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, Problems{{File: file, Line: yamlErrLine(err), Msg: "not valid YAML: " + err.Error()}}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, Problems{{File: file, Msg: "the scenario is empty"}}
	}
	root := doc.Content[0]
	var problems Problems
	for _, s := range sets {
		if err := applySet(root, s); err != nil {
			problems = append(problems, &Problem{File: file, Line: -1, Field: strings.SplitN(s, "=", 2)[0], Msg: err.Error()})
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}
	d := &decoder{file: file, present: map[string]int{}}
	sc := &Scenario{}
	d.decode(root, reflect.ValueOf(sc).Elem(), "")
	if len(d.problems) > 0 {
		return nil, d.problems
	}
	sc.File = file
	applyDefaults(sc, d.present, file)
	v := &validator{decoder: d, sc: sc}
	v.validate()
	if len(d.problems) > 0 {
		return nil, d.problems
	}
	src, err := yaml.Marshal(root)
	if err != nil {
		return nil, fmt.Errorf("re-encoding the scenario: %w", err)
	}
	sc.Source = src
	return sc, nil
}

// Fingerprint identifies the scenario as it runs: a hash of its text after --set (not of --seed,
// which moves only the draws). Two runs of one fingerprint ran the same cluster, load and faults.
func (sc *Scenario) Fingerprint() string {
	h := sha256.Sum256(sc.Source)
	return hex.EncodeToString(h[:])[:16]
}

var yamlLineRe = regexp.MustCompile(`line (\d+)`)

func yamlErrLine(err error) int {
	if m := yamlLineRe.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

var setPathRe = regexp.MustCompile(`^([A-Za-z0-9_-]+)((?:\[\d+\])*)$`)

// applySet edits the YAML tree: path is dotted keys with [i] list indexes (faults[0].at,
// cluster.etcd.heartbeat-interval); value is YAML (a scalar, or a flow list or mapping). null
// (or ~) removes the key, as if the file had left it out: its default applies (a built-in's
// cluster.size=null before cluster.provider=remote, whose size is read from the cluster).
func applySet(root *yaml.Node, set string) error {
	path, value, ok := strings.Cut(set, "=")
	if !ok || path == "" {
		return fmt.Errorf("--set %q must be path=value, for example --set workload.duration=30s", set)
	}
	var vdoc yaml.Node
	if err := yaml.Unmarshal([]byte(value), &vdoc); err != nil {
		return fmt.Errorf("value %q is not valid YAML: %v", value, err)
	}
	var vnode *yaml.Node
	if len(vdoc.Content) == 0 {
		vnode = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: ""}
	} else {
		vnode = vdoc.Content[0]
	}
	markSet(vnode)
	remove := vnode.Kind == yaml.ScalarNode && vnode.Tag == "!!null"
	cur := root
	parts := strings.Split(path, ".")
	for pi, part := range parts {
		m := setPathRe.FindStringSubmatch(part)
		if m == nil {
			return fmt.Errorf("path part %q is not a key or key[index]", part)
		}
		last := pi == len(parts)-1
		key := m[1]
		idxs := regexp.MustCompile(`\d+`).FindAllString(m[2], -1)
		if cur.Kind != yaml.MappingNode {
			return fmt.Errorf("%q is not inside a mapping", key)
		}
		var next *yaml.Node
		for i := 0; i+1 < len(cur.Content); i += 2 {
			if cur.Content[i].Value == key {
				next = cur.Content[i+1]
				if last && len(idxs) == 0 {
					if remove {
						cur.Content = slices.Delete(cur.Content, i, i+2)
					} else {
						cur.Content[i+1] = vnode
					}
					return nil
				}
			}
		}
		if next == nil && last && remove && len(idxs) == 0 {
			return nil // not there: nothing to remove
		}
		if next == nil {
			if len(idxs) > 0 {
				return fmt.Errorf("%q is not in the scenario, so it has no index %s", key, m[2])
			}
			if last {
				next = vnode
			} else {
				next = &yaml.Node{Kind: yaml.MappingNode, Line: -1}
			}
			cur.Content = append(cur.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key, Line: -1}, next)
			if last {
				return nil
			}
		}
		for ii, is := range idxs {
			i, _ := strconv.Atoi(is)
			if next.Kind != yaml.SequenceNode || i >= len(next.Content) {
				return fmt.Errorf("%s has no element %d", key, i)
			}
			if last && ii == len(idxs)-1 {
				if remove {
					return fmt.Errorf("null removes a key; %s[%d] is a list element (set the whole list instead)", key, i)
				}
				next.Content[i] = vnode
				return nil
			}
			next = next.Content[i]
		}
		cur = next
	}
	return nil
}

func markSet(n *yaml.Node) {
	n.Line = -1
	for _, c := range n.Content {
		markSet(c)
	}
}

func applyDefaults(sc *Scenario, present map[string]int, file string) {
	def := func(path string, set func()) {
		if _, ok := present[path]; !ok {
			set()
		}
	}
	def("name", func() {
		sc.Name = strings.TrimSuffix(strings.TrimSuffix(filepath.Base(strings.TrimPrefix(file, "builtin:")), ".yaml"), ".yml")
	})
	def("seed", func() { sc.Seed = 1 })
	c := &sc.Cluster
	def("cluster.provider", func() { c.Provider = "local" })
	def("cluster.size", func() { c.Size = 3 })
	def("cluster.network", func() {
		c.Network = "proxy"
		if c.shared() {
			c.Network = "direct" // the load reaches the endpoints; client: faults add the proxy
		}
		if c.Provider == "container" {
			c.Network = "netns" // faults between containers go inside their namespaces
		}
	})
	if c.Image != "" {
		def("cluster.entrypoint", func() { c.Entrypoint = []string{"/usr/local/bin/etcd"} })
	}
	def("cluster.subnet", func() { c.Subnet = "198.18.0.0/15" })
	def("cluster.ready-timeout", func() { c.ReadyTimeout = Duration(30 * time.Second) })
	def("cluster.scrape-interval", func() { c.ScrapeInterval = Duration(10 * time.Second) })
	def("cluster.growth-min-span", func() { c.GrowthMinSpan = Duration(10 * time.Minute) })
	w := &sc.Workload
	def("workload.duration", func() { w.Duration = Duration(30 * time.Second) })
	def("workload.warmup", func() { w.Warmup = Duration(2 * time.Second) })
	def("workload.clients", func() { w.Clients = 16 })
	def("workload.connections", func() { w.Connections = min(w.Clients, 8) })
	def("workload.timeout", func() { w.Timeout = Duration(time.Second) })
	def("workload.recovery", func() { w.Recovery = Duration(15 * time.Second) })
	def("workload.prober.interval", func() { w.Prober.Interval = Duration(10 * time.Millisecond) })
	def("workload.prober.timeout", func() { w.Prober.Timeout = w.Timeout })
	retryDefaults(def, "workload.retry", &w.Retry)
	def("workload.mix", func() { w.Mix = DefaultMix() })
	MixDefaults(def, "workload.mix", w.Mix)
	seen := map[string]int{}
	for i := range sc.Workloads {
		b := &sc.Workloads[i]
		p := fmt.Sprintf("workloads[%d].", i)
		def(p+"name", func() {
			b.Name = b.Kind
			if n := seen[b.Kind]; n > 0 {
				b.Name = fmt.Sprintf("%s-%d", b.Kind, n+1)
			}
		})
		seen[b.Kind]++
		k := WorkloadOf(b.Kind)
		if k == nil {
			continue // validation names it
		}
		def(p+"clients", func() { b.Clients = k.Clients })
		def(p+"timeout", func() { b.Timeout = Duration(time.Second) })
		retryDefaults(def, p+"retry", &b.Retry)
		if k.Defaults != nil {
			k.Defaults(b, func(field string, set func()) { def(p+field, set) })
		}
	}
	ck := &sc.Checks
	def("checks.kv-safety", func() { ck.KVSafety = true })
	l := &ck.Linearizability
	def("checks.linearizability.keys", func() { l.Keys = 3 })
	def("checks.linearizability.clients", func() { l.Clients = 4 })
	def("checks.linearizability.rate", func() { l.Rate = 50 })
	def("checks.linearizability.max-ops", func() { l.MaxOps = 2000 })
	def("checks.linearizability.timeout", func() { l.Timeout = Duration(30 * time.Second) })
}

func retryDefaults(def func(string, func()), p string, r *Retry) {
	def(p+".attempts", func() { r.Attempts = 5 })
	def(p+".backoff", func() { r.Backoff = Duration(50 * time.Millisecond) })
	def(p+".max-backoff", func() { r.MaxBackoff = Duration(time.Second) })
	def(p+".jitter", func() { r.Jitter = 0.2 })
}

// MixDefaults fills the left-out fields of each op of the mix at path (def as in
// WorkloadRules.Defaults): the main load's and a kv workload block's.
func MixDefaults(def func(string, func()), path string, mix []Op) {
	for i := range mix {
		p := fmt.Sprintf("%s[%d].", path, i)
		op := &mix[i]
		def(p+"weight", func() { op.Weight = 1 })
		def(p+"keys", func() { op.Keys = 1000 })
		def(p+"distribution", func() { op.Distribution = "uniform" })
		def(p+"value-size", func() { op.ValueSize = 256 })
		if op.Op == "get" {
			def(p+"consistency", func() { op.Consistency = "linearizable" })
		}
	}
}

// Marshal writes the scenario (with defaults filled in) as YAML.
func (sc *Scenario) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	out := *sc
	if sc.FaultTemplates != nil {
		out.Faults = sc.FaultTemplates // as written: a repeating fault stays one entry
	}
	if err := enc.Encode(&out); err != nil {
		return nil, fmt.Errorf("encoding the scenario: %w", err)
	}
	return buf.Bytes(), enc.Close()
}
