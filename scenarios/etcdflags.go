package scenarios

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"go.etcd.io/etcd/api/v3/version"
	"go.etcd.io/etcd/server/v3/embed"
)

// embeddedEtcdFlags are the flags of the etcd the chaos binary embeds: embed.Config's own flag set
// plus the few etcd's main adds (etcdmain's config-file, initial-cluster-state, ...). etcdmain's
// "ignored" flags are left out on purpose: etcd accepts them and does nothing with them.
var embeddedEtcdFlags = sync.OnceValue(func() map[string]bool {
	fs := flag.NewFlagSet("etcd", flag.ContinueOnError)
	embed.NewConfig().AddFlags(fs)
	names := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { names[f.Name] = true })
	for _, n := range []string{"config-file", "discovery-fallback", "initial-cluster-state", "v2-deprecation", "version"} {
		names[n] = true
	}
	return names
})

var helpFlagRe = regexp.MustCompile(`(?m)^\s+--([a-z0-9][a-z0-9.-]*)`)

// binaryEtcdFlags reads the flags an official etcd binary lists in its --help (3.5, 3.6 and 3.7
// differ: experimental- flags were renamed); nil when it lists none.
func binaryEtcdFlags(bin string) map[string]bool {
	out, _ := exec.Command(bin, "--help").CombinedOutput()
	names := map[string]bool{}
	for _, m := range helpFlagRe.FindAllStringSubmatch(string(out), -1) {
		names[m[1]] = true
	}
	if len(names) < 20 {
		return nil
	}
	return names
}

// nearest is the valid name closest to s by edit distance, or "" when none is close.
func nearest(s string, valid map[string]bool) string {
	best, bestD := "", len(s)/2+2
	names := make([]string, 0, len(valid))
	for n := range valid {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if d := editDistance(s, n); d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" {
		for _, n := range names { // experimental-snapshot-count for snapshot-count, and the reverse
			if strings.HasSuffix(n, "-"+s) || strings.HasSuffix(s, "-"+n) {
				return n
			}
		}
	}
	return best
}

// editDistance is Levenshtein's distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// identRe is what names, run ids and cell ids may be made of: they become folder names.
var identRe = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// IdentError says why s cannot be an identifier (a scenario name, a run id), or "" when it can.
func IdentError(s string) string {
	switch {
	case s == "":
		return "is empty"
	case !identRe.MatchString(s):
		return "may hold only letters, digits, '.', '_' and '-' (it names the run's folder)"
	case strings.Trim(s, ".") == "":
		return "cannot be only dots"
	case len(s) > 128:
		return "is longer than 128 characters"
	}
	return ""
}

// PreviousEtcdBinary is where make etcd-previous builds the official etcd release of the minor
// version before the built-in one (rolling-upgrade starts from it).
const PreviousEtcdBinary = "bin/etcd-v3.6.8"

// binaryHint says how to get a binary that is missing: the previous release, make etcd-previous.
func binaryHint(path string, err error) string {
	if errors.Is(err, fs.ErrNotExist) && filepath.Clean(path) == PreviousEtcdBinary {
		return " (make etcd-previous builds it from the Go module proxy)"
	}
	return ""
}

// Builtin names the etcd built into the chaos binary where an etcd binary is asked for (an
// upgrade's or downgrade's to:).
const BuiltinEtcd = "builtin"

var (
	versionsMu sync.Mutex
	versions   = map[string]string{}
	versionRe  = regexp.MustCompile(`etcd Version: (\S+)`)
)

// BinaryVersion is the etcd version a binary says it is (--version), or the built-in one's for
// "builtin" or "".
func BinaryVersion(bin string) (string, error) {
	if bin == "" || bin == BuiltinEtcd {
		return version.Version, nil
	}
	versionsMu.Lock()
	defer versionsMu.Unlock()
	if v, ok := versions[bin]; ok {
		return v, nil
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("cannot use %q: %w%s", bin, err, binaryHint(bin, err))
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", bin, err)
	}
	m := versionRe.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%s --version does not say \"etcd Version: X.Y.Z\"", bin)
	}
	versions[bin] = string(m[1])
	return versions[bin], nil
}

// MinorOf is a version's major.minor ("3.6" of "3.6.8").
func MinorOf(v string) string {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return v
	}
	return parts[0] + "." + parts[1]
}

// MinorStep is how many minor versions from a to b (3.6 to 3.7: 1; 3.7 to 3.6: -1); ok is false
// when either is not major.minor or their majors differ.
func MinorStep(a, b string) (int, bool) {
	var am, an, bm, bn int
	if _, err := fmt.Sscanf(MinorOf(a), "%d.%d", &am, &an); err != nil {
		return 0, false
	}
	if _, err := fmt.Sscanf(MinorOf(b), "%d.%d", &bm, &bn); err != nil {
		return 0, false
	}
	if am != bm {
		return 0, false
	}
	return bn - an, true
}
