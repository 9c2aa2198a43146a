package cluster

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"

	"github.com/etcd-chaos/etcd-chaos/faults"
	"github.com/etcd-chaos/etcd-chaos/loadgen"
	"github.com/etcd-chaos/etcd-chaos/scenarios"
)

// Label marks every container, network and volume of a run (its value is the run's prefix).
const Label = "etcd-chaos.run"

// ContainerOptions are what a containerised cluster adds to LocalOptions.
type ContainerOptions struct {
	Image      string   // an etcd image; "" builds one from the chaos binary
	Entrypoint []string // how the image starts etcd (with Image)
}

// docker is the cluster's hold on the Docker engine.
type docker struct {
	dc      *testcontainers.DockerClient
	image   string
	net     string // network name
	netID   string
	volumes []string
	built   time.Duration // image build time ("" when cached)
	cached  bool
	// published: the harness reaches the members through their published ports (docker-proxy),
	// because the platform cannot route to the containers' own addresses.
	published bool
	// user: image is the user's (cluster.image): members run its etcd, never a binary of ours.
	user bool
	// images are the images built here FROM scratch, by the binary they hold.
	imagesMu sync.Mutex
	images   map[string]string
	// volumes are the members' volumes (a member added during the run adds one).
	volumesMu sync.Mutex
}

// ContainerCluster is a cluster of etcd members, each a container (testcontainers-go) on a Docker
// network of the run's own.
type ContainerCluster struct {
	base
	opts   LocalOptions
	docker *docker
	proxy  *faults.Proxy // client links only: faults between the load and a member
	netns  *faults.Netns // network: netns (root): the containers' own namespaces, by PID
	prefix string        // the run's label value and the name of what it makes
	entry  []string      // cluster.entrypoint: how the user's image starts etcd
}

// runner is the container of member m.
func (c *ContainerCluster) runner(m *member) *containerRunner { return m.run.(*containerRunner) }

// containerRunner runs one member as a container: the same data volume across restarts, its client
// port published on 127.0.0.1 at a fixed port, its logs appended to the member's etcd.log.
type containerRunner struct {
	d       *docker
	m       *member
	bin     string // the binary its image holds (a path, or builtin: the chaos binary's etcd; "" with cluster.image)
	log     *slog.Logger
	started func() error
	req     testcontainers.ContainerRequest
	mu      sync.Mutex
	id      string
	logFrom time.Time
	// stale: the member's flags changed (an operation moved its data dir or its cluster state):
	// its next start makes a new container from req; gen numbers its data dirs in the volume.
	stale bool
	gen   int
	// restored is a data dir restored on this machine, copied into the member's volume (as its
	// data dir) when its next container is created, before it starts.
	restored string
}

func init() {
	// Ryuk (testcontainers' reaper) is an image that cannot be pulled here, and the harness removes
	// what it made itself (and chaos heal what a killed harness left).
	_ = os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	// testcontainers narrates every step on stderr; the harness logs what matters itself.
	tclog.SetDefault(quiet{})
}

type quiet struct{}

func (quiet) Printf(string, ...any) {}

// NewContainers lays out a cluster of containers, one member each, on a network of its own.
func NewContainers(opts LocalOptions, co ContainerOptions) (*ContainerCluster, error) {
	if opts.Logger == nil {
		opts.Logger = nopLogger()
	}
	if co.Image == "" {
		cmd, err := defaultNodeCommand(opts.NodeCommand)
		if err != nil {
			return nil, err
		}
		opts.NodeCommand = cmd
	}
	ports, err := FreePorts(opts.Size)
	if err != nil {
		return nil, err
	}
	c := &ContainerCluster{opts: opts, prefix: newPrefix(), entry: co.Entrypoint}
	c.docker = &docker{image: co.Image, net: c.prefix, user: co.Image != "", images: map[string]string{}}
	c.base = base{dir: opts.Dir, log: opts.Logger, network: opts.Network, describe: func(cf *File) {
		cf.Provider, cf.Prefix, cf.Image = "container", c.prefix, c.docker.image
		for _, m := range c.all() {
			if id := c.runner(m).ID(); id != "" {
				cf.Containers = append(cf.Containers, id)
			}
		}
		if c.netns != nil {
			cf.Namespaces = c.netns.Namespaces()
		}
	}}
	c.proxy = faults.NewProxy(opts.Seed, opts.Logger) // client links only: faults between the load and a member
	c.files = files{wipe: c.wipeVolume, restore: c.restoreVolume, reflag: func(m *member) {
		r := c.runner(m)
		r.req.Cmd = append([]string(nil), m.argv[len(r.req.Entrypoint):]...)
		r.stale = true
	}}
	extra, err := etcdFlags(opts.Etcd)
	if err != nil {
		return nil, err
	}
	names := MemberNames(opts.Size)
	var initial []string
	for _, name := range names {
		initial = append(initial, fmt.Sprintf("%s=http://%s:2380", name, name))
	}
	for i, name := range names {
		bin, entry := c.startOn(name)
		m, err := c.layOut(name, ports[i], bin, entry, initial, extra)
		if err != nil {
			return nil, err
		}
		c.members = append(c.members, m)
	}
	return c, nil
}

// layOut makes member name's folder, command line and container request (its volume, its client
// port published on 127.0.0.1 at port), to start on bin's image with entry, in initial.
func (c *ContainerCluster) layOut(name string, port int, bin string, entry, initial, extra []string) (*member, error) {
	dir := filepath.Join(c.opts.Dir, "members", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	m := &member{name: name, dataDir: "/data/" + name, logPath: filepath.Join(dir, "etcd.log"),
		realURL: fmt.Sprintf("http://127.0.0.1:%d", port), peerURL: "http://" + name + ":2380"}
	m.clientURL = m.realURL // routeContainers sets both once the containers run
	args := memberArgs(name, m.dataDir, "http://0.0.0.0:2379", "http://"+name+":2379", "http://0.0.0.0:2380", m.peerURL,
		initial, c.opts.Token, extra)
	m.argv = append(append([]string{}, entry...), args...)
	vol, hostPort := c.prefix+"-"+name, fmt.Sprint(port)
	r := &containerRunner{d: c.docker, m: m, bin: bin, log: c.opts.Logger, started: c.writeClusterFile}
	r.req = testcontainers.ContainerRequest{
		Name: c.prefix + "-" + name, Entrypoint: entry, Cmd: args, ExposedPorts: []string{"2379/tcp"},
		Networks: []string{c.docker.net}, NetworkAliases: map[string][]string{c.docker.net: {name}},
		Labels: map[string]string{Label: c.prefix},
		HostConfigModifier: func(hc *container.HostConfig) {
			hc.PortBindings = network.PortMap{network.MustParsePort("2379/tcp"): {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: hostPort}}}
			hc.Mounts = []mount.Mount{{Type: mount.TypeVolume, Source: vol, Target: "/data"}}
		},
	}
	c.docker.volumesMu.Lock()
	c.docker.volumes = append(c.docker.volumes, vol)
	c.docker.volumesMu.Unlock()
	m.run = r
	return m, nil
}

// AddMember adds a member to the cluster of containers: the next name, a volume and a container
// of its own on the run's network (a published port, reached as the others are); etcd's MemberAdd
// (MemberAddAsLearner with learner), then its container, started on the existing cluster from the
// cluster's image (etcd-binary's). Faults on the client links would need a proxy for it: refused.
func (c *ContainerCluster) AddMember(ctx context.Context, learner bool, steps *faults.ReplaceSteps) (string, error) {
	if c.opts.ClientProxy {
		return "", errors.New("member-add does not put the client proxy in front of a new member: leave faults on the client links out of the scenario")
	}
	name := c.nextName()
	ports, err := FreePorts(1)
	if err != nil {
		return "", err
	}
	d := c.docker
	bin, entry := c.startOn(name)
	extra, err := etcdFlags(c.opts.Etcd)
	if err != nil {
		return "", err
	}
	m, err := c.layOut(name, ports[0], bin, entry, nil, extra)
	if err != nil {
		return "", err
	}
	r := c.runner(m)
	r.req.Image = d.image
	vol := c.prefix + "-" + name
	if _, err := d.dc.VolumeCreate(ctx, client.VolumeCreateOptions{Name: vol, Labels: map[string]string{Label: c.prefix}}); err != nil {
		return "", fmt.Errorf("creating volume %s: %w", vol, err)
	}
	err = c.join(ctx, m, learner, steps, func() { r.req.Cmd = append([]string(nil), m.argv[len(r.req.Entrypoint):]...) })
	if err != nil {
		return name, err
	}
	if !d.published { // reached at its own address, as the others are
		_, ip, err := c.containerAddr(name)
		if err != nil {
			return name, err
		}
		m.realURL = "http://" + ip + ":2379"
		m.clientURL = m.realURL
	}
	return name, c.writeClusterFile()
}

// startDocker connects to the engine and makes the image, the network and the volumes.
func (c *ContainerCluster) startDocker(ctx context.Context) error {
	d := c.docker
	dc, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return fmt.Errorf("provider container: no Docker engine: %w", err)
	}
	d.dc = dc
	if !d.user {
		start := time.Now()
		img, cached, err := c.imageOf(ctx, c.binaryOf(""))
		if err != nil {
			return err
		}
		d.image, d.cached, d.built = img, cached, time.Since(start)
		c.opts.Logger.Info("member image", "image", img, "cached", cached, "took", d.built)
	}
	for _, m := range c.all() {
		r := c.runner(m)
		r.req.Image = d.image
		if !d.user {
			img, _, err := c.imageOf(ctx, r.bin)
			if err != nil {
				return err
			}
			r.req.Image = img
		}
	}
	res, err := dc.NetworkCreate(ctx, d.net, client.NetworkCreateOptions{Driver: "bridge", Labels: map[string]string{Label: c.prefix}})
	if err != nil {
		return fmt.Errorf("creating network %s: %w", d.net, err)
	}
	d.netID = res.ID
	for _, v := range d.volumes {
		if _, err := dc.VolumeCreate(ctx, client.VolumeCreateOptions{Name: v, Labels: map[string]string{Label: c.prefix}}); err != nil {
			return fmt.Errorf("creating volume %s: %w", v, err)
		}
	}
	if c.opts.Network == "netns" {
		c.netns = faults.NetnsOfPIDs(c.containerAddr)
	}
	return c.writeClusterFile()
}

// routeContainers points the harness at the members once their containers run: their own
// addresses on the run's network where this machine routes to them (Linux), so that no
// docker-proxy hop sits in the measured path; their published ports where it does not. The client
// proxy goes in front only when a fault of the scenario acts on the client links.
func (c *ContainerCluster) routeContainers(ctx context.Context) error {
	direct := map[string]string{}
	for _, m := range c.all() {
		_, ip, err := c.containerAddr(m.name)
		if err != nil {
			return err
		}
		if !routable(ctx, ip+":2379") {
			direct = nil
			break
		}
		direct[m.name] = "http://" + ip + ":2379"
	}
	c.docker.published = direct == nil
	for _, m := range c.all() {
		if direct != nil {
			m.realURL = direct[m.name]
		}
		m.clientURL = m.realURL
		if c.opts.ClientProxy {
			pp, err := FreePorts(1)
			if err != nil {
				return err
			}
			m.proxyAt = fmt.Sprintf("127.0.0.1:%d", pp[0])
			if _, err := c.proxy.Listen(m.name, m.proxyAt, strings.TrimPrefix(m.realURL, "http://"), false); err != nil {
				return err
			}
			m.clientURL = "http://" + m.proxyAt
		}
	}
	c.opts.Logger.Info("reaching the containers", "direct", direct != nil)
	return c.writeClusterFile()
}

// routable tells whether this machine has a route to addr: a connection accepted, or refused (the
// member is not listening yet, but the address answered), within a second.
func routable(ctx context.Context, addr string) bool {
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		d := net.Dialer{Timeout: 300 * time.Millisecond}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			conn.Close()
			return true
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// containerAddr names a member container's process and address on the run's network.
func (c *ContainerCluster) containerAddr(member string) (int, string, error) {
	for _, m := range c.all() {
		if m.name != member {
			continue
		}
		in, err := c.runner(m).inspect(context.Background())
		if err != nil {
			return 0, "", err
		}
		if in.State == nil || in.State.Pid == 0 {
			return 0, "", fmt.Errorf("container of %s is not running", member)
		}
		ep := in.NetworkSettings.Networks[c.docker.net]
		if ep == nil || !ep.IPAddress.IsValid() {
			return 0, "", fmt.Errorf("container of %s has no address on %s", member, c.docker.net)
		}
		return in.State.Pid, ep.IPAddress.String(), nil
	}
	return 0, "", fmt.Errorf("no member %s", member)
}

// NodeImage is the image provider container runs members from: the chaos binary bin FROM
// scratch, built unless an image of the same binary exists (tests start containers of it).
func NodeImage(ctx context.Context, dc *testcontainers.DockerClient, bin string) (string, error) {
	tag, _, err := buildBinaryImage(ctx, dc, bin, nodeImage)
	return tag, err
}

// binaryImage is an image FROM scratch of one binary: the chaos binary (its etcd is the built-in
// one) or an official etcd binary (cluster.etcd-binary, member-binaries, an upgrade's to:).
type binaryImage struct {
	repo, file string
	entry      []string
}

var (
	nodeImage = binaryImage{repo: "etcd-chaos-node", file: "chaos", entry: []string{"/chaos", "node", "--"}}
	etcdImage = binaryImage{repo: "etcd-chaos-etcd", file: "etcd", entry: []string{"/etcd"}}
)

// binaryOf is the binary member name starts on: its member-binaries entry, else etcd-binary,
// else builtin (the chaos binary's etcd).
func (c *ContainerCluster) binaryOf(name string) string {
	bin := c.opts.EtcdBinary
	if b, ok := c.opts.MemberBinaries[name]; ok {
		bin = b
	}
	if bin == "" {
		bin = scenarios.BuiltinEtcd
	}
	return bin
}

// startOn is what member name starts on: the user's image and entrypoint (no binary), or an image
// built here from its binary (member-binaries, else etcd-binary, else the chaos binary's etcd).
func (c *ContainerCluster) startOn(name string) (bin string, entry []string) {
	if c.docker.user {
		return "", c.entry
	}
	bin = c.binaryOf(name)
	return bin, entryOf(bin)
}

// entryOf is how an image built from bin starts etcd ("" or builtin: the chaos binary's).
func entryOf(bin string) []string {
	if bin == "" || bin == scenarios.BuiltinEtcd {
		return slices.Clone(nodeImage.entry)
	}
	return slices.Clone(etcdImage.entry)
}

// imageOf is the image of bin (builtin: the chaos binary's), built on first use; cached says an
// image of the same binary was there already.
func (c *ContainerCluster) imageOf(ctx context.Context, bin string) (tag string, cached bool, err error) {
	kind := etcdImage
	if bin == scenarios.BuiltinEtcd {
		bin, kind = c.opts.NodeCommand[0], nodeImage
	}
	d := c.docker
	d.imagesMu.Lock()
	defer d.imagesMu.Unlock()
	if tag, ok := d.images[bin]; ok {
		return tag, true, nil
	}
	tag, cached, err = buildBinaryImage(ctx, d.dc, bin, kind)
	if err != nil {
		return "", false, err
	}
	d.images[bin] = tag
	return tag, cached, nil
}

// buildBinaryImage builds FROM scratch an image holding bin (which must be statically linked),
// tagged by the binary's content hash so that a second run reuses it.
func buildBinaryImage(ctx context.Context, dc *testcontainers.DockerClient, bin string, kind binaryImage) (string, bool, error) {
	f, err := elf.Open(bin)
	if err != nil {
		return "", false, fmt.Errorf("reading %s: %w", bin, err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			f.Close()
			return "", false, fmt.Errorf("%s is dynamically linked, so it cannot run FROM scratch; build it with CGO_ENABLED=0 (make build does)", bin)
		}
	}
	f.Close()
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", false, err
	}
	sum := sha256.Sum256(data)
	tag := kind.repo + ":" + hex.EncodeToString(sum[:])[:16]
	if _, err := dc.ImageInspect(ctx, tag); err == nil {
		return tag, true, nil
	}
	entry, _ := json.Marshal(kind.entry)
	dockerfile := fmt.Sprintf("FROM scratch\nCOPY %s /%s\nENTRYPOINT %s\n", kind.file, kind.file, entry)
	if err := BuildImage(ctx, dc, tag, dockerfile, map[string][]byte{kind.file: data}); err != nil {
		return "", false, err
	}
	if kind.repo != nodeImage.repo {
		return tag, false, nil // etcd releases: a few, each kept for the next run
	}
	// Older node images (of binaries since rebuilt) go, unless a container still uses one.
	if imgs, err := dc.ImageList(ctx, client.ImageListOptions{Filters: make(client.Filters).Add("reference", "etcd-chaos-node")}); err == nil {
		for _, im := range imgs.Items {
			for _, t := range im.RepoTags {
				if t != tag {
					_, _ = dc.ImageRemove(ctx, t, client.ImageRemoveOptions{})
				}
			}
		}
	}
	return tag, false, nil
}

// BuildImage builds an image from a Dockerfile and executable files, with no build context on disk.
func BuildImage(ctx context.Context, dc *testcontainers.DockerClient, tag, dockerfile string, files map[string][]byte) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(dockerfile))}); err != nil {
		return err
	}
	if _, err := io.WriteString(tw, dockerfile); err != nil {
		return err
	}
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body))}); err != nil {
			return err
		}
		if _, err := tw.Write(body); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	res, err := dc.ImageBuild(ctx, &buf, client.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true,
		Labels: map[string]string{"etcd-chaos.image": "node"}})
	if err != nil {
		return fmt.Errorf("building %s: %w", tag, err)
	}
	defer res.Body.Close()
	dec := json.NewDecoder(res.Body)
	for {
		var msg struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("building %s: %w", tag, err)
		}
		if msg.Error != "" {
			return fmt.Errorf("building %s: %s", tag, msg.Error)
		}
	}
}

// closeDocker removes the containers, the network and (unless keep) the volumes.
func (c *ContainerCluster) closeDocker(ctx context.Context, keep bool) error {
	d := c.docker
	if d == nil || d.dc == nil {
		return nil
	}
	var errs []error
	for _, m := range c.everyMember() {
		if id := c.runner(m).ID(); id != "" {
			if _, err := d.dc.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true}); err != nil {
				errs = append(errs, fmt.Errorf("removing the container of %s: %w", m.name, err))
			}
		}
	}
	if d.netID != "" {
		if _, err := d.dc.NetworkRemove(ctx, d.netID, client.NetworkRemoveOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("removing network %s: %w", d.net, err))
		}
	}
	if !keep {
		d.volumesMu.Lock()
		defer d.volumesMu.Unlock()
		for _, v := range d.volumes {
			if _, err := d.dc.VolumeRemove(ctx, v, client.VolumeRemoveOptions{Force: true}); err != nil && !strings.Contains(err.Error(), "no such volume") {
				errs = append(errs, fmt.Errorf("removing volume %s: %w", v, err))
			}
		}
	}
	_ = d.dc.Close()
	return errors.Join(errs...)
}

// RemoveLabelled removes every container, network and volume labelled with a run's prefix (chaos
// heal, for what a killed harness left). It returns what it removed.
func RemoveLabelled(ctx context.Context, prefix string) ([]string, error) {
	dc, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return nil, err
	}
	defer dc.Close()
	f := make(client.Filters).Add("label", Label+"="+prefix)
	var out []string
	var errs []error
	cs, err := dc.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, err
	}
	for _, x := range cs.Items {
		if _, err := dc.ContainerRemove(ctx, x.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
			errs = append(errs, err)
		} else {
			out = append(out, "container "+strings.TrimPrefix(firstName(x.Names), "/"))
		}
	}
	ns, err := dc.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err == nil {
		for _, n := range ns.Items {
			if _, err := dc.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil {
				errs = append(errs, err)
			} else {
				out = append(out, "network "+n.Name)
			}
		}
	}
	vs, err := dc.VolumeList(ctx, client.VolumeListOptions{Filters: f})
	if err == nil {
		for _, v := range vs.Items {
			if _, err := dc.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{Force: true}); err != nil {
				errs = append(errs, err)
			} else {
				out = append(out, "volume "+v.Name)
			}
		}
	}
	return out, errors.Join(errs...)
}

func firstName(ns []string) string {
	if len(ns) == 0 {
		return ""
	}
	return ns[0]
}

// --- one member as a container ---

func (r *containerRunner) ID() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.id
}

func (r *containerRunner) inspect(ctx context.Context) (container.InspectResponse, error) {
	id := r.ID()
	if id == "" {
		return container.InspectResponse{}, fmt.Errorf("member %s has no container yet", r.m.name)
	}
	res, err := r.d.dc.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	return res.Container, err
}

func (r *containerRunner) start(ctx context.Context) error {
	if r.stale {
		r.flushLogs() // what its last container logged, before a new one replaces it
	}
	if logf, err := writeBanner(r.m.logPath, r.m.name, r.m.argv, " (image "+r.req.Image+")"); err == nil {
		logf.Close()
	}
	r.mu.Lock()
	r.logFrom = time.Now()
	id := r.id
	r.mu.Unlock()
	if id != "" && r.stale {
		if _, err := r.d.dc.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true}); err != nil {
			return fmt.Errorf("removing the container of %s to start it with new flags: %w", r.m.name, err)
		}
		r.mu.Lock()
		r.id, id = "", ""
		r.mu.Unlock()
	}
	if id == "" {
		r.stale = false
		req := r.req
		if r.restored != "" { // restored data, copied into the volume before the start
			from, to := r.restored, r.m.dataDir
			defer os.RemoveAll(from)
			r.restored = ""
			req.LifecycleHooks = append(slices.Clone(req.LifecycleHooks), testcontainers.ContainerLifecycleHooks{
				PostCreates: []testcontainers.ContainerHook{func(ctx context.Context, c testcontainers.Container) error {
					return copyDir(ctx, r.d.dc, c.GetContainerID(), from, to)
				}}})
		}
		c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{ContainerRequest: req, Started: true})
		if c != nil {
			r.mu.Lock()
			r.id = c.GetContainerID()
			r.mu.Unlock()
		}
		if err != nil {
			return fmt.Errorf("starting the container of %s: %w", r.m.name, err)
		}
	} else if _, err := r.d.dc.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("starting the container of %s again: %w", r.m.name, err)
	}
	r.log.Info("member container started", "member", r.m.name, "id", r.ID()[:12])
	return r.started()
}

// signal maps signals onto the Docker API: SIGSTOP and SIGCONT are docker pause and unpause (the
// cgroup freezer), the rest are docker kill.
func (r *containerRunner) signal(sig syscall.Signal) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id := r.ID()
	var err error
	switch sig {
	case syscall.SIGSTOP:
		_, err = r.d.dc.ContainerPause(ctx, id, client.ContainerPauseOptions{})
	case syscall.SIGCONT:
		if in, ierr := r.inspect(ctx); ierr == nil && in.State != nil && in.State.Paused {
			_, err = r.d.dc.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{})
		}
	default:
		_, err = r.d.dc.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: unixName(sig)})
	}
	if err != nil {
		return fmt.Errorf("%s to the container of %s: %w", sig, r.m.name, err)
	}
	return nil
}

func unixName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	}
	return fmt.Sprint(int(sig))
}

func (r *containerRunner) state() (faults.ProcState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	in, err := r.inspect(ctx)
	if err != nil || in.State == nil {
		return faults.Exited, nil
	}
	switch {
	case in.State.Paused:
		return faults.Stopped, nil
	case in.State.Running:
		return faults.Running, nil
	}
	return faults.Exited, nil
}

func (r *containerRunner) pid() int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	in, err := r.inspect(ctx)
	if err != nil || in.State == nil {
		return 0
	}
	return in.State.Pid
}

func (r *containerRunner) waitExit(ctx context.Context) error {
	for {
		if st, _ := r.state(); st == faults.Exited {
			r.flushLogs()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (r *containerRunner) stop(ctx context.Context, grace time.Duration) error {
	if r.ID() == "" {
		return nil
	}
	_ = r.signal(syscall.SIGCONT)
	secs := int(grace.Seconds() + 0.999)
	_, err := r.d.dc.ContainerStop(ctx, r.ID(), client.ContainerStopOptions{Timeout: &secs})
	r.flushLogs()
	return err
}

// flushLogs appends what the container logged since the last flush to the member's etcd.log.
func (r *containerRunner) flushLogs() {
	r.mu.Lock()
	from, id := r.logFrom, r.id
	r.mu.Unlock()
	if id == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now := time.Now()
	rc, err := r.d.dc.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true,
		Since: fmt.Sprintf("%d.%09d", from.Unix(), from.Nanosecond())})
	if err != nil {
		return
	}
	defer rc.Close()
	f, err := os.OpenFile(r.m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	if _, err := stdcopy.StdCopy(f, f, rc); err == nil {
		r.mu.Lock()
		r.logFrom = now
		r.mu.Unlock()
	}
}

// --- the Cluster methods of containers ---

// Start makes the image, the network and the volumes, starts every member's container, and
// points the harness at them.
func (c *ContainerCluster) Start(ctx context.Context) error {
	if err := c.startDocker(ctx); err != nil {
		return err
	}
	for _, m := range c.all() {
		if err := m.Start(ctx); err != nil {
			return err
		}
	}
	return c.routeContainers(ctx)
}

// WaitReady waits until every member answers, knows a leader, and a write of key succeeds.
func (c *ContainerCluster) WaitReady(ctx context.Context, timeout time.Duration, key string) error {
	return c.waitReady(ctx, timeout, key, c.Endpoints(), nil)
}

// PeerNetwork is the backend of faults between members: the containers' namespaces (network:
// netns, root) or Docker's network (disconnect and connect).
func (c *ContainerCluster) PeerNetwork() faults.Network {
	if c.netns != nil {
		return c.netns
	}
	if c.opts.Network == "docker" {
		return dockerNet{c}
	}
	return nil
}

// Paths says what sits on the client links ("direct" to the containers' addresses, "proxy", or
// "docker-proxy", Docker's published port) and on the peer links ("docker" or "netns").
func (c *ContainerCluster) Paths() (client, peer string) {
	client, peer = "direct", "docker"
	for _, m := range c.all() {
		if m.clientURL != m.realURL {
			client = "proxy"
		}
	}
	if client == "direct" && c.docker.published {
		client = "docker-proxy"
	}
	if c.opts.Network == "netns" {
		peer = "netns"
	}
	return client, peer
}

// ClientNetwork is the client proxies' backend (nil unless a client: fault needs it).
func (c *ContainerCluster) ClientNetwork() faults.Network {
	if !c.opts.ClientProxy || c.proxy == nil {
		return nil
	}
	return c.proxy
}

// Netns is the containers' namespaces with network: netns (nil otherwise).
func (c *ContainerCluster) Netns() *faults.Netns { return c.netns }

// LoadConn: the containers' addresses (or published ports) are reached by plain TCP.
func (c *ContainerCluster) LoadConn() *loadgen.Conn { return nil }

// Close stops the members, then removes the containers, the network and the volumes.
func (c *ContainerCluster) Close(ctx context.Context, grace time.Duration) error {
	errs := c.stopMembers(ctx, grace)
	c.proxy.Close()
	if c.netns != nil {
		_ = c.netns.Close()
	}
	errs = append(errs, c.closeDocker(ctx, false))
	return errors.Join(errs...)
}

// RemoveData: the data live in Docker volumes, which Close removes.
func (c *ContainerCluster) RemoveData() error { return nil }

// EtcdVersion is the version of etcd-binary (the embedded etcd's without it), else the user's
// image's name.
func (c *ContainerCluster) EtcdVersion() string {
	if c.docker.user {
		return "image " + c.docker.image
	}
	if v, err := scenarios.BinaryVersion(c.opts.EtcdBinary); err == nil {
		return v
	}
	return "unknown"
}

// SwapBinary stops the member gracefully (docker stop: SIGTERM; SIGKILL after 30s) and starts a
// new container on the same volume and data dir from an image of bin (built before the stop, so
// that the build is not in the member's outage), as a rolling upgrade of containers does.
func (c *ContainerCluster) SwapBinary(ctx context.Context, name, bin string) (stopped, started time.Time, err error) {
	m := c.byName(name)
	if m == nil {
		return stopped, started, fmt.Errorf("no member %s", name)
	}
	if c.docker.user {
		return stopped, started, fmt.Errorf("the members run the image %s: an upgrade to a binary needs members started from binaries (cluster.etcd-binary, not cluster.image)", c.docker.image)
	}
	img, _, err := c.imageOf(ctx, bin)
	if err != nil {
		return stopped, started, err
	}
	if err := m.stop(ctx, 30*time.Second); err != nil {
		return stopped, started, err
	}
	stopped = time.Now()
	r := c.runner(m)
	args := slices.Clone(m.argv[len(r.req.Entrypoint):])
	r.bin = bin
	r.req.Image, r.req.Entrypoint, r.req.Cmd = img, entryOf(bin), args
	m.argv = slices.Concat(r.req.Entrypoint, args)
	r.stale = true
	if err := m.Start(ctx); err != nil {
		return stopped, started, err
	}
	return stopped, time.Now(), nil
}

// wipeVolume gives an exited member a new, empty data dir in its volume (/data/<name>.<n>), as a
// new disk would be; the old one stays in the volume, which goes at the end of the run.
func (c *ContainerCluster) wipeVolume(m *member) error {
	r := c.runner(m)
	r.gen++
	m.dataDir = fmt.Sprintf("/data/%s.%d", m.name, r.gen)
	for i, a := range m.argv {
		if strings.HasPrefix(a, "--data-dir=") {
			m.argv[i] = "--data-dir=" + m.dataDir
		}
	}
	c.files.reflag(m)
	return nil
}

// restoreVolume restores the snapshot on this machine with etcdutl's restore (the revision bumped
// and marked compacted) into a folder named as the member's new data dir, which its next
// container gets copied into its volume before it starts.
func (c *ContainerCluster) restoreVolume(m *member, path string, initial []string, bump int64) error {
	host := filepath.Join(c.opts.Dir, "members", m.name, "restore", filepath.Base(m.dataDir))
	_ = os.RemoveAll(host)
	if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
		return err
	}
	if err := restoreLocal(c.opts.Token)(&member{name: m.name, dataDir: host, peerURL: m.peerURL}, path, initial, bump); err != nil {
		return err
	}
	r := c.runner(m)
	r.restored = host
	return nil
}

// copyDir copies the folder from on this machine into the created container id as its folder to
// (a data dir: mode 0700), in one uncompressed tar streamed to the engine. (testcontainers' Files
// gzip the whole folder in memory first: seconds for a restored data dir's 64 MB WAL.)
func copyDir(ctx context.Context, dc *testcontainers.DockerClient, id, from, to string) error {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := filepath.WalkDir(from, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(from, p)
			if err != nil {
				return err
			}
			name := path.Join(path.Base(to), filepath.ToSlash(rel))
			info, err := e.Info()
			if err != nil {
				return err
			}
			switch {
			case e.IsDir():
				return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o700, ModTime: info.ModTime()})
			case !info.Mode().IsRegular():
				return fmt.Errorf("%s: not a regular file", p)
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: int64(info.Mode().Perm()), Size: info.Size(), ModTime: info.ModTime()}); err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			return err
		})
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	_, err := dc.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: path.Dir(to), Content: pr})
	pr.CloseWithError(err) // the writer stops if the engine did
	if err != nil {
		return fmt.Errorf("copying %s into the container as %s: %w", from, to, err)
	}
	return nil
}
