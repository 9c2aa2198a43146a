package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/etcd-chaos/etcd-chaos/faults"
)

// dockerNet is the network backend of containers without root: docker network disconnect and
// connect. It can only cut one member off from the run's network, which also cuts it off from
// clients (its published port goes with the network); anything finer needs network: netns.
type dockerNet struct{ c *ContainerCluster }

func (d dockerNet) Name() string { return "docker" }

// Supports: docker network disconnect can only cut links (one member off the network).
func (d dockerNet) Supports(s faults.Shape) error {
	if s.Delay > 0 || s.Jitter > 0 || s.Loss > 0 || s.Rate > 0 {
		return fmt.Errorf("network docker can only cut a member off the network (partition); %s needs network: netns (root) or provider local", s)
	}
	return nil
}

// isolated finds the one member the links cut off from everyone, both ways.
func (d dockerNet) isolated(links []faults.Link, s faults.Shape) (*member, error) {
	if !s.Blackhole {
		return nil, errors.New("network: docker can only cut a member off (docker network disconnect); delay, bandwidth and loss need network: netns (root)")
	}
	names := d.c.Names()
	for _, m := range d.c.all() {
		want := faults.Both([]string{m.name}, names)
		got := append([]faults.Link(nil), links...)
		faults.SortLinks(got)
		if fmt.Sprint(want) == fmt.Sprint(got) {
			return m, nil
		}
	}
	return nil, errors.New("network: docker can only isolate one member from all the others (docker network disconnect); groups, one-way partitions and isolating several members together need network: netns (root)")
}

func (d dockerNet) connected(ctx context.Context, m *member) (bool, error) {
	in, err := d.c.runner(m).inspect(ctx)
	if err != nil {
		return false, err
	}
	_, ok := in.NetworkSettings.Networks[d.c.docker.net]
	return ok, nil
}

func (d dockerNet) Apply(ctx context.Context, links []faults.Link, s faults.Shape) error {
	m, err := d.isolated(links, s)
	if err != nil {
		return err
	}
	_, err = d.c.docker.dc.NetworkDisconnect(ctx, d.c.docker.netID, client.NetworkDisconnectOptions{Container: d.c.runner(m).ID(), Force: true})
	return err
}

func (d dockerNet) Verify(ctx context.Context, links []faults.Link, s faults.Shape) error {
	m, err := d.isolated(links, s)
	if err != nil {
		return err
	}
	if on, err := d.connected(ctx, m); err != nil || on {
		return fmt.Errorf("%s is still on network %s (%v)", m.name, d.c.docker.net, err)
	}
	return nil
}

func (d dockerNet) Heal(ctx context.Context, links []faults.Link) error {
	m, err := d.isolated(links, faults.Shape{Blackhole: true})
	if err != nil {
		return err
	}
	if on, _ := d.connected(ctx, m); on {
		return nil
	}
	_, err = d.c.docker.dc.NetworkConnect(ctx, d.c.docker.netID, client.NetworkConnectOptions{Container: d.c.runner(m).ID(),
		EndpointConfig: &network.EndpointSettings{Aliases: []string{m.name}}})
	return err
}

func (d dockerNet) VerifyHealed(ctx context.Context, links []faults.Link) error {
	m, err := d.isolated(links, faults.Shape{Blackhole: true})
	if err != nil {
		return err
	}
	if on, err := d.connected(ctx, m); err != nil || !on {
		return fmt.Errorf("%s is not back on network %s (%v)", m.name, d.c.docker.net, err)
	}
	return nil
}

func (d dockerNet) Reset(ctx context.Context, links []faults.Link) error {
	return errors.New("reset needs network: proxy")
}
